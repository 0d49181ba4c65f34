"""SMS through Twilio Programmable Messaging (docs/notification-providers.md §1).

One form POST with HTTP Basic auth; the SDK would add ~21 MiB and has no default timeout.
Twilio's answer says "queued": the carrier's verdict comes later, read from the message
resource (GET …/Messages/<sid>.json: `status`, and a 30xxx `error_code` when it failed).
"""

import re
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

_MESSAGING_SERVICE_RE = re.compile(r"MG[0-9a-fA-F]{32}")
_FIX_CREDENTIALS = gettext_noop(
    "Check the Account SID and Auth Token, then re-enable this channel."
)
_FIX_SENDER = gettext_noop(
    "Check the sender in this channel and in the Twilio console, then re-enable it."
)
_STOPPED = Rule(
    True,
    gettext_noop(
        "The recipient replied STOP. They must text START to the sender to receive alerts again."
    ),
)
_DELIVERED = frozenset({"delivered", "read"})
_UNDELIVERED = frozenset({"failed", "undelivered", "canceled"})


class TwilioBackend(Backend):
    kind = "twilio"
    label = "Twilio"
    destination_kind = "phone"
    api_url_setting = "TWILIO_API_URL"
    credential_fields = (
        CredentialField(
            "account_sid",
            _("Account SID"),
            secret=False,
            help_text=_("Starts with AC; shown on the Twilio console's dashboard."),
        ),
        CredentialField(
            "auth_token",
            _("Auth Token"),
            secret=True,
            help_text=_("Shown next to the Account SID on the Twilio console's dashboard."),
        ),
        CredentialField(
            "sender",
            _("Sender"),
            secret=False,
            help_text=_(
                "A Twilio number of this account in E.164 form (+15550100999), an "
                "alphanumeric sender ID, or a Messaging Service SID (MG…)."
            ),
        ),
    )
    # Twilio error numbers: https://www.twilio.com/docs/api/errors
    errors = {
        "20003": Rule(True, _FIX_CREDENTIALS),
        "20404": Rule(
            True, gettext_noop("Twilio does not know this Account SID. ") + _FIX_CREDENTIALS
        ),
        "21211": Rule(
            True, gettext_noop("Check the recipient's phone number, then re-enable this channel.")
        ),
        "21614": Rule(True, gettext_noop("The number cannot receive SMS; use a mobile number.")),
        "21606": Rule(
            True, gettext_noop("The sender cannot send SMS or is not yours. ") + _FIX_SENDER
        ),
        "21608": Rule(
            True,
            gettext_noop(
                "A trial account can only text verified numbers: verify the recipient's number in "
                "the Twilio console or upgrade the account."
            ),
        ),
        "21610": _STOPPED,
        "21612": Rule(
            True, gettext_noop("Enable this destination in Twilio's SMS geo permissions.")
        ),
        "21408": Rule(True, gettext_noop("Enable this region in Twilio's SMS geo permissions.")),
        "21617": Rule(
            True,
            gettext_noop("The text is too long; this is a bug in b24keeper, please report it."),
        ),
        # The request was not processed and is safe to retry (Twilio error 20429).
        "20429": Rule(
            False, gettext_noop("Twilio is limiting concurrent requests. The delivery will retry.")
        ),
    }
    checks_delivery = True
    # The message resource's error_code when the carrier did not deliver; others are transient.
    undelivered = {
        "30004": Rule(
            True, gettext_noop("The recipient blocks messages from this sender; ask them not to.")
        ),
        "30005": Rule(
            True,
            gettext_noop(
                "The carrier does not know this number: check the recipient's phone number, then "
                "re-enable this channel."
            ),
        ),
        "30006": Rule(
            True, gettext_noop("The number is a landline or cannot take SMS; use a mobile number.")
        ),
        "30007": Rule(
            True,
            gettext_noop(
                "The carrier filtered the message: register the sender with Twilio (A2P 10DLC or "
                "toll-free verification), then re-enable this channel."
            ),
        ),
        "30034": Rule(
            True,
            gettext_noop(
                "US carriers refuse SMS from numbers not registered for A2P 10DLC; register it in "
                "the Twilio console, then re-enable this channel."
            ),
        ),
        "21610": _STOPPED,
    }

    def _messages_url(self) -> str:
        account_sid = quote(self.credentials["account_sid"], safe="")
        return f"{self.api_url}/2010-04-01/Accounts/{account_sid}/Messages"

    def build_request(self, message: Message) -> HttpRequest:
        account_sid = self.credentials["account_sid"]
        sender = self.credentials["sender"]
        # Exactly one of From / MessagingServiceSid: a service picks a number from its pool.
        sender_field = "MessagingServiceSid" if _MESSAGING_SERVICE_RE.fullmatch(sender) else "From"
        return HttpRequest(
            # The .json suffix selects JSON answers; without it the 2010 API answers XML.
            url=f"{self._messages_url()}.json",
            data={
                "To": self.destination,
                sender_field: sender,
                "Body": gsm7_safe(message.sms_text),
            },
            auth=(account_sid, self.credentials["auth_token"]),
        )

    def parse_response(self, answer: HttpAnswer) -> SendResult:
        body = answer.body if isinstance(answer.body, dict) else {}
        if 200 <= answer.status < 300:
            if not body.get("sid"):
                raise self.unexpected(answer, "accepted the message but returned no sid")
            segments = body.get("num_segments") or "?"  # a string, "0" with a Messaging Service
            return SendResult(
                provider_message_id=str(body["sid"]),
                detail=f"Twilio accepted the SMS: status {body.get('status')}, "
                f"{segments} segment(s).",
            )
        raise self._failure(answer)

    def _failure(self, answer: HttpAnswer) -> DeliveryError:
        body = answer.body if isinstance(answer.body, dict) else {}
        code = str(body.get("code") or f"http_{answer.status}")
        description = str(body.get("message") or body.get("detail") or f"HTTP {answer.status}")
        return self.error(code, description, answer)

    def status_request(self, provider_message_id: str) -> HttpRequest:
        return HttpRequest(
            url=f"{self._messages_url()}/{quote(provider_message_id, safe='')}.json",
            method="GET",
            auth=(self.credentials["account_sid"], self.credentials["auth_token"]),
        )

    def parse_status(self, answer: HttpAnswer) -> DeliveryReport:
        body = answer.body if isinstance(answer.body, dict) else {}
        if not 200 <= answer.status < 300:
            raise self._failure(answer)
        status = str(body.get("status") or "")
        if status in _DELIVERED:
            return DeliveryReport(DELIVERED, f"Twilio: the SMS was {status}.")
        if status in _UNDELIVERED:
            code = str(body.get("error_code") or status)
            return self.undelivered_report(
                code, str(body.get("error_message") or f"the SMS is {status}"), answer
            )
        # queued, sending, sent (the carrier has it; some never confirm), accepted, scheduled
        return DeliveryReport(PENDING, f"Twilio: the SMS is {status or 'of unknown status'}.")
