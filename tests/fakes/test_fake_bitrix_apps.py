"""Tests of the fake portals' app methods (tests/fakes/bitrix_apps.py): user.admin, event.bind,
event.get, and the uninstall that posts ONAPPUNINSTALL to the bound handlers. No Django."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests

from tests.fakes.bitrix import FakeBitrix
from tests.fakes.bitrix_events import EventSender

CLIENT_ID = "local.6a1b2c3d4e5f60.48151623"


@pytest.fixture
def fake() -> Iterator[FakeBitrix]:
    with FakeBitrix().start() as server:
        server.register_app(CLIENT_ID, "x" * 50, scope="crm,user")
        yield server


@pytest.fixture
def portal(fake: FakeBitrix) -> str:
    """A portal the REST API answers as: the fake's own port, named localhost."""
    return f"localhost:{fake.server_host.rsplit(':', 1)[1]}"


def rest(fake: FakeBitrix, portal: str, method: str, token: str, **args: object):
    return requests.post(
        f"http://{portal}/rest/{method}", json={**args, "auth": token}, timeout=5
    ).json()


def test_it_says_whether_the_tokens_user_is_an_administrator(fake, portal):
    fake.add_user(portal, 7, admin=False)
    fake.add_user(portal, 8, admin=True)
    for user, admin in ((None, True), (7, False), (8, True)):
        pair = fake.issue_tokens(CLIENT_ID, portal, user)
        assert rest(fake, portal, "user.admin", str(pair["access_token"]))["result"] is admin
        info = requests.post(
            f"{fake.base_url}/rest/app.info", data={"auth": pair["access_token"]}, timeout=5
        ).json()["result"]
        assert info["user_id"] == (user or 1)  # app.info vouches for every user's token
        assert info["install"]["client_endpoint"] == f"http://{portal}/rest/"


def test_a_refreshed_pair_keeps_its_user(fake, portal):
    fake.add_user(portal, 7)
    pair = fake.issue_tokens(CLIENT_ID, portal, 7)
    refreshed = requests.post(
        f"{fake.base_url}/oauth/token/",
        data={"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": "x" * 50,
              "refresh_token": pair["refresh_token"]},
        timeout=5,
    ).json()  # fmt: skip
    assert refreshed["user_id"] == 7
    assert rest(fake, portal, "user.admin", refreshed["access_token"])["result"] is False


def test_it_binds_lists_and_unbinds_event_handlers(fake, portal):
    token = str(fake.issue_tokens(CLIENT_ID, portal)["access_token"])
    handler = "https://keeper.example/bitrix/x/events/"
    assert rest(fake, portal, "event.get", token)["result"] == []
    assert rest(fake, portal, "event.bind", token, event="onAppUninstall", handler=handler)[
        "result"
    ]
    again = rest(fake, portal, "event.bind", token, event="ONAPPUNINSTALL", handler=handler)
    assert again["error"] == "ERROR_CORE"
    assert rest(fake, portal, "event.bind", token, event="nothing", handler=handler)["error"] == (
        "ERROR_EVENT_NOT_FOUND"
    )
    [listed] = rest(fake, portal, "event.get", token)["result"]
    assert listed == {"event": "ONAPPUNINSTALL", "handler": handler, "auth_type": "0", "offline": 0}
    assert [h.event for h in fake.handlers(CLIENT_ID, portal)] == ["ONAPPUNINSTALL"]
    unbound = rest(fake, portal, "event.unbind", token, event="ONAPPUNINSTALL", handler=handler)
    assert unbound["result"] == {"count": 1} and fake.handlers(CLIENT_ID, portal) == []


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        form["content-type"] = self.headers.get("Content-Type", "")
        self.received.append(form)
        body = json.dumps({"result": "accepted"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_uninstall_posts_onappuninstall_to_the_bound_handlers_only(fake, portal):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/events/"
        token = str(fake.issue_tokens(CLIENT_ID, portal)["access_token"])
        rest(fake, portal, "event.bind", token, event="ONAPPUNINSTALL", handler=url)
        rest(fake, portal, "event.bind", token, event="ONAPPUPDATE", handler=url + "update/")
        sender = EventSender(fake, CLIENT_ID)
        [(handler, status, body)] = sender.uninstall_app(portal, clean=True)
    finally:
        server.shutdown()
        server.server_close()
    assert (handler, status, body) == (url, 200, {"result": "accepted"})
    [form] = _Recorder.received
    assert form["event"] == "ONAPPUNINSTALL" and form["data[CLEAN]"] == "1"
    assert form["content-type"] == "application/x-www-form-urlencoded"
    assert form["auth[application_token]"] == sender.application_token(portal)
    assert form["auth[member_id]"] == fake._portal(portal).member_id
    assert fake.handlers(CLIENT_ID, portal) == []  # dropped with the app
    assert rest(fake, portal, "user.admin", token)["error"] == "ERROR_OAUTH"
