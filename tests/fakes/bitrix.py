"""A wire-level fake of the Bitrix24 authorization server, for tests and benchmarks.

One local HTTP server plays the authorization server (`/oauth/token/`, `/rest/app.info`) and
every portal's `/oauth/authorize/` page; portal hosts only appear as names inside responses.
Standard library only, so benchmarks can import it without Django:

    with FakeBitrix().start() as fake:
        fake.register_app("local.abc.1", "s3cret")
        code = fake.issue_code("local.abc.1", "acme.bitrix24.com")
        requests.get(f"{fake.base_url}/oauth/token/", params={...})

Protocol rules live in `bitrix_state.py`; this module adds HTTP, faults and observation.
"""

from __future__ import annotations

import html
import json
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .bitrix_apps import PortalApps
from .bitrix_rest import PortalRest, php_decode
from .bitrix_state import SECURE_HOSTS, BitrixState, Body

__all__ = ["FAULT_KINDS", "FakeBitrix"]

FAULT_KINDS = (
    "status",
    "timeout",
    "html",
    "garbage",
    "missing_fields",
    "drop_response",
    "hang_after_processing",
    "unknown_error",
    "drip",
)

_HTML_PAGE = "<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"
_GARBAGE = b'{"access_token": "0a1b2c3d4e5f'
# Faults answered without touching state; the rest run the real rules first.
_CANNED_FAULTS = {"status", "html", "garbage", "unknown_error"}


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    drip: float = 0.0  # seconds between two bytes of the body ("drip": every read is quick)


def _json(status: int, body: Body) -> _Response:
    error = body.get("error")
    return _Response(
        status,
        json.dumps(body).encode(),
        headers={"Cache-Control": "no-store"},
        error=error if isinstance(error, str) else None,
    )


def _page(status: int, title: str, text: str) -> _Response:
    page = _HTML_PAGE.format(title=html.escape(title), body=f"<p>{html.escape(text)}</p>")
    return _Response(status, page.encode(), "text/html; charset=utf-8")


def _canned_fault(kind: str, status: int) -> _Response:
    if kind == "unknown_error":  # a code no table knows, with whatever status was asked for
        return _json(status, {"error": "NEW_ERROR_NOBODY_KNOWS", "error_description": "?"})
    if kind == "html":
        return _page(200, "Service temporarily unavailable", "Please try again later.")
    if kind == "garbage":
        return _Response(200, _GARBAGE)
    if status in (429, 503):
        return _json(
            status, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        )
    return _json(
        status, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
    )


class FakeBitrix(PortalApps, PortalRest, BitrixState):
    """The fake server. Configuration attributes (rotation, lifetimes, ...) are inherited;
    the portals' REST API (PortalRest, PortalApps) answers by Host header, see bitrix_rest.py
    and bitrix_apps.py."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.latency = 0.0
        self.timeout_sleep = 20.0
        self.token_requests: list[dict[str, Any]] = []
        self.max_concurrent_refreshes = 0
        self._in_flight: dict[object, int] = {}
        self._faults: deque[tuple[str, int]] = deque()
        # Called with the request's parameters after a refresh or code exchange was granted
        # (Bitrix has rotated) and before the answer is sent: lets a test break the client's
        # database connection, or act as staff, while the pair is on its way.
        self.after_grant: Callable[[dict[str, str]], None] | None = None
        # The "drip" fault: a real answer, its body sent one byte per this many seconds.
        self.drip_interval = 0.5
        self._stopping = threading.Event()
        self._server = _Server((host, port), self)
        bound_host, bound_port = self._server.server_address[:2]
        self.server_host = f"{bound_host}:{bound_port}"
        self.base_url = f"http://{self.server_host}"
        self._thread: threading.Thread | None = None
        self._extra_servers: list[tuple[_Server, threading.Thread]] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeBitrix:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"FakeBitrix {self.server_host}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in latency or "timeout" faults
        for server, thread in self._extra_servers:
            server.shutdown()
            thread.join()
            server.server_close()
        self._extra_servers.clear()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def extra_host(self) -> str:
        """Listen on one more port and return "localhost:PORT": another portal host served by
        this same fake (where a renamed portal moves to)."""
        server = _Server((self.server_host.split(":")[0], 0), self)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._extra_servers.append((server, thread))
        return f"localhost:{server.server_address[1]}"

    def secure_host(self, certfile: str, keyfile: str) -> str:
        """Listen on one more port speaking https with the given certificate (tests/fakes/tls.py
        makes a throw-away one) and return "localhost:PORT": a portal at that address is
        called at https://localhost:PORT/rest/, as libraries that insist on https do."""
        server = _Server((self.server_host.split(":")[0], 0), self)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._extra_servers.append((server, thread))
        host = f"localhost:{server.server_address[1]}"
        SECURE_HOSTS.add(host)
        return host

    def __enter__(self) -> FakeBitrix:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults and observation ----------------------------------------------------------

    def fail_next(self, kind: str, count: int = 1, status: int = 500) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.extend([(kind, status)] * count)

    def clear_faults(self) -> None:
        """Drop the faults not yet consumed: the server is healthy again."""
        with self._lock:
            self._faults.clear()

    def count(self, grant_type: str | None = None, ok_only: bool = False) -> int:
        """Token requests seen; ok_only keeps those where the server granted a new pair
        (a "drop_response" counts: the server rotated even though the client never heard)."""
        with self._lock:
            return sum(
                1
                for entry in self.token_requests
                if (grant_type is None or entry["grant_type"] == grant_type)
                and (not ok_only or self._granted(entry))
            )

    @staticmethod
    def _granted(entry: dict[str, Any]) -> bool:
        return (
            entry["status"] == 200
            and entry["error"] is None
            and entry["fault"] in (None, "drop_response", "hang_after_processing", "drip")
        )

    def reset_observations(self) -> None:
        with self._lock:
            self.token_requests.clear()
            self.max_concurrent_refreshes = 0

    def _record(
        self, method: str, params: dict[str, str], response: _Response | None, fault: str | None
    ) -> None:
        with self._lock:
            self.token_requests.append(
                {
                    "method": method,
                    "grant_type": params.get("grant_type"),
                    "client_id": params.get("client_id"),
                    "params": dict(params),
                    "status": response.status if response else None,
                    "error": response.error if response else None,
                    "fault": fault,
                    "t": self.now(),
                }
            )

    # -- concurrency probe ---------------------------------------------------------------

    def _chain_key(self, params: dict[str, str]) -> object | None:
        token = params.get("refresh_token")
        if params.get("grant_type") != "refresh_token" or not token:
            return None
        grant = self._by_refresh.get(token)
        return ("chain", grant.chain) if grant else ("token", token)

    def _enter(self, key: object | None) -> None:
        if key is not None:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self.max_concurrent_refreshes = max(self.max_concurrent_refreshes, self._in_flight[key])

    def _leave(self, key: object | None) -> None:
        if key is not None:
            with self._lock:
                self._in_flight[key] -= 1
                if not self._in_flight[key]:
                    del self._in_flight[key]

    # -- routes --------------------------------------------------------------------------

    def _route(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: Message,
        target: str = "",
        rest_args: dict[str, Any] | None = None,
    ) -> _Response | None:
        if path in ("/oauth/token/", "/oauth/token"):
            return self._serve_token(method, params)
        if path in ("/oauth/authorize/", "/oauth/authorize"):
            return self._serve_authorize(params, headers)
        if path.startswith("/rest/"):
            name = path.removeprefix("/rest/").removesuffix(".json").lower()
            if name == "app.info":
                bearer = headers.get("Authorization", "").removeprefix("Bearer ").strip()
                token = params.get("auth") or params.get("access_token") or bearer
                return _json(*self.app_info_reply(token))
            return self._serve_rest(method, target or path, headers, rest_args or {})
        return _page(404, "Not Found", "Not Found")

    def _serve_token(self, method: str, params: dict[str, str]) -> _Response | None:
        """None means: close the connection without answering."""
        with self._lock:
            kind, status = self._faults.popleft() if self._faults else (None, 0)
            key = self._chain_key(params)
            self._enter(key)
        try:
            # Never sleep under the lock: the probe must be able to see requests overlap.
            if self.latency > 0:
                self._stopping.wait(self.latency)
            if kind == "timeout":
                self._record(method, params, None, kind)
                # The client gives up long before this ends, so stop counting it as in flight.
                self._leave(key)
                key = None
                self._stopping.wait(self.timeout_sleep)
                return None
            if kind in _CANNED_FAULTS:
                response = _canned_fault(kind, status)
            else:
                response = _json(*self.token_reply(params, commit=kind != "missing_fields"))
            self._record(method, params, response, kind)
            if self.after_grant and response.status == 200 and response.error is None:
                self.after_grant(params)
            if kind == "hang_after_processing":
                # Rotated, but the client hears nothing for a long time: lets a test kill the
                # client between Bitrix's rotation and its commit.
                self._leave(key)
                key = None
                self._stopping.wait(self.timeout_sleep)
                return None
            if kind == "drip":
                response.drip = self.drip_interval
            return None if kind == "drop_response" else response
        finally:
            # Before the response is written, so a sequential client never overlaps itself.
            self._leave(key)

    def _serve_rest(
        self, method: str, target: str, headers: Message, args: dict[str, Any]
    ) -> _Response:
        if self.rest_latency > 0:
            self._stopping.wait(self.rest_latency)
        bearer = headers.get("Authorization", "").removeprefix("Bearer ").strip()
        status, body, extra = self.rest_reply(
            method, target, headers.get("Host", ""), args, bearer, headers.get_content_type()
        )
        if status in (301, 302, 307, 308):
            return _Response(status, b"", "text/html", headers=extra)
        response = _json(status, body)
        response.headers.update(extra)
        return response

    def _serve_authorize(self, params: dict[str, str], headers: Message) -> _Response:
        domain = params.get("domain") or headers.get("Host", "")
        outcome = self.authorize(params.get("client_id", ""), domain, params.get("state"))
        if isinstance(outcome, str):
            # The real portal shows an error page and never redirects (§1).
            return _page(200, "Authorization error", outcome)
        redirect_uri, query = outcome
        if redirect_uri is None:
            return _page(200, "Authorization code", f"Your code: {query['code']}")
        separator = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{separator}{urlencode(query)}"
        return _Response(302, b"", "text/html", headers={"Location": location})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], fake: FakeBitrix) -> None:
        super().__init__(address, _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read what happened from the fake's observations."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        params = self._read_params(url.query)
        response = self.server.fake._route(
            self.command, url.path, params, self.headers, self.path, self._rest_args
        )
        if response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not response.drip:
            self.wfile.write(response.body)
            return
        for i in range(len(response.body)):
            if self.server.fake._stopping.wait(response.drip):
                return
            self.wfile.write(response.body[i : i + 1])
            self.wfile.flush()

    def _read_params(self, query: str) -> dict[str, str]:
        """Query first, then the body: a key in both keeps its query value (§2)."""
        params: dict[str, str] = {}
        query_pairs = parse_qsl(query, keep_blank_values=True)
        for key, value in query_pairs:
            params.setdefault(key, value)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if self.headers.get_content_type() == "application/json":
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            pairs = [(k, str(v)) for k, v in data.items()] if isinstance(data, dict) else []
            # A REST method reads the JSON structure itself (nested filters, batch commands).
            self._rest_args = php_decode(query_pairs) | (data if isinstance(data, dict) else {})
        else:
            pairs = parse_qsl(raw, keep_blank_values=True)
            self._rest_args = php_decode(query_pairs + pairs)
        for key, value in pairs:
            params.setdefault(key, value)
        return params
