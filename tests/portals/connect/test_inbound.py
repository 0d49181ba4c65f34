"""POST /bitrix/<client_id>/install/ and /events/ take a form (application/x-www-form-urlencoded)
of at most 64 KiB, judged before the body is read: 415 for anything else, 413 for more
(portals.connect.inbound.form_only). A 40 MB multipart body is refused unread and nothing is spooled
to disk."""

import socket
import time

import pytest
from django.test import Client

from portals.models import AppCredentials
from tests.conftest import CLIENT_ID, CLIENT_SECRET

INSTALL = f"/bitrix/{CLIENT_ID}/install/"
EVENTS = f"/bitrix/{CLIENT_ID}/events/"
FORM = "application/x-www-form-urlencoded"
LIMIT = 64 * 1024
BOUNDARY = "b24k-boundary"
FORTY_MB = 40 * 1024 * 1024


@pytest.fixture
def app(fake_bitrix):
    """The app the posts are for: without it the view would refuse before reading anything."""
    return AppCredentials.objects.create(
        name="CRM sync", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )


@pytest.fixture
def uploads(settings, tmp_path):
    """Where Django would spool an uploaded file."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def multipart(size: int) -> bytes:
    """A multipart body of `size` bytes: one event field and one big file."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="event"\r\n\r\nONAPPINSTALL\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + b"x" * (size - len(head) - len(tail)) + tail


def padded_form(size: int) -> str:
    form = "event=ONAPPINSTALL&pad="
    return form + "x" * (size - len(form))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [INSTALL, EVENTS])
@pytest.mark.parametrize(
    "content_type",
    [f"multipart/form-data; boundary={BOUNDARY}", "application/json", "text/plain", ""],
)
def test_anything_but_a_form_is_415(app, url, content_type):
    response = Client().post(url, b'{"event": "ONAPPINSTALL"}', content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.django_db
@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_a_40_mb_multipart_body_is_refused_quickly_and_nothing_is_spooled(app, uploads, url):
    body = multipart(FORTY_MB)
    started = time.monotonic()
    response = Client().post(url, body, content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 415
    assert time.monotonic() - started < 2
    assert list(uploads.iterdir()) == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_a_form_over_64_kib_is_413(app, url):
    response = Client().post(url, padded_form(LIMIT + 1), content_type=FORM)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


@pytest.mark.django_db
def test_a_form_of_exactly_64_kib_is_read(app):
    response = Client().post(EVENTS, padded_form(LIMIT), content_type=FORM)
    assert response.status_code == 400  # read, and refused for what it says: no auth[...]
    assert response.json()["error"] != "body_too_large"


def raw_post(live_server, url: str, headers: dict[str, str], first_bytes: bytes) -> bytes:
    """Send the request line, the headers and only the first bytes of the body, then read
    the status line: an answer here proves the server did not wait for the rest."""
    lines = [f"POST {url} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    address = (live_server.thread.host, live_server.thread.port)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + first_bytes)
        return sock.makefile("rb").readline()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_the_refusal_comes_before_the_body_is_sent(live_server, app, uploads, url):
    multipart_type = f"multipart/form-data; boundary={BOUNDARY}"
    body = multipart(LIMIT * 4)  # a promise of 40 MB, of which 256 KiB ever arrive
    status = raw_post(
        live_server, url, {"Content-Type": multipart_type, "Content-Length": FORTY_MB}, body
    )
    assert b" 415 " in status, status
    form = padded_form(LIMIT).encode()
    status = raw_post(live_server, url, {"Content-Type": FORM, "Content-Length": FORTY_MB}, form)
    assert b" 413 " in status, status
    assert list(uploads.iterdir()) == []
