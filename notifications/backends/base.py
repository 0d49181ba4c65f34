"""What every notification backend shares: message and result types, credential metadata for
the admin, one HTTP session per process, and the generic error classification.

A backend is a template method, like django-anymail's: `send()` asks the subclass to build the
request, posts it here (session, timeouts, transport errors, JSON decoding), then asks the
subclass to read the answer. The subclass returns a `SendResult` or raises `self.error(...)`,
which classifies the provider's error code with the subclass's `errors` table and falls back
to the HTTP status for codes the table does not know. `check()` asks the same way what became
of a message the provider accepted (its final delivery status), where the provider tells.
"""

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_noop
from django.views.decorators.debug import sensitive_variables

from .errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from .gsm7 import GSM7_CHARACTERS as GSM7_CHARACTERS  # re-exported with the rest of the base
from .gsm7 import gsm7_safe as gsm7_safe
from .http import BAD_URL, TRANSPORT_FAILURES, http_session
from .http import parse_retry_after as parse_retry_after

if TYPE_CHECKING:  # django_stubs_ext is a type-checking package, not needed to run
    from django_stubs_ext import StrOrPromise

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
    # Set when the provider accepted the message but holds it back (Mandrill's hourly quota):
    # not an error, yet not "all well" either, so the channel shows it.
    delayed: str = ""
    # Set when the provider told us the destination moved (a Telegram group upgraded to a
    # supergroup) and the message went to the new one: store it on the channel.
    new_destination: str | None = None


@dataclass(frozen=True)
class CredentialField:
    """One credential a backend needs, described so the admin can build a form for it. The
    label and help text are lazy translations: they show in the staff member's language."""

    name: str
    label: "StrOrPromise"
    secret: bool
    help_text: "StrOrPromise"
    required: bool = True


@dataclass(frozen=True)
class Rule:
    """How to treat one provider error code."""

    permanent: bool
    advice: str  # what a person should do next (or that nothing is needed)
    retry_after: float | None = None  # minimum wait when the provider documents one


@dataclass(frozen=True, repr=False)
class HttpRequest:
    """What a backend wants sent. Its URL, body, auth or headers hold a credential, so its
    repr shows none of them."""

    url: str
    method: str = "POST"  # GET only for reading a message's status
    params: Mapping[str, str] | None = None  # query string
    data: Mapping[str, str] | None = None  # form body
    json: Any = None  # JSON body
    auth: tuple[str, str] | None = None  # HTTP Basic
    headers: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return "HttpRequest(<hidden: holds credentials>)"


PENDING, DELIVERED, UNDELIVERED = "pending", "delivered", "undelivered"


@dataclass(frozen=True)
class DeliveryReport:
    """What the provider says became of a message it accepted (its delivery status)."""

    state: str  # PENDING, DELIVERED or UNDELIVERED
    detail: str  # the provider's status in words; never a secret
    # UNDELIVERED: the reason, classified like a send error (permanent: a person must act).
    error: DeliveryError | None = None


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: Any  # the decoded JSON
    retry_after: float | None  # from a Retry-After header


RETRY = gettext_noop("This is temporary; the delivery will be retried.")
_RATE_LIMITED = Rule(False, gettext_noop("The provider is rate-limiting us. ") + RETRY)
_SERVER_ERROR = Rule(False, gettext_noop("The provider had a server error. ") + RETRY)
_AUTH = Rule(True, gettext_noop("Check this channel's credentials, then re-enable it."))
_CLIENT_ERROR = Rule(
    True, gettext_noop("Check this channel's settings and recipient, then re-enable it.")
)
_UNEXPECTED = Rule(False, gettext_noop("b24keeper could not read the answer. ") + RETRY)
_TRANSPORT = Rule(False, RETRY)
_UNDELIVERED = Rule(
    False,
    gettext_noop(
        "The provider could not deliver it; b24keeper sends it again while the incident is open."
    ),
)


def rule_for_status(status: int | None) -> Rule:
    """The fallback for codes a provider's table does not know, by HTTP status."""
    if status is None or status < 400:
        return _UNEXPECTED
    if status == 429:
        return _RATE_LIMITED
    if status >= 500:
        return _SERVER_ERROR
    return _AUTH if status in (401, 403) else _CLIENT_ERROR


_MAX_DESCRIPTION = 300


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
    # A backend whose provider reports a final delivery status implements status_request()
    # and parse_status(). `undelivered` classifies the provider's reason for an undelivered
    # message; reasons not listed are transient (the message is sent again).
    checks_delivery: ClassVar[bool] = False
    undelivered: ClassVar[Mapping[str, Rule]] = {}
    # The setting that holds the provider's minimum seconds between two messages to one
    # recipient (UniSender email); sending.py spaces the sends.
    recipient_interval_setting: ClassVar[str | None] = None

    @classmethod
    def recipient_interval(cls) -> float:
        name = cls.recipient_interval_setting
        return float(getattr(settings, name)) if name else 0.0

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

    def status_request(self, provider_message_id: str) -> HttpRequest:
        raise NotImplementedError

    def parse_status(self, answer: HttpAnswer) -> DeliveryReport:
        raise NotImplementedError

    @sensitive_variables()
    def check(self, provider_message_id: str) -> DeliveryReport:
        """What became of a message this backend sent. Raises DeliveryError when the question
        itself failed (the provider is down): that says nothing about the message."""
        report = self.parse_status(self.post(self.status_request(provider_message_id)))
        logger.info("%s message %s: %s", self.kind, provider_message_id, report.detail)
        return report

    def undelivered_report(
        self, code: str, description: str, answer: HttpAnswer | None = None, key: str = ""
    ) -> DeliveryReport:
        """The report of a message the provider could not deliver, with its reason. `key`
        looks up `undelivered` when it differs from the code shown to people."""
        rule = self.undelivered.get(key or code, _UNDELIVERED)
        error = self._error(rule, code, description, answer, None, from_provider=True)
        return DeliveryReport(UNDELIVERED, f"{self.label} could not deliver it: {error}", error)

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
            response = http_session().request(
                request.method,
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
        if isinstance(err, BAD_URL):
            return ConfigurationError(
                f"The setting {self.api_url_setting} is not a usable URL; set it to the "
                f"{self.label} API's base URL."
            )
        code, what = next((c, w) for t, c, w in TRANSPORT_FAILURES if isinstance(err, t))
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
        return self._error(rule, code, description, answer, retry_after, from_provider)

    def _error(
        self,
        rule: Rule,
        code: str,
        description: str,
        answer: HttpAnswer | None,
        retry_after: float | None,
        from_provider: bool,
    ) -> DeliveryError:
        waits = [w for w in (retry_after, answer and answer.retry_after, rule.retry_after) if w]
        error_class = PermanentDeliveryError if rule.permanent else TransientDeliveryError
        return error_class(
            self.redact(description) or "no description given",
            code=code,
            provider=self.label,
            advice=rule.advice,
            retry_after=max(waits) if waits and not rule.permanent else None,
            http_status=answer.status if answer else None,
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
