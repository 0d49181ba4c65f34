"""Logging: a filter that blanks anything shaped like a Bitrix24 token or a secret parameter,
in the message and in the traceback or stack printed with it, and shows control characters in
the message escaped (a value from a request cannot forge a line); and, with LOG_FORMAT=json, a
formatter that writes one JSON object per line with the token and the Celery task it is about.

Our own code never logs secrets; the filter is the second line of defence for third-party
libraries (requests, urllib3, celery) that log URLs, task arguments or exception text.
"""

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import unquote_plus

# Bitrix24 tokens are 70 hex characters (older ones 32); Fernet ciphertexts start "gAAAA".
_PATTERNS = [
    re.compile(r"\b[0-9a-f]{32,}\b"),
    re.compile(r"gAAAAA[0-9A-Za-z_\-=]{20,}"),
    # b24keeper's own API keys (api.keys: "b24k_" and 43 URL-safe characters)
    re.compile(r"b24k_[0-9A-Za-z_\-]{20,}"),
    # key=value in query strings and form bodies
    re.compile(
        r"(?i)((?:client_secret|refresh_token|access_token|auth|code|api_key|token)=)[^&\s]+"
    ),
    # "key": "value" in JSON, and 'key': 'value' in a Python repr (exception texts)
    re.compile(
        r"(?i)([\"'](?:client_secret|refresh_token|access_token|api_key|auth_token|key)[\"']"
        r"\s*:\s*[\"'])[^\"']+"
    ),
]


# Query parameters whose values are secrets, by name, case-insensitive, percent-encoded or not:
# the OAuth redirect's code and state, the install frame's AUTH_ID and REFRESH_ID, PHP-style
# auth[...] keys of events, and every token or key.
SECRET_PARAMETERS = frozenset(
    {
        "code",
        "state",
        "auth",
        "auth_id",
        "refresh_id",
        "access_token",
        "refresh_token",
        "application_token",
        "client_secret",
        "api_key",
    }
)
_PARAMETER = re.compile(r"(^|[?&;])([^=&;#?\s]+)=([^&;#\s]*)")
# The key in a webhook-shaped REST path, /rest/<user id>/<key>/<method>.
_REST_KEY = re.compile(r"(?i)(/rest/\d+/)[^/?#\s]+")


def redact_target(text: str) -> str:
    """A request line, path, query string or URL with its secrets blanked: the values of
    SECRET_PARAMETERS and the key of a /rest/<n>/<key>/ path."""
    return _PARAMETER.sub(_blank_secret_value, _REST_KEY.sub(r"\1[redacted]", text))


def _blank_secret_value(found: re.Match[str]) -> str:
    name = unquote_plus(found.group(2)).lower()
    if name in SECRET_PARAMETERS or name.startswith("auth["):
        return f"{found.group(1)}{found.group(2)}=[redacted]"
    return found.group(0)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return redact_target(text)


# What would break a record into several lines or drive a terminal, from a value that came
# with a request: C0 (newline, carriage return, escape, NUL, ...), DEL, C1, and the Unicode
# line and paragraph separators that some readers (Python's splitlines() among them) also
# break on. Shown as Python escapes (\n, \x1b, \u2028), so the line stays one and readable.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with every control character and line separator shown as an escape."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class RedactSecretsFilter(logging.Filter):
    """Redacts the message, the traceback and the stack of every record it passes, and
    escapes control characters in the message (one record, one line; a traceback keeps its
    lines, and is printed after the message)."""

    # Formats tracebacks the way every logging.Formatter does by default.
    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = escape_controls(redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        # A formatter prints exc_text when it is set and only formats exc_info itself when it
        # is not: so the traceback is formatted here once, redacted, and left in exc_text.
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# --- What a log line is about, and one JSON object per line (LOG_FORMAT=json) ----------------
_token: ContextVar[str | None] = ContextVar("b24keeper_log_token", default=None)


def bind_token(reference: str) -> None:
    """Name the token the current task or request works on, in its JSON log lines."""
    _token.set(reference)


def clear_context() -> None:
    """Forget the token; called at the start of every task and request (ops.observe.signals)."""
    _token.set(None)


def _current_task_id() -> str | None:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - Celery is a requirement
        return None
    request = getattr(current_task, "request", None) if current_task else None
    return getattr(request, "id", None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, token, task_id, and the
    traceback when there is one. Everything passes through redact() here as well as in
    RedactSecretsFilter, so a handler without the filter still leaks nothing."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=UTC)
        entry: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": escape_controls(redact(record.getMessage())),
            "token": getattr(record, "token", None) or _token.get(),
            "task_id": getattr(record, "task_id", None) or _current_task_id(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
