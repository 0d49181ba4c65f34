"""A live b24keeper (gunicorn, threaded workers, https with a throw-away certificate, the test
database) and a fake Bitrix24 with an https portal and strict rotation, for the client
libraries' tests. Both live for the module; each test connects its own token."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import CLIENT_ID, CLIENT_SECRET, connect
from tests.fakes.bitrix import FakeBitrix
from tests.fakes.tls import make_certificate
from tests.processes import ROOT, child_env, wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Live:
    """What a test needs of the module's world."""

    def __init__(self, fake: FakeBitrix, portal: str, base_url: str, cert: Path, log: Path):
        self.fake, self.portal, self.base_url, self.cert, self.log = (
            fake,
            portal,
            base_url,
            cert,
            log,
        )

    def client_env(self) -> dict[str, str]:
        """A client process's environment: it trusts the throw-away certificate."""
        return {
            **os.environ,
            "SSL_CERT_FILE": str(self.cert),
            "REQUESTS_CA_BUNDLE": str(self.cert),
            "PYTHONPATH": str(ROOT),
        }

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A scenario (tests/clients/python/scenarios.py) in a new client process."""
        return subprocess.run(
            [sys.executable, "-m", "tests.clients.python.scenarios", *args],
            cwd=ROOT, env=self.client_env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.clients.python.scenarios", *args],
            cwd=ROOT, env=self.client_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def live_world(tmp_path_factory, django_db_setup, django_db_blocker):
    folder = tmp_path_factory.mktemp("live")
    cert, key = make_certificate(folder)
    fake = FakeBitrix().start()
    fake.register_app(CLIENT_ID, CLIENT_SECRET, scope="crm,user")
    portal = fake.secure_host(str(cert), str(key))
    port = free_port()
    base_url = f"https://localhost:{port}"
    log = folder / "gunicorn.log"
    with django_db_blocker.unblock():
        env = child_env(
            BITRIX_OAUTH_SERVER=fake.base_url,
            BITRIX_AUTH_SERVERS=fake.base_url,
            REQUESTS_CA_BUNDLE=str(cert),  # b24keeper calls the https portal
            SITE_URL=base_url,
            ALLOWED_HOSTS="localhost,127.0.0.1",
            VAR_DIR=str(folder / "var"),
            API_KEY_CACHE_SECONDS="0",  # tests revoke and create keys between calls
        )
    web = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--worker-class", "gthread", "--threads", "8",
         "--certfile", str(cert), "--keyfile", str(key), "--error-logfile", str(log),
         "--access-logfile", str(log), "--logger-class", "core.gunicorn.RedactingLogger"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(f"{base_url}/health/", cert), 30, "gunicorn over https")
        yield Live(fake, portal, base_url, cert, log)
    finally:
        web.terminate()
        web.wait(15)
        fake.stop()


def _answers(url: str, cert: Path) -> bool:
    try:
        return requests.get(url, timeout=2, verify=str(cert)).status_code in (200, 503)
    except requests.RequestException:
        return False


@pytest.fixture
def live(request, live_world, settings, transactional_db):
    """The module's world for one test: this process's settings point at its fake, which
    forgets what earlier tests did; gunicorn's log is printed when the test fails."""
    fake = live_world.fake
    settings.BITRIX_OAUTH_SERVER = fake.base_url
    settings.BITRIX_AUTH_SERVERS = [fake.base_url]
    settings.BITRIX_ALLOW_HTTP = True
    fake.reset_observations()
    fake.rest_calls.clear()
    fake.refuse_every_access(False)
    fake.set_rest_limit(2.0, 50.0)
    yield live_world
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print("=== gunicorn ===\n" + live_world.log.read_text()[-4000:])


@pytest.fixture
def live_token(live):
    return connect(live.fake, portal=live.portal)
