"""The notification backends' HTTP session (core.http), and how a failed request reads."""

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from core import http

# (exception, code, what happened). Order matters: ConnectTimeout is also a ConnectionError.
TRANSPORT_FAILURES: tuple[tuple[type[requests.RequestException], str, str], ...] = (
    (requests.ConnectTimeout, "connect_timeout", "did not accept a connection within {0:g} s"),
    (
        requests.ReadTimeout,
        # Ambiguous: the request may have been processed, and no API here takes an
        # idempotency key, so a retry can deliver twice. For an alert that is acceptable.
        "read_timeout",
        "did not answer within {1:g} s; the message may have been delivered anyway, so a "
        "retry can deliver it twice",
    ),
    (
        requests.ConnectionError,
        "connection_error",
        "could not be reached: connection refused, reset or TLS failure",
    ),
    (requests.RequestException, "request_error", "could not be reached"),
)
BAD_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)


def http_session() -> requests.Session:
    """The notification backends' pooled session (core.http: made anew after a fork). It never
    retries by itself: a retry after the request reached the provider can deliver twice, so
    retries are the caller's decision."""
    return http.session("notifications", user_agent="b24keeper-notifications")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = (value or "").strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
