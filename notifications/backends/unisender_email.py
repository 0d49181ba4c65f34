"""Email through the UniSender (Selzy) classic API, `sendEmail` (docs/notification-providers.md
§5a).

Mind UniSender's rules for this method: 60 calls a minute, at least 60 s between two emails to
the same address (UNISENDER_EMAIL_MIN_INTERVAL; sending.py spaces them), and a sender address
confirmed in the account. `error_checking=1` makes the answer carry one result (an id or
errors) per recipient, even inside an HTTP 200. `checkEmail` tells later whether it arrived.
"""

from typing import ClassVar

from django.utils.html import linebreaks
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from .base import (
    CredentialField,
    DeliveryReport,
    HttpAnswer,
    HttpRequest,
    Message,
    Rule,
    SendResult,
)
from .unisender_sms import ERRORS, UniSenderBackend

# UniSender documents few per-recipient codes: an unknown one (the answer to a second email
# within the minute among them) is most likely passing, so it is retried, not disabling.
_UNKNOWN_RECIPIENT_ERROR = Rule(
    False,
    gettext_noop("UniSender did not take the email for this address now; it is sent again."),
    60,
)
_BAD_ADDRESS = Rule(
    True, gettext_noop("The address does not take mail; correct it on this channel.")
)


class UniSenderEmailBackend(UniSenderBackend):
    kind = "unisender_email"
    label = "UniSender email"
    destination_kind = "email"
    method = "sendEmail"
    credential_fields = (
        CredentialField(
            "api_key",
            _("API key"),
            secret=True,
            help_text=_("From UniSender (or Selzy) → Settings → Integration and API."),
        ),
        CredentialField(
            "sender_email",
            _("Sender address"),
            secret=False,
            help_text=_("An address confirmed as a sender in the UniSender account."),
        ),
        CredentialField(
            "sender_name", _("Sender name"), secret=False, help_text=_("Shown as the From name.")
        ),
        CredentialField(
            "list_id",
            _("List id"),
            secret=False,
            help_text=_(
                "The id of a list made for alerts: UniSender requires one and offers "
                "the recipient to unsubscribe from it (see getLists)."
            ),
        ),
    )
    errors = {
        **ERRORS,
        "unchecked_sender_email": Rule(
            True,
            gettext_noop("Confirm the sender address in UniSender, then re-enable this channel."),
        ),
    }
    recipient_interval_setting = "UNISENDER_EMAIL_MIN_INTERVAL"
    checks_delivery = True
    # "err_will_retry", "err_resend": an attempt failed and UniSender keeps trying.
    pending_statuses: ClassVar[frozenset[str]] = frozenset(
        {"not_sent", "ok_sent", "err_will_retry", "err_resend"}
    )
    # checkEmail statuses of an email that will not arrive; the others are transient.
    undelivered = {
        "err_user_unknown": _BAD_ADDRESS,
        "err_user_inactive": _BAD_ADDRESS,
        "err_mailbox_discarded": _BAD_ADDRESS,
        "err_no_dns": _BAD_ADDRESS,
        "err_domain_inactive": _BAD_ADDRESS,
        "err_blacklisted": Rule(
            True, gettext_noop("UniSender blocks this address; choose another one.")
        ),
        "err_unsubscribed": Rule(
            True,
            gettext_noop(
                "The recipient unsubscribed from the alert list; they must subscribe again."
            ),
        ),
        "err_spam_rejected": Rule(
            True,
            gettext_noop(
                "The recipient's server took the alert for spam; whitelist the sender there."
            ),
        ),
    }

    def build_request(self, message: Message) -> HttpRequest:
        return self.unisender_request(
            {
                "email": self.destination,
                "sender_name": self.credentials["sender_name"],
                "sender_email": self.credentials["sender_email"],
                "subject": message.subject,
                # sendEmail takes only an HTML body.
                "body": message.html or linebreaks(message.text, autoescape=True),
                "list_id": self.credentials["list_id"],
                "error_checking": "1",
                # Tracking rewrites links through UniSender's redirector; alerts link straight.
                "track_read": "0",
                "track_links": "0",
            }
        )

    def parse_response(self, answer: HttpAnswer) -> SendResult:
        result = self.checked_result(answer)
        warnings = self.warnings(answer.body)
        if isinstance(result, dict) and result.get("email_id"):  # the shape without checking
            return SendResult(str(result["email_id"]), f"UniSender accepted the email.{warnings}")
        if not isinstance(result, list) or not result or not isinstance(result[0], dict):
            raise self.unexpected(answer, "answered without a per-recipient result")
        mine = [r for r in result if str(r.get("email", "")).lower() == self.destination.lower()]
        item = (mine or result)[0]
        errors = [e for e in item.get("errors") or [] if isinstance(e, dict)]
        if errors:
            code = str(errors[0].get("code") or "unspecified")
            description = str(errors[0].get("message") or code)
            raise self.error(code, description, answer, fallback=_UNKNOWN_RECIPIENT_ERROR)
        if not item.get("id"):
            raise self.unexpected(answer, "answered without an email id")
        return SendResult(str(item["id"]), f"UniSender accepted the email.{warnings}")

    def status_request(self, provider_message_id: str) -> HttpRequest:
        return self.unisender_request({"email_id": provider_message_id}, method="checkEmail")

    def parse_status(self, answer: HttpAnswer) -> DeliveryReport:
        result = self.checked_result(answer)
        statuses = result.get("statuses") if isinstance(result, dict) else None
        status = ""
        if isinstance(statuses, list) and statuses and isinstance(statuses[0], dict):
            status = str(statuses[0].get("status") or "")
        elif isinstance(result, dict):  # the single-id shape kept for backward compatibility
            status = str(result.get("status") or "")
        return self.report(status, "email")
