"""Production settings from the environment: the HTTPS switch, `check --deploy`, and the admin
login throttle (django-axes).

Settings are read once per process, so what the environment turns on is checked in a fresh
Python process with exactly the variables the README's production section documents.
"""

import json
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

BASE_DIR = Path(__file__).resolve().parents[2]
HOST = "keeper.example.com"
PASSWORD = "correct-horse-battery"
SETTINGS_SHOWN = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "AXES_CLIENT_IP_CALLABLE",
    "TRUSTED_PROXY_COUNT",
]


def database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def production_env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    """The production variables of the README, nothing inherited from the test process."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "HTTPS": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
        "SITE_URL": f"https://{HOST}",
        "ENCRYPTION_KEYS": ",".join(django_settings.ENCRYPTION_KEYS),
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "BITRIX_ALLOW_HTTP": "false",
        "VAR_DIR": str(tmp_path / "var"),
        "TRUSTED_PROXY_COUNT": "1",  # deploy/env.example: the documented nginx
    }
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


CHECK_DEPLOY = ("manage.py", "check", "--deploy", "--fail-level", "WARNING")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def settings_in(env: dict[str, str]) -> dict[str, object]:
    script = (
        "import json, config.settings as s; "
        f"print(json.dumps({{name: getattr(s, name) for name in {SETTINGS_SHOWN!r}}}))"
    )
    done = run(env, "-c", script)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- The HTTPS switch -----------------------------------------------------------------------
@pytest.mark.django_db
def test_https_turns_on_secure_cookies_hsts_the_redirect_and_the_proxy_header(tmp_path):
    assert settings_in(production_env(tmp_path)) == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "AXES_CLIENT_IP_CALLABLE": "core.client_ip.forwarded_client_ip",
        "TRUSTED_PROXY_COUNT": 1,
    }


@pytest.mark.django_db
def test_https_is_off_by_default_as_bin_serve_runs_on_plain_http(tmp_path):
    shown = settings_in(production_env(tmp_path, HTTPS=None, TRUSTED_PROXY_COUNT=None))
    assert shown["SESSION_COOKIE_SECURE"] is shown["CSRF_COOKIE_SECURE"] is False
    assert shown["SECURE_SSL_REDIRECT"] is False
    assert shown["SECURE_PROXY_SSL_HEADER"] is None  # a client's header is not trusted
    assert shown["SECURE_HSTS_SECONDS"] == 0
    assert shown["TRUSTED_PROXY_COUNT"] == 0  # X-Forwarded-For is not trusted either


@pytest.mark.django_db
def test_hsts_subdomains_and_preload_are_the_operators_choice(tmp_path):
    env = production_env(tmp_path, HSTS_INCLUDE_SUBDOMAINS="true", HSTS_PRELOAD="true")
    shown = settings_in(env)
    assert shown["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is shown["SECURE_HSTS_PRELOAD"] is True


@pytest.mark.django_db
def test_check_deploy_passes_with_the_documented_production_variables(tmp_path):
    done = run(production_env(tmp_path), *CHECK_DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (2 silenced)." in done.stdout


@pytest.mark.django_db
def test_check_deploy_warns_when_https_trusts_no_proxy(tmp_path):
    done = run(production_env(tmp_path, TRUSTED_PROXY_COUNT=None), *CHECK_DEPLOY)
    assert done.returncode != 0 and "b24keeper.W004" in done.stderr
    assert "TRUSTED_PROXY_COUNT" in done.stderr


@pytest.mark.django_db
def test_check_deploy_names_what_is_missing_without_https(tmp_path):
    env = production_env(tmp_path, HTTPS=None)
    done = run(env, *CHECK_DEPLOY)
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_except_health_and_metrics(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()  # a new client loads the middleware with these settings
    response = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="http")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/admin/login/"
    assert client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    for path in ("/health/", "/metrics", "/metrics/"):
        response = client.get(path, HTTP_X_FORWARDED_PROTO="http")
        assert not response.get("Location", "").startswith("https://"), path


# --- The admin login throttle ---------------------------------------------------------------
@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("ann", "ann@example.com", PASSWORD)


def log_in(client: Client, password: str, username: str = "ann") -> int:
    data = {"username": username, "password": password, "next": "/admin/"}
    return client.post("/admin/login/", data).status_code


@pytest.mark.django_db
def test_admin_login_is_locked_after_the_failure_limit(staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert [log_in(client, "wrong") for _ in range(3)] == [200, 200, 429]
    locked = client.post("/admin/login/", {"username": "ann", "password": PASSWORD})
    assert locked.status_code == 429  # even the right password waits out the cool-off
    assert "too many login attempts" in locked.content.decode()
    assert log_in(Client(REMOTE_ADDR="203.0.113.9"), PASSWORD) == 302  # not from elsewhere


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert [log_in(client, "wrong") for _ in range(2)] == [200, 429]
    cool_off = django_settings.AXES_COOLOFF_TIME
    AccessAttempt.objects.update(attempt_time=timezone.now() - cool_off - timedelta(seconds=1))
    assert log_in(client, PASSWORD) == 302


@pytest.mark.django_db
def test_a_successful_login_clears_the_failures(staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert [log_in(client, "wrong") for _ in range(2)] == [200, 200]
    assert log_in(client, PASSWORD) == 302
    client.logout()
    assert [log_in(client, "wrong") for _ in range(2)] == [200, 200]


@pytest.mark.django_db
def test_behind_the_proxy_the_throttle_keys_on_the_address_the_proxy_saw(staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXY_COUNT = 1  # the documented nginx
    proxy = "10.0.0.2"  # every request reaches Django from the proxy
    attacker = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert [log_in(attacker, "wrong") for _ in range(2)] == [200, 429]
    # A forged first hop changes nothing: the proxy appends the address it really saw.
    forged = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7")
    assert log_in(forged, PASSWORD) == 429
    colleague = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert log_in(colleague, PASSWORD) == 302
