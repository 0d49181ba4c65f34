"""Test settings: the production settings module, with test defaults in the environment.

The tests run on real PostgreSQL and Redis (bin/test starts them); each default below can be
overridden from the environment.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24keeper")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# Two fixed test keys, newest first (generated once with Fernet.generate_key()).
os.environ.setdefault(
    "ENCRYPTION_KEYS",
    "q1m6z1bX2l2m1y8pP6V9lF1kS7tXb3cQ0oE9rW4uY5I=,Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg=",
)
os.environ.setdefault("BITRIX_ALLOW_HTTP", "true")
# Binding the uninstall handler calls the portal's REST API after every connect, and most tests'
# portals have real-looking addresses (acme.bitrix24.com) that must never be called. The tests of
# the binding turn it on, for portals the fake serves (tests/portals/connect/test_eventbind.py).
os.environ.setdefault("BITRIX_BIND_EVENTS", "false")
os.environ.setdefault("DEBUG", "false")
# Counters written at once, so a test reads what it just counted (and a test's transaction
# holds its counts); tests/ops/record/test_metrics.py runs the buffered flush in processes.
os.environ.setdefault("METRICS_FLUSH_SECONDS", "0")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# A process whose clock is off (issue 16, clock skew): B24K_TEST_CLOCK_SKEW seconds are added to
# what this process believes the time is, as `faketime` would; the database's clock is untouched.
if _skew := float(os.environ.get("B24K_TEST_CLOCK_SKEW", "0")):
    import time
    from datetime import timedelta

    from django.utils import timezone

    _real_time, _real_now = time.time, timezone.now
    time.time = lambda: _real_time() + _skew
    timezone.now = lambda: _real_now() + timedelta(seconds=_skew)
