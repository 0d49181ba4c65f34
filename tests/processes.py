"""Start other Python processes that share the test database and the fake servers."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the test database, the same fakes and keys."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        BITRIX_OAUTH_SERVER=settings.BITRIX_OAUTH_SERVER,
        BITRIX_ALLOW_HTTP="true",
        ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def start_python(code: str, **extra_env: str) -> subprocess.Popen:
    """Run `code` after django.setup() in a new interpreter."""
    prelude = "import django; django.setup()\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        env=child_env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
