"""SMS through the UniSender (Selzy) classic API, `sendSms` (docs/notification-providers.md
§3).

No maintained library exists, so this is one hand-written form POST. The classic API reports
errors in the body with HTTP 200 (`{"error": ..., "code": ...}`), so every answer is parsed.
`UniSenderBackend` here is also the base of the `sendEmail` backend. The carrier's verdict is
read later with `checkSms` (`result.status`: `ok_delivered`, or an `err_…` reason).
"""

import html
from typing import Any, ClassVar

from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from .base import (
    DELIVERED,
    PENDING,
    Backend,
    CredentialField,
    DeliveryReport,
    HttpAnswer,
    HttpRequest,
    Message,
    Rule,
    SendResult,
    gsm7_safe,
)

# Error texts come in this language. "en" exists on api.unisender.com and on api.selzy.com,
# so the same code works whichever host UNISENDER_API_URL names.
LANGUAGE = "en"
_RATE_LIMIT = Rule(
    False, gettext_noop("UniSender is rate-limiting this key. The delivery will retry."), 60
)
ERRORS: dict[str, Rule] = {
    "invalid_api_key": Rule(
        True,
        gettext_noop(
            "Check the API key (UniSender → Settings → API), then re-enable this channel."
        ),
    ),
    "access_denied": Rule(
        True,
        gettext_noop(
            "API access is off for this account or method; ask UniSender support to enable it."
        ),
    ),
    "unknown_method": Rule(True, gettext_noop("This is a bug in b24keeper, please report it.")),
    "invalid_arg": Rule(
        True,
        gettext_noop(
            "UniSender rejected a parameter, often an unregistered sender name. Check this "
            "channel's settings, then re-enable it."
        ),
    ),
    "not_enough_money": Rule(
        True, gettext_noop("The UniSender balance is used up: top it up, then re-enable.")
    ),
    "unspecified": Rule(
        True, gettext_noop("Read UniSender's message above, fix the cause, then re-enable.")
    ),
    "retry_later": Rule(
        False, gettext_noop("UniSender asked to retry later. The delivery will retry.")
    ),
    "api_call_limit_exceeded_for_api_key": _RATE_LIMIT,
    "api_call_limit_exceeded_for_ip": _RATE_LIMIT,
    "dest_invalid": Rule(
        True, gettext_noop("Check the recipient's phone number, then re-enable it.")
    ),
    "src_invalid": Rule(
        True, gettext_noop("Register the sender name in UniSender, then re-enable it.")
    ),
    # Not confirmed by UniSender's docs: the same number was texted less than a minute ago.
    "has_been_sent": Rule(
        False, gettext_noop("UniSender refuses a second SMS within a minute."), 60
    ),
    "unsubscribed_globally": Rule(
        True, gettext_noop("The recipient unsubscribed from all UniSender mail.")
    ),
}
# An error code the table does not know, inside an HTTP 200: UniSender's own advice is to
# treat untyped errors as permanent.
_UNKNOWN = Rule(
    True, gettext_noop("Read UniSender's message above, fix the cause, then re-enable.")
)


class UniSenderBackend(Backend):
    """What sendSms and sendEmail share: host, method path, api_key, error format."""

    api_url_setting = "UNISENDER_API_URL"
    method: ClassVar[str]
    errors: ClassVar[dict[str, Rule]] = ERRORS
    # Statuses that are not final yet, whatever their prefix.
    pending_statuses: ClassVar[frozenset[str]] = frozenset({"not_sent", "ok_sent"})

    def unisender_request(self, fields: dict[str, str], method: str = "") -> HttpRequest:
        return HttpRequest(
            url=f"{self.api_url}/{LANGUAGE}/api/{method or self.method}",
            params={"format": "json"},
            # The key goes in the POST body, not the query, to stay out of proxy logs.
            data={"api_key": self.credentials["api_key"], **fields},
        )

    def checked_result(self, answer: HttpAnswer) -> Any:
        """The `result` of a successful call; raises for a whole-call error."""
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status != 200 or "error" in body:
            code = str(body.get("code") or f"http_{answer.status}")
            # UniSender HTML-escapes its error texts.
            description = html.unescape(str(body.get("error") or f"HTTP {answer.status}"))
            fallback = _UNKNOWN if answer.status == 200 else None
            raise self.error(code, description, answer, fallback=fallback)
        if "result" not in body:
            raise self.unexpected(answer, "answered with neither a result nor an error")
        return body["result"]

    def report(self, status: str, what: str) -> DeliveryReport:
        """checkSms and checkEmail share the convention: `err_…` failed, `ok_…` is on its way
        or arrived, `not_sent` is not processed yet (docs/notification-providers.md §5a)."""
        if status in self.pending_statuses or not status.startswith(("ok_", "err_")):
            return DeliveryReport(PENDING, f"UniSender: the {what} is {status or 'unknown'}.")
        if status.startswith("err_"):
            return self.undelivered_report(status, status.removeprefix("err_").replace("_", " "))
        return DeliveryReport(DELIVERED, f"UniSender: the {what} was delivered ({status}).")

    @staticmethod
    def warnings(body: Any) -> str:
        warnings = body.get("warnings") if isinstance(body, dict) else None
        if not warnings or not isinstance(warnings, list):
            return ""
        first = warnings[0]
        text = first.get("warning") if isinstance(first, dict) else first
        return f" Warning: {html.unescape(str(text))[:120]}."


class UniSenderSmsBackend(UniSenderBackend):
    kind = "unisender_sms"
    label = "UniSender SMS"
    destination_kind = "phone"
    method = "sendSms"
    credential_fields = (
        CredentialField(
            "api_key",
            _("API key"),
            secret=True,
            help_text=_("From UniSender (or Selzy) → Settings → Integration and API."),
        ),
        CredentialField(
            "sender",
            _("Sender name"),
            secret=False,
            help_text=_("3–11 Latin letters or digits registered in UniSender, or a phone number."),
        ),
    )

    checks_delivery = True
    # checkSms statuses of an SMS that was not delivered; the others are transient.
    undelivered = {
        "err_dest_invalid": Rule(
            True, gettext_noop("Check the recipient's phone number, then re-enable it.")
        ),
        "err_src_invalid": Rule(
            True, gettext_noop("Register the sender name in UniSender, then re-enable it.")
        ),
        "err_not_allowed": Rule(
            True,
            gettext_noop(
                "UniSender may not send to this number; ask its support, then re-enable it."
            ),
        ),
        "err_skip_letter": Rule(
            True, gettext_noop("UniSender skipped the SMS; ask its support why.")
        ),
    }

    def build_request(self, message: Message) -> HttpRequest:
        return self.unisender_request(
            {
                # One number per call: the answer's shape for several numbers is undocumented.
                "phone": self.destination.lstrip("+"),
                "sender": self.credentials["sender"],
                "text": gsm7_safe(message.sms_text),
            }
        )

    def parse_response(self, answer: HttpAnswer) -> SendResult:
        result = self.checked_result(answer)
        if isinstance(result, list):  # defensive: a shape seen only for several numbers
            result = result[0] if result else {}
        if not isinstance(result, dict) or not result.get("sms_id"):
            raise self.unexpected(answer, "answered without an sms_id")
        price = f"price {result.get('price')} {result.get('currency') or ''}".strip()
        return SendResult(
            provider_message_id=str(result["sms_id"]),
            detail=f"UniSender accepted the SMS ({price}).{self.warnings(answer.body)}",
        )

    def status_request(self, provider_message_id: str) -> HttpRequest:
        return self.unisender_request({"sms_id": provider_message_id}, method="checkSms")

    def parse_status(self, answer: HttpAnswer) -> DeliveryReport:
        result = self.checked_result(answer)
        status = str(result.get("status") or "") if isinstance(result, dict) else ""
        return self.report(status, "SMS")
