"""The zero-setup default: SQLite (WAL, busy timeout) and kombu's filesystem broker must hold up
with web, worker and beat writing at once."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests
from cryptography.fernet import Fernet

from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.processes import ROOT, CeleryProcesses, wait_until

pytestmark = pytest.mark.celery
TOKENS = 8
CONNECT = """import django, json, sys
django.setup()
from portals.connect.code import ConnectInput, connect_portal
for fields in json.loads(sys.argv[1]):
    connect_portal(ConnectInput(**fields))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded_env(tmp_path, fake_bitrix) -> dict[str, str]:
    """Production settings on the embedded defaults, in a private var/ folder."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "SECRET_KEY": "embedded-test-secret",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DEBUG": "false",
        "SWEEP_INTERVAL_SECONDS": "1",
        "BITRIX_OAUTH_SERVER": fake_bitrix.base_url,
        "BITRIX_AUTH_SERVERS": fake_bitrix.base_url,
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "embedded-pass-1",
    }
    env = {**os.environ, **env, "BITRIX_ALLOW_HTTP": "true", "PYTHONPATH": str(ROOT)}
    for command in (["migrate", "--no-input"], ["ensure_admin"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
    return env


def now_text() -> str:
    """Now as Django stores a UTC datetime in SQLite, for comparing in SQL."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def settled(env: dict[str, str], now: str) -> bool:
    """Nothing left to do: every token active, no refresh in flight, none due at `now`."""
    db = sqlite3.connect(f"{env['VAR_DIR']}/b24keeper.sqlite3", timeout=30)
    try:
        (left,) = db.execute(
            "SELECT count(*) FROM portals_token WHERE status <> 'active' "
            "OR refresh_started_at IS NOT NULL OR next_refresh_at <= ?",
            [now],
        ).fetchone()
    finally:
        db.close()
    return left == 0


def drive_web(port: int, seconds: float, refreshes: Callable[[], int]) -> list[int]:
    """Staff at work: log in, then keep pressing "Enable" on every token (a write to every
    row, which also makes each token due at once) while the worker and beat write too. Each
    press waits for the worker to have refreshed something since the last one, so staff
    writes and refreshes overlap all along."""
    base, web = f"http://127.0.0.1:{port}", requests.Session()
    wait_until(lambda: _answers(web, f"{base}/admin/login/"), 30, "gunicorn")
    login = {"username": "admin", "password": "embedded-pass-1", "next": "/admin/"}
    statuses = [_post(web, f"{base}/admin/login/", login).status_code]
    changelist = f"{base}/admin/portals/token/"
    ids = [str(i) for i in range(1, TOKENS + 1)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = refreshes()
        statuses.append(web.get(changelist, timeout=30).status_code)
        action = {"action": "enable", "index": "0", "_selected_action": ids}
        statuses.append(_post(web, changelist, action).status_code)
        wait_until(lambda: refreshes() > before, 30, "a refresh after pressing Enable")
    return statuses


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def _post(session: requests.Session, url: str, data: dict) -> requests.Response:
    token = session.cookies.get("csrftoken")
    return session.post(
        url, {**data, "csrfmiddlewaretoken": token}, headers={"Referer": url},
        allow_redirects=False, timeout=30,
    )  # fmt: skip


def test_sqlite_and_the_filesystem_broker_hold_up_under_concurrent_writers(
    embedded_env, fake_bitrix, tmp_path
):
    portals = [f"p{i}.bitrix24.com" for i in range(TOKENS)]
    connections = [
        {"portal": portal, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
         "scope": "crm", "reference": f"t{i}", "code": fake_bitrix.issue_code(CLIENT_ID, portal)}
        for i, portal in enumerate(portals)
    ]  # fmt: skip
    connect = [sys.executable, "-c", CONNECT, json.dumps(connections)]
    subprocess.run(connect, cwd=ROOT, env=embedded_env, check=True, timeout=60)
    port = free_port()
    with CeleryProcesses(tmp_path, "", **embedded_env) as procs:
        procs.worker(concurrency=4)
        procs.beat()
        web = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--error-logfile", str(tmp_path / "gunicorn.log")],
            cwd=ROOT, env=embedded_env,
        )  # fmt: skip
        try:
            refreshed = lambda: fake_bitrix.count(grant_type="refresh_token")  # noqa: E731
            statuses = drive_web(port, seconds=12, refreshes=refreshed)
            assert set(statuses) <= {200, 302}, statuses
            wait_until(lambda: settled(embedded_env, now_text()), 60, "every token refreshed")
            logs = procs.logs()
            assert "database is locked" not in logs and "OperationalError" not in logs
            refreshes = [
                r for r in fake_bitrix.token_requests if r["grant_type"] == "refresh_token"
            ]
            assert len(refreshes) >= 2 * TOKENS  # "enable" made every token due, repeatedly
            assert all(r["error"] is None for r in refreshes), "a refresh token was reused"
            assert fake_bitrix.max_concurrent_refreshes == 1
        except AssertionError:
            print("=== gunicorn ===\n" + (tmp_path / "gunicorn.log").read_text()[-4000:])
            raise
        finally:
            web.terminate()
            web.wait(15)
