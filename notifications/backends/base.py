"""What every notification backend shares: message and result types, credential metadata for
the admin, one HTTP session per process, and the generic error classification.

A backend is a template method, like django-anymail's: `send()` asks the subclass to build the
request, posts it here (session, timeouts, transport errors, JSON decoding), then asks the
subclass to read the answer. The subclass returns a `SendResult` or raises `self.error(...)`,
which classifies the provider's error code with the subclass's `errors` table and falls back
to the HTTP status for codes the table does not know.
"""

import logging
import math
import os
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.views.decorators.debug import sensitive_variables

from .errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    subject: str  # email subject
    text: str  # full plain text, for email and Telegram
    sms_text: str  # short text for SMS; backends pass it through gsm7_safe()
    html: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    detail: str  # a short human summary of the provider's answer; never a secret
    # Set when the provider told us the destination moved (a Telegram group upgraded to a
    # supergroup) and the message went to the new one: store it on the channel.
    new_destination: str | None = None


@dataclass(frozen=True)
class CredentialField:
    """One credential a backend needs, described so the admin can build a form for it."""

    name: str
    label: str
    secret: bool
    help_text: str
    required: bool = True


@dataclass(frozen=True)
class Rule:
    """How to treat one provider error code."""

    permanent: bool
    advice: str  # what a person should do next (or that nothing is needed)
    retry_after: float | None = None  # minimum wait when the provider documents one


@dataclass(frozen=True, repr=False)
class HttpRequest:
    """What a backend wants posted. Its URL, body, auth or headers hold a credential, so its
    repr shows none of them."""

    url: str
    params: Mapping[str, str] | None = None  # query string
    data: Mapping[str, str] | None = None  # form body
    json: Any = None  # JSON body
    auth: tuple[str, str] | None = None  # HTTP Basic
    headers: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return "HttpRequest(<hidden: holds credentials>)"


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: Any  # the decoded JSON
    retry_after: float | None  # from a Retry-After header


RETRY = "This is temporary; the delivery will be retried."
_RATE_LIMITED = Rule(False, "The provider is rate-limiting us. " + RETRY)
_SERVER_ERROR = Rule(False, "The provider had a server error. " + RETRY)
_AUTH = Rule(True, "Check this channel's credentials, then re-enable it.")
_CLIENT_ERROR = Rule(True, "Check this channel's settings and recipient, then re-enable it.")
_UNEXPECTED = Rule(False, "b24keeper could not read the answer. " + RETRY)
_TRANSPORT = Rule(False, RETRY)


def rule_for_status(status: int | None) -> Rule:
    """The fallback for codes a provider's table does not know, by HTTP status."""
    if status is None or status < 400:
        return _UNEXPECTED
    if status == 429:
        return _RATE_LIMITED
    if status >= 500:
        return _SERVER_ERROR
    return _AUTH if status in (401, 403) else _CLIENT_ERROR


# (exception, code, what happened). Order matters: ConnectTimeout is also a ConnectionError.
_TRANSPORT_FAILURES: tuple[tuple[type[requests.RequestException], str, str], ...] = (
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
_BAD_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)
_MAX_DESCRIPTION = 300

_session_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid = 0


def http_session() -> requests.Session:
    """The one pooled session of this process. Made anew after a fork (Celery's prefork pool),
    so two processes never share a socket. It never retries by itself: a retry after the
    request reached the provider can deliver twice, so retries are the caller's decision."""
    global _session, _session_pid
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            _session = requests.Session()
            _session.headers["User-Agent"] = "b24keeper-notifications"
            _session_pid = os.getpid()
        return _session


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


# --- Destinations ---------------------------------------------------------------------------
E164_RE = re.compile(r"\+[1-9]\d{6,14}")
TELEGRAM_CHAT_RE = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")


def _is_email(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


DESTINATIONS: dict[str, tuple[Callable[[str], object], str]] = {
    "phone": (E164_RE.fullmatch, "a phone number in E.164 form, such as +15550100123"),
    "email": (_is_email, "an email address, such as ann@example.org"),
    "telegram_chat": (
        TELEGRAM_CHAT_RE.fullmatch,
        "a Telegram chat id (such as 987654321 or -1001234567890) or @channelname",
    ),
}


# --- GSM-7 ----------------------------------------------------------------------------------
# The GSM 03.38 basic set plus its extension table (an extension character costs two septets
# but keeps the message GSM-7). One character outside them flips the whole SMS to UCS-2:
# 70 characters per part instead of 160, so a one-part alert silently costs three parts.
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_CHARACTERS = frozenset(_GSM7_BASIC + "^{}\\[~]|€")
_LOOKALIKES = {
    **dict.fromkeys("‘’‚‛′`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
    "•": "*",
    "·": ".",
    "№": "No",
    "\t": " ",
    "©": "(c)",
    "®": "(R)",
    "™": "TM",
    "×": "x",
    # Latin letters that Unicode does not decompose into a base letter and a mark.
    **{"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "œ": "oe", "Œ": "OE", "ı": "i", "ŀ": "l"},
}
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґў",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya i yi ye g u"
        "".split(),
        strict=True,
    )
)
# Invisible or pictorial: emoji, variation selectors, zero-width joiners, control characters.
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc", "Cs", "Co", "Cn", "So", "Sk"})


def _gsm7_char(char: str) -> str:
    if char in GSM7_CHARACTERS:
        return char
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]
    latin = _CYRILLIC.get(char.lower())
    if latin is not None:
        latin = latin.strip("-")
        return latin.capitalize() if char.isupper() else latin
    category = unicodedata.category(char)
    if category == "Zs":  # NBSP, thin and narrow spaces
        return " "
    if category in ("Zl", "Zp"):
        return "\n"
    if category in _DROPPED_CATEGORIES:
        return ""
    # Accented letters outside GSM-7 (ç, ő, ā): keep the base letter.
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if c in GSM7_CHARACTERS)
    return base or "?"


def gsm7_safe(text: str) -> str:
    """Text that fits the GSM-7 alphabet, so an SMS never flips to UCS-2. Curly quotes, dashes
    and special spaces become ASCII, Cyrillic is transliterated, emoji are dropped."""
    return "".join(_gsm7_char(char) for char in text)


# --- The backend ----------------------------------------------------------------------------
class Backend:
    kind: ClassVar[str]
    label: ClassVar[str]
    destination_kind: ClassVar[str]  # "phone" | "email" | "telegram_chat"
    credential_fields: ClassVar[tuple[CredentialField, ...]]
    # The Django setting holding the provider's base URL, read at construction (not import),
    # so tests and staging can point it at a fake.
    api_url_setting: ClassVar[str]
    # Provider error code -> Rule. Codes not listed fall back to rule_for_status().
    errors: ClassVar[Mapping[str, Rule]] = {}

    @sensitive_variables()
    def __init__(self, credentials: Mapping[str, str], destination: str) -> None:
        self.credentials = self._clean_credentials(credentials)
        self.destination = self._clean_destination(destination)
        self.api_url = _url_setting(self.api_url_setting)
        self.timeout = (float(settings.NOTIFY_CONNECT_TIMEOUT), float(settings.NOTIFY_READ_TIMEOUT))

    def __repr__(self) -> str:  # never the credentials
        return f"<{type(self).__name__} to {self.destination!r}>"

    # Subclasses implement these two.
    def build_request(self, message: Message) -> HttpRequest:
        raise NotImplementedError

    def parse_response(self, answer: HttpAnswer) -> SendResult:
        raise NotImplementedError

    @sensitive_variables()
    def send(self, message: Message) -> SendResult:
        """Send one message, or raise TransientDeliveryError / PermanentDeliveryError."""
        try:
            result = self.deliver(message)
        except DeliveryError as err:
            logger.warning("%s delivery to %s failed: %s", self.kind, self.destination, err)
            raise
        logger.info("%s delivery to %s: %s", self.kind, self.destination, result.detail)
        return result

    @sensitive_variables()
    def deliver(self, message: Message) -> SendResult:
        """Build, post, read. A backend whose library owns the HTTP (Mandrill) overrides this."""
        return self.parse_response(self.post(self.build_request(message)))

    @sensitive_variables()
    def post(self, request: HttpRequest) -> HttpAnswer:
        headers = {"Accept": "application/json", **(request.headers or {})}
        try:
            response = http_session().post(
                request.url,
                params=request.params,
                data=request.data,
                json=request.json,
                auth=request.auth,
                headers=headers,
                timeout=self.timeout,
                # A redirected POST turns into a GET, possibly to another host: never follow.
                allow_redirects=False,
            )
        except requests.RequestException as err:
            failure = self._transport_failure(err)
        else:
            return self._read(response)
        # Raised outside the `except` block on purpose: the requests exception's text holds
        # the URL (Telegram's holds the bot token), so it must be neither our __cause__ nor
        # our __context__, or a logged traceback would print it.
        raise failure

    def _transport_failure(self, err: requests.RequestException) -> Exception:
        if isinstance(err, _BAD_URL):
            return ConfigurationError(
                f"The setting {self.api_url_setting} is not a usable URL; set it to the "
                f"{self.label} API's base URL."
            )
        code, what = next((c, w) for t, c, w in _TRANSPORT_FAILURES if isinstance(err, t))
        return self.error(
            code, what.format(*self.timeout), fallback=_TRANSPORT, from_provider=False
        )

    def _read(self, response: requests.Response) -> HttpAnswer:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            body = response.json()
        except ValueError:
            raise self.unreadable(response, retry_after) from None
        return HttpAnswer(response.status_code, body, retry_after)

    def unreadable(self, response: requests.Response, retry_after: float | None) -> DeliveryError:
        """An answer whose body is not JSON: transient whatever the status, since it is most
        likely a proxy's or load balancer's error page rather than the API speaking."""
        status = response.status_code
        content_type = response.headers.get("Content-Type", "no type").split(";")[0]
        fallback = rule_for_status(status)
        return self.error(
            f"http_{status}",
            f"answered HTTP {status} with a body that is not JSON ({content_type})",
            HttpAnswer(status, None, retry_after),
            fallback=_UNEXPECTED if fallback.permanent else fallback,
            from_provider=False,
        )

    def error(
        self,
        code: str,
        description: str,
        answer: HttpAnswer | None = None,
        *,
        key: str | None = None,
        retry_after: float | None = None,
        fallback: Rule | None = None,
        from_provider: bool = True,
    ) -> DeliveryError:
        """Build (not raise) the error for a failed send. `key` looks up the table when it
        differs from the code shown to people; `fallback` replaces rule_for_status()."""
        status = answer.status if answer else None
        rule = self.errors.get(code if key is None else key) or fallback or rule_for_status(status)
        waits = [w for w in (retry_after, answer and answer.retry_after, rule.retry_after) if w]
        error_class = PermanentDeliveryError if rule.permanent else TransientDeliveryError
        return error_class(
            self.redact(description) or "no description given",
            code=code,
            provider=self.label,
            advice=rule.advice,
            retry_after=max(waits) if waits and not rule.permanent else None,
            http_status=status,
            from_provider=from_provider,
        )

    def unexpected(self, answer: HttpAnswer, what: str) -> DeliveryError:
        """A JSON answer without the fields a success or an error must have."""
        return self.error(
            "unexpected_answer", what, answer, fallback=_UNEXPECTED, from_provider=False
        )

    def redact(self, text: str) -> str:
        """Provider text with any secret credential blanked, trimmed for a log line."""
        text = str(text)
        for credential in self.credential_fields:
            value = self.credentials.get(credential.name, "")
            if credential.secret and len(value) >= 4:
                text = text.replace(value, "[redacted]")
        return text[:_MAX_DESCRIPTION]

    def _clean_credentials(self, credentials: Mapping[str, str]) -> dict[str, str]:
        values = {
            f.name: str(credentials.get(f.name) or "").strip() for f in self.credential_fields
        }
        missing = [f for f in self.credential_fields if f.required and not values[f.name]]
        if missing:
            names = ", ".join(f"{f.name} ({f.label})" for f in missing)
            raise ConfigurationError(
                f"The {self.label} channel is missing {names}. Fill it in on the channel's "
                "page in the admin."
            )
        return values

    def _clean_destination(self, destination: str) -> str:
        value = (destination or "").strip()
        is_valid, expected = DESTINATIONS[self.destination_kind]
        if not is_valid(value):
            raise ConfigurationError(
                f"“{value}” is not a valid {self.label} destination; expected {expected}."
            )
        return value


def _url_setting(name: str) -> str:
    value = str(getattr(settings, name, "") or "").strip().rstrip("/")
    if not value.startswith(("https://", "http://")):
        raise ConfigurationError(
            f"The setting {name} is not an http(s) URL. Set it in config/settings.py "
            "(from the environment; see .env.example)."
        )
    return value
