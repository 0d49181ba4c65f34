"""core.http reads the proxy settings once, when a session is made: HTTPS_PROXY set then is
used (an https request goes to the proxy as CONNECT), NO_PROXY's hosts go direct, and a change
of the environment afterwards does not reach the session."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import requests

from core import http

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class RefusingProxy:
    """An HTTP proxy at the wire that records each request's first line and refuses it (403)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.lines: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with client, client.makefile("rb") as reader:
                self.lines.append(reader.readline().decode().strip())
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RefusingProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    found = RefusingProxy()
    yield found
    found.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


def new_session() -> requests.Session:
    return http.session(f"test-{uuid.uuid4()}")


def test_https_proxy_set_when_the_session_is_made_is_used(proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    session = new_session()
    monkeypatch.delenv("HTTPS_PROXY")  # read once: the session keeps what it found
    with pytest.raises(requests.exceptions.ProxyError):
        session.get("https://portal.example.test/rest/profile", timeout=5)
    assert [line.split()[:2] for line in proxy.lines] == [["CONNECT", "portal.example.test:443"]]


def test_no_proxy_hosts_go_direct(proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    session = new_session()
    with pytest.raises(requests.exceptions.ConnectionError) as raised:
        session.get(f"https://127.0.0.1:{closed_port()}/rest/profile", timeout=5)
    assert not isinstance(raised.value, requests.exceptions.ProxyError)
    assert proxy.lines == []


def test_a_proxy_set_after_the_session_is_made_is_not_read(proxy, monkeypatch):
    session = new_session()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"https://127.0.0.1:{closed_port()}/rest/profile", timeout=5)
    assert proxy.lines == []


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("https://portal.example.test/", "example.test", True),
        ("https://portal.example.test/", ".example.test", True),
        ("https://portal.example.test/", "other.test", False),
        ("https://10.1.2.3:8443/", "10.0.0.0/8", True),
        ("https://10.1.2.3/", "192.168.0.0/16", False),
        ("https://anything.test/", "*", True),
        ("https://anything.test/", "", False),
    ],
)
def test_no_proxy_is_judged_as_requests_judges_it(url, no_proxy, bypassed):
    assert http.bypasses_proxy(url, no_proxy) is bypassed
