"""SMS through the legacy MessageBird REST API, rest.messagebird.com
(docs/notification-providers.md §2).

The official SDK has been dormant since 2022 and posts without a timeout, so this is one
hand-written JSON POST. It needs a legacy MessageBird ("Connectivity Platform") access key;
keys of the 2024 Bird Channels API or the 2026 Bird API speak a different protocol. The
carrier's verdict is read later from the same message (GET /messages/<id>: the recipient's
`status`, with `statusReason` when it failed).
"""

from urllib.parse import quote

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
from .errors import DeliveryError


class MessageBirdBackend(Backend):
    kind = "messagebird"
    label = "MessageBird"
    destination_kind = "phone"
    api_url_setting = "MESSAGEBIRD_API_URL"
    credential_fields = (
        CredentialField(
            "access_key",
            _("Access key"),
            secret=True,
            help_text=_(
                "A live access key from the MessageBird dashboard (Developers → API "
                "access). Keys of the newer Bird platform do not work here."
            ),
        ),
        CredentialField(
            "originator",
            _("Sender"),
            secret=False,
            help_text=_(
                "A phone number with country code, or a name of at most 11 letters and "
                "digits, as registered with MessageBird."
            ),
        ),
    )
    errors = {
        "2": Rule(True, gettext_noop("Check the access key, then re-enable this channel.")),
        "9": Rule(
            True, gettext_noop("Check the recipient's number and the sender, then re-enable it.")
        ),
        "10": Rule(
            True, gettext_noop("Check the sender (originator), then re-enable this channel.")
        ),
        "20": Rule(True, gettext_noop("Check this channel's settings, then re-enable it.")),
        "25": Rule(
            True, gettext_noop("The MessageBird balance is used up: top it up, then re-enable it.")
        ),
    }
    checks_delivery = True
    # By the recipient's statusReason, lower case; other reasons are transient.
    undelivered = {
        "unknown subscriber": Rule(
            True,
            gettext_noop(
                "The number is not in use: check the recipient's number, then re-enable it."
            ),
        ),
        "rejected": Rule(
            True, gettext_noop("The carrier rejected the message; ask MessageBird support why.")
        ),
    }

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"AccessKey {self.credentials['access_key']}"}

    def build_request(self, message: Message) -> HttpRequest:
        return HttpRequest(
            url=f"{self.api_url}/messages",
            json={
                "originator": self.credentials["originator"],
                # MSISDN digits; MessageBird takes the leading + as optional.
                "recipients": [self.destination.lstrip("+")],
                "body": gsm7_safe(message.sms_text),
            },
            headers=self._headers(),
        )

    def parse_response(self, answer: HttpAnswer) -> SendResult:
        body = answer.body if isinstance(answer.body, dict) else {}
        if 200 <= answer.status < 300:
            if not body.get("id"):
                raise self.unexpected(answer, "accepted the message but returned no id")
            items = (body.get("recipients") or {}).get("items") or [{}]
            return SendResult(
                provider_message_id=str(body["id"]),
                detail=f"MessageBird accepted the SMS: status {items[0].get('status')}.",
            )
        raise self._failure(answer)

    def _failure(self, answer: HttpAnswer) -> DeliveryError:
        body = answer.body if isinstance(answer.body, dict) else {}
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        if not errors:
            return self.error(f"http_{answer.status}", f"HTTP {answer.status}", answer)
        # Several errors can come at once (bad recipient and bad originator): the first one the
        # table knows decides the class, and all of them go into the description.
        first = next((e for e in errors if str(e.get("code")) in self.errors), errors[0])
        description = "; ".join(str(e.get("description") or "") for e in errors)
        return self.error(str(first.get("code")), description, answer)

    def status_request(self, provider_message_id: str) -> HttpRequest:
        return HttpRequest(
            url=f"{self.api_url}/messages/{quote(provider_message_id, safe='')}",
            method="GET",
            headers=self._headers(),
        )

    def parse_status(self, answer: HttpAnswer) -> DeliveryReport:
        body = answer.body if isinstance(answer.body, dict) else {}
        if not 200 <= answer.status < 300:
            raise self._failure(answer)
        items = (body.get("recipients") or {}).get("items") or [{}]
        item = items[0] if isinstance(items[0], dict) else {}
        status = str(item.get("status") or "")
        if status == "delivered":
            return DeliveryReport(DELIVERED, "MessageBird: the SMS was delivered.")
        if status in ("delivery_failed", "expired"):
            reason = str(item.get("statusReason") or status)
            code = str(item.get("statusErrorCode") or status)
            return self.undelivered_report(code, reason, answer, key=reason.lower())
        # scheduled, sent, buffered: the carrier has not answered yet
        return DeliveryReport(PENDING, f"MessageBird: the SMS is {status or 'of unknown status'}.")
