"""The issue's critical case end to end: an anonymous ONAPPINSTALL whose auth[server_endpoint]
reads as the fake authorization server to one URL parser and as another host to the HTTP
client. A second local server plays the attacker and records whatever reaches it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from portals.models import AppCredentials, Token, TokenStatus
from portals.tokens import TokenConfigurationError, refresh
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL
from tests.fakes.bitrix_events import FORM, EventSender

pytestmark = pytest.mark.django_db
INSTALL = f"/bitrix/{CLIENT_ID}/install/"
EVENTS = f"/bitrix/{CLIENT_ID}/events/"


class Attacker(ThreadingHTTPServer):
    """Records every request and vouches for any token, as an attacker's app.info would."""

    def __init__(self, install: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _AttackerHandler)
        self.install = install
        self.seen: list[tuple[str, str, bytes]] = []
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()


class _AttackerHandler(BaseHTTPRequestHandler):
    server: Attacker

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))
        answer = {
            "result": {
                "client_id": CLIENT_ID,
                "scope": "crm,user",
                "install": {**self.server.install, "installed": True},
            },
            # what a token request would be answered with, so a refresh "works"
            "access_token": "a" * 70,
            "refresh_token": "r" * 70,
            "expires_in": 3600,
        }
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST


@pytest.fixture
def app(fake_bitrix):
    return AppCredentials.objects.create(
        name="CRM sync", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )


@pytest.fixture
def sender(fake_bitrix, app):
    return EventSender(fake_bitrix, CLIENT_ID)


@pytest.fixture
def attacker(fake_bitrix):
    member_id = fake_bitrix._portal(PORTAL).member_id
    server = Attacker({"member_id": member_id, "domain": PORTAL})
    yield server
    server.stop()


def hostile_endpoint(attacker: Attacker, fake_bitrix) -> str:
    """The fake authorization server to urllib.parse, the attacker to requests."""
    return f"http://{attacker.host}\\@{fake_bitrix.server_host}/rest/"


@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_an_install_naming_a_backslash_server_sends_nothing_to_the_attacker(
    sender, fake_bitrix, attacker, url
):
    form = sender.install(PORTAL, server_endpoint=hostile_endpoint(attacker, fake_bitrix))
    response = Client().post(url, EventSender.encode(form), content_type=FORM)
    # Had the install been taken, the next refresh would have posted the secret there.
    for token in Token.objects.all():
        refresh(token.reference)
    assert attacker.seen == []
    assert response.status_code == 403, response.content
    assert not Token.objects.exists()


def test_a_stored_backslash_server_is_refused_at_refresh(token, fake_bitrix, attacker):
    # A row written before the fix, when the check still let such a value through.
    Token.objects.filter(pk=token.pk).update(
        server_endpoint=hostile_endpoint(attacker, fake_bitrix)
    )
    with pytest.raises(TokenConfigurationError):
        refresh(token.reference)
    assert attacker.seen == []
    token.refresh_from_db()
    assert token.status == TokenStatus.CONFIG_ERROR
