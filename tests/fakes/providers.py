"""Wire-level fakes of the notification providers: the shared server machinery.

Each fake is a real HTTP server on 127.0.0.1 (the standard library's ThreadingHTTPServer on
port 0, in a daemon thread) that checks every request the way the provider does and answers
with the provider's real success and error shapes (see docs/notification-providers.md).
The providers themselves live in `provider_<name>.py`:

    with FakeTelegram() as fake:
        settings.TELEGRAM_API_URL = fake.base_url
        fake.fail_next("bot_blocked")
        ...
        assert fake.requests[0].body == {"chat_id": 987654321, ...}

Two kinds of wrong request are kept apart:

* what can legitimately go wrong at run time (a wrong key, an unknown chat) gets the
  provider's real error answer and nothing else;
* what only a bug in our client can cause (wrong path, encoding, auth scheme, a misspelt or
  missing field, a non-GSM-7 SMS) is recorded in `.violations` and answered the way the
  provider would; `assert_clean()` fails the test.

`fail_next(kind, **options)` queues an answer for the next send that passes those checks
(`endpoint="status"`: for the next question about a message's status).
Every fake knows the generic kinds below, plus its provider's documented errors (`.error_kinds`):

    rate_limited  HTTP 429 in the provider's shape; `retry_after=` adds a Retry-After header
    server_error  HTTP `status=` (default 502) with an HTML page
    timeout       the normal answer, but only after `delay=` seconds (default .timeout_delay)
    garbage       HTTP `status=` (default 200) with a cut-off body that is not JSON
    disconnect    close the connection without answering

Where the provider reports what became of a message (Twilio, MessageBird, UniSender, Mandrill),
the fake answers its status endpoint too. Each message it accepts gets a fate: delivered, unless
`fate_next(outcome, polls=0, **details)` planned another for the next message it accepts:

    fake.fate_next("undelivered", code=30003)   # Twilio: failed on the carrier with 30003
    fake.fate_next("delivered", polls=2)        # "on its way" twice, then delivered
    fake.fate_next("pending")                   # never more than "on its way"

`fake.sends` are the requests to the send endpoint, `fake.status_requests` the others.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.message import Message as HeaderMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "GENERIC_FAULTS",
    "FakeProviderServer",
    "Fate",
    "RecordedRequest",
    "Reply",
    "basic_auth",
    "is_gsm7",
    "sms_segments",
]

GENERIC_FAULTS = ("rate_limited", "server_error", "timeout", "garbage", "disconnect")

# GSM 03.38 basic set and extension table, kept apart from the code under test on purpose:
# the fake checks what reaches the wire independently of how our client cleaned it.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)
_HTML = "<!DOCTYPE html><html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>"


_GSM7_EXTENSION = frozenset("^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    return all(char in _GSM7 for char in text)


def sms_segments(text: str) -> int:
    """What a GSM-7 SMS costs: 160 septets in one part, 153 per part when concatenated; an
    extension character takes two septets."""
    septets = sum(2 if char in _GSM7_EXTENSION else 1 for char in text)
    return 1 if septets <= 160 else -(-septets // 153)


@dataclass
class Fate:
    """What the provider will report about one message it accepted."""

    state: str = "delivered"  # "delivered", "undelivered" or "pending" (forever)
    polls: int = 0  # status questions answered "on its way" before the final state
    details: dict[str, Any] = field(default_factory=dict)  # the provider's reason, etc.

    def answer(self) -> str:
        """The state to report now; counts the question."""
        if self.state == "pending" or self.polls > 0:
            self.polls -= 1
            return "pending"
        return self.state


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    content_type: str  # without parameters such as charset
    body: Any  # a dict for form or JSON bodies, else the text
    raw: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int
    body: Any = None  # dict or list -> JSON; str -> sent as is with content_type
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    disconnect: bool = False

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/html; charset=utf-8"
        return json.dumps(self.body).encode(), self.content_type or "application/json"


def html_reply(status: int, title: str) -> Reply:
    return Reply(status, _HTML.format(title))


def basic_auth(request: RecordedRequest) -> tuple[str, str] | None:
    scheme, _, value = (request.header("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _parse_body(content_type: str, raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if content_type == "application/json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


def _record(method: str, target: str, headers: HeaderMessage, raw: bytes) -> RecordedRequest:
    parts = urlsplit(target)
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return RecordedRequest(
        method=method,
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={name.lower(): value for name, value in headers.items()},
        content_type=content_type,
        body=_parse_body(content_type, raw),
        raw=raw,
    )


class _Handler(BaseHTTPRequestHandler):
    fake: ClassVar[FakeProviderServer]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = _record(self.command, self.path, self.headers, raw)
        try:
            reply = self.fake.handle(request)
        except Exception as exc:  # a bug in the fake: make it loud, not a hang
            self.fake.violations.append(f"the fake crashed: {exc!r}")
            reply = html_reply(500, "fake crashed")
        if reply.delay:
            self.fake.wait(reply.delay)
        if reply.disconnect:
            return  # the server closes the socket without a status line
        payload, content_type = reply.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (timeout tests)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are in fake.requests


class FakeProviderServer:
    """One provider. Subclasses set `name`, `path_prefix`, `errors` and implement `problems`,
    `authenticate`, `success`, `bad_request`, `error_reply` and (if the shape differs)
    `rate_limit_body`."""

    name: ClassVar[str] = "provider"
    path_prefix: ClassVar[str] = ""
    # The provider's documented errors: kind -> whatever `error_reply` needs to build it.
    errors: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, timeout_delay: float = 2.0) -> None:
        self.requests: list[RecordedRequest] = []
        self.sends: list[RecordedRequest] = []
        self.status_requests: list[RecordedRequest] = []
        self.messages: dict[str, Fate] = {}  # message id -> its fate
        self._fates: deque[Fate] = deque()
        self._status_faults: deque[tuple[str, dict[str, Any]]] = deque()
        self.replies: list[Reply] = []  # what the fake answered, in the same order
        self.violations: list[str] = []
        self.timeout_delay = timeout_delay
        self._faults: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        handler = type(f"{type(self).__name__}Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.name}",
            daemon=True,
        )

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that are simulating a slow answer
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path_prefix}"

    def wait(self, seconds: float) -> None:
        """Sleep, but wake at once when the fake stops, so no test waits for a slow answer."""
        self._stopping.wait(seconds)

    # --- what tests use -----------------------------------------------------------------
    @property
    def error_kinds(self) -> tuple[str, ...]:
        return tuple(self.errors)

    def fail_next(self, kind: str, endpoint: str = "send", **options: Any) -> None:
        if kind not in GENERIC_FAULTS and kind not in self.errors:
            known = ", ".join((*GENERIC_FAULTS, *self.errors))
            raise ValueError(f"The {self.name} fake has no fault {kind!r}; known: {known}")
        with self._lock:
            (self._faults if endpoint == "send" else self._status_faults).append((kind, options))

    def fate_next(self, outcome: str, polls: int = 0, **details: Any) -> None:
        """Plan what the status endpoint reports about the next message accepted:
        "delivered", "undelivered" (the provider's reason in `details`) or "pending"."""
        with self._lock:
            self._fates.append(Fate(outcome, polls, details))

    def register(self, message_id: str) -> str:
        """A message was accepted: give it the next planned fate (or "delivered")."""
        with self._lock:
            self.messages[message_id] = self._fates.popleft() if self._fates else Fate()
        return message_id

    def assert_clean(self) -> None:
        assert not self.violations, f"{self.name} fake saw protocol violations: {self.violations}"

    # --- request handling ---------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        is_status = self.is_status_request(request)
        with self._lock:
            self.requests.append(request)
            (self.status_requests if is_status else self.sends).append(request)
        reply = self._answer_status(request) if is_status else self._answer(request)
        with self._lock:
            self.replies.append(reply)
        return reply

    def _answer(self, request: RecordedRequest) -> Reply:
        problems = self.problems(request)
        if problems:
            self.violations.extend(problems)
            return self.bad_request(request, problems)
        refusal = self.authenticate(request)
        if refusal is not None:
            return refusal
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is None:
            return self.success(request)
        return self._fault_reply(request, *fault)

    def _answer_status(self, request: RecordedRequest) -> Reply:
        problems = self.status_problems(request)
        if problems:
            self.violations.extend(problems)
            return self.bad_request(request, problems)
        refusal = self.authenticate(request)
        if refusal is not None:
            return refusal
        with self._lock:
            fault = self._status_faults.popleft() if self._status_faults else None
        if fault is not None:
            return self._fault_reply(request, *fault)
        message_id = self.status_message_id(request)
        with self._lock:
            fate = self.messages.get(message_id)
            state = fate.answer() if fate else ""
        if fate is None:
            return self.unknown_message(request, message_id)
        return self.status_reply(request, message_id, state, fate.details)

    def _fault_reply(self, request: RecordedRequest, kind: str, options: dict[str, Any]) -> Reply:
        if kind == "rate_limited":
            return self.rate_limit_reply(request, options)
        if kind == "server_error":
            status = options.get("status", 502)
            return html_reply(status, f"{status} Bad Gateway")
        if kind == "timeout":
            return replace(self.success(request), delay=options.get("delay", self.timeout_delay))
        if kind == "garbage":
            return Reply(
                options.get("status", 200), '{"result": {"id": "12', content_type="application/json"
            )
        if kind == "disconnect":
            return Reply(0, disconnect=True)
        return self.error_reply(kind, request, options)

    def rate_limit_reply(self, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        retry_after = options.get("retry_after")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return Reply(429, self.rate_limit_body(request), headers)

    # --- what subclasses provide --------------------------------------------------------
    def problems(self, request: RecordedRequest) -> list[str]:
        """Everything only a client bug can cause: method, path, encoding, field names."""
        raise NotImplementedError

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        """The provider's answer to wrong credentials, or None when they are right."""
        raise NotImplementedError

    def success(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        raise NotImplementedError

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def rate_limit_body(self, request: RecordedRequest) -> Any:
        return {"error": "Too Many Requests"}

    # --- the status endpoint, where the provider has one --------------------------------
    def is_status_request(self, request: RecordedRequest) -> bool:
        return False

    def status_problems(self, request: RecordedRequest) -> list[str]:
        raise NotImplementedError

    def status_message_id(self, request: RecordedRequest) -> str:
        raise NotImplementedError

    def unknown_message(self, request: RecordedRequest, message_id: str) -> Reply:
        raise NotImplementedError

    def status_reply(
        self, request: RecordedRequest, message_id: str, state: str, details: dict[str, Any]
    ) -> Reply:
        """`state`: "pending", "delivered" or "undelivered" (with the provider's reason in
        `details`)."""
        raise NotImplementedError
