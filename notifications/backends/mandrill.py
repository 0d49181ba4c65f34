"""Email through Mandrill (Mailchimp Transactional), using django-anymail's Mandrill backend
(docs/notification-providers.md §4 and §8.4).

anymail owns the HTTP here, so this backend overrides `deliver()` instead of building a request:
it opens an explicit anymail connection (the site's EMAIL_BACKEND stays untouched), then maps
anymail's outcome onto the same SendResult / DeliveryError as every other backend. Mandrill's
HTTP status and numeric code have changed over the years, so errors are classified by `name`.

A 200 is not always a success: a recipient can be rejected, or "queued" for a reason that means
the account cannot send (`queued_reason`). What became of an email is read later from
messages/info.json (`state`: sent, bounced, soft-bounced, rejected, …), our own JSON POST.
"""

from collections.abc import Mapping
from typing import Any

import requests
from anymail.exceptions import AnymailError, AnymailRequestsAPIError
from anymail.message import AnymailMessage
from anymail.utils import EmailAddress
from django.core.mail import get_connection
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from .base import (
    DELIVERED,
    DESTINATIONS,
    PENDING,
    Backend,
    CredentialField,
    DeliveryReport,
    HttpAnswer,
    HttpRequest,
    Message,
    Rule,
    SendResult,
    parse_retry_after,
)
from .errors import ConfigurationError

_RETRY = gettext_noop("This is temporary; the delivery will be retried.")
_FIX_ADDRESS = gettext_noop(
    "Choose another address for this channel, or remove it from Mandrill's Rejection "
    "Blacklist if the cause is fixed, then re-enable the channel."
)
_BOUNCED = Rule(True, _FIX_ADDRESS)
_BUG = Rule(True, gettext_noop("This is a bug in b24keeper, please report it."))
_SUCCESS = frozenset({"sent", "queued", "scheduled"})
# A "queued" answer whose queued_reason means the account cannot send now: a person must act.
# A monthly limit resets too, but only weeks later: alerts cannot wait that long.
_QUEUED_BLOCKED = {
    "account-suspended": Rule(
        True,
        gettext_noop(
            "The Mandrill account is suspended; settle it with Mailchimp, then re-enable."
        ),
    ),
    "sending-suspended": Rule(
        True,
        gettext_noop(
            "Mandrill suspended sending for this account; ask Mailchimp support, then re-enable."
        ),
    ),
    "sending-paused": Rule(
        True,
        gettext_noop(
            "Sending is paused in Mandrill's settings; resume it, then re-enable this channel."
        ),
    ),
    "free-trial-sends-exhausted": Rule(
        True,
        gettext_noop(
            "The free trial's emails are used up; upgrade the Mandrill account, then re-enable."
        ),
    ),
    "monthly-limit-reached": Rule(
        True,
        gettext_noop(
            "The account reached its monthly limit; raise it in Mandrill, then re-enable."
        ),
    ),
}
# messages/info.json `state` of an email that did not arrive (docs/notification-providers.md §4).
_NOT_DELIVERED = frozenset({"bounced", "soft-bounced", "rejected", "spam", "unsub"})


class MandrillBackend(Backend):
    kind = "mandrill"
    label = "Mandrill"
    destination_kind = "email"
    api_url_setting = "MANDRILL_API_URL"
    credential_fields = (
        CredentialField(
            "api_key",
            _("API key"),
            secret=True,
            help_text=_("A Mandrill API key (Mandrill → Settings → SMTP & API Info)."),
        ),
        CredentialField(
            "from_email",
            _("Sender address"),
            secret=False,
            help_text=_("On a sending domain verified (SPF and DKIM) in Mandrill."),
        ),
        CredentialField(
            "from_name", _("Sender name"), secret=False, help_text=_("Optional."), required=False
        ),
    )
    errors = {
        # Whole-call errors, by the JSON `name`.
        "Invalid_Key": Rule(
            True, gettext_noop("Check the Mandrill API key, then re-enable this channel.")
        ),
        "ValidationError": Rule(
            True,
            gettext_noop(
                "Mandrill refused the message as malformed; check the "
                "sender address, or report a bug in b24keeper."
            ),
        ),
        "PaymentRequired": Rule(
            True,
            gettext_noop(
                "The Mandrill account needs payment; settle it, then re-enable this channel."
            ),
        ),
        "Unknown_Subaccount": Rule(True, gettext_noop("Check the Mandrill account settings.")),
        "Unknown_Template": Rule(True, gettext_noop("Check the Mandrill account settings.")),
        "GeneralError": Rule(False, gettext_noop("Mandrill had an internal error. ") + _RETRY),
        "ServiceUnavailable": Rule(False, gettext_noop("Mandrill is unavailable. ") + _RETRY),
        "RequestLimitExceeded": Rule(
            False, gettext_noop("Mandrill is rate-limiting us. ") + _RETRY
        ),
        # Per-recipient outcomes inside an HTTP 200, by reject_reason.
        "invalid": Rule(
            True, gettext_noop("Mandrill finds the address invalid; correct it on this channel.")
        ),
        "hard-bounce": _BOUNCED,
        "soft-bounce": Rule(
            True,
            gettext_noop(
                "The address soft-bounced recently, so Mandrill holds mail to it for a while. "
            )
            + _FIX_ADDRESS,
        ),
        "spam": _BOUNCED,
        "unsub": Rule(True, gettext_noop("The recipient unsubscribed. ") + _FIX_ADDRESS),
        "custom": _BOUNCED,
        "rule": _BOUNCED,
        "invalid-sender": Rule(
            True, gettext_noop("Check the sender address, then re-enable this channel.")
        ),
        "unsigned": Rule(
            True,
            gettext_noop(
                "The sender's domain is not verified (SPF/DKIM) in Mandrill; verify it, then "
                "re-enable this channel."
            ),
        ),
        "test-mode-limit": Rule(True, gettext_noop("Use a live Mandrill API key, not a test key.")),
        **_QUEUED_BLOCKED,
    }
    checks_delivery = True
    undelivered = {
        "bounced": _BOUNCED,
        "rejected": _BOUNCED,
        "spam": Rule(
            True, gettext_noop("The recipient marked an alert as spam; ask them to undo it.")
        ),
        "unsub": Rule(True, gettext_noop("The recipient unsubscribed. ") + _FIX_ADDRESS),
        # soft-bounced (a full mailbox, a greylisting server): transient, sent again
    }

    def __init__(self, credentials: Mapping[str, str], destination: str) -> None:
        super().__init__(credentials, destination)
        is_valid, expected = DESTINATIONS["email"]
        if not is_valid(self.credentials["from_email"]):
            raise ConfigurationError(
                f"The Mandrill channel's sender address is not {expected}; correct it in the admin."
            )

    def deliver(self, message: Message) -> SendResult:
        email = self._email(message)
        connection = email.connection
        connection.open()
        # anymail's Mandrill backend posts its JSON without a Content-Type, and Mandrill has
        # answered such requests with "ValidationError: You must specify a key value".
        connection.session.headers["Content-Type"] = "application/json"
        try:
            email.send()
        except AnymailRequestsAPIError as err:
            failure = self._api_failure(err)
        except AnymailError as err:
            failure = self.error(
                type(err).__name__,
                "could not be given the message: anymail refused to build it",
                fallback=_BUG,
                from_provider=False,
            )
        else:
            return self._recipient_result(email)
        finally:
            connection.close()
        # Raised outside the `except` on purpose: the anymail error keeps the payload (which
        # holds the API key) as an attribute; it must not travel with our error.
        raise failure

    def _email(self, message: Message) -> AnymailMessage:
        connection = get_connection(
            "anymail.backends.mandrill.EmailBackend",
            api_key=self.credentials["api_key"],
            api_url=self.api_url,
            timeout=self.timeout,
            # We read the recipient's status ourselves, to classify a rejection.
            ignore_recipient_status=True,
        )
        # anymail parses the From string into from_name and from_email. formataddr() would
        # RFC 2047-encode a non-ASCII name, which anymail passes on, so Mandrill showed the
        # literal "=?utf-8?b?…?="; a quoted plain name arrives as written.
        sender = EmailAddress(self.credentials["from_name"], self.credentials["from_email"])
        # Tracking rewrites links through Mandrill's redirector; alerts link straight.
        email = AnymailMessage(
            subject=" ".join(message.subject.split()),  # a header: no line breaks
            body=message.text,
            from_email=sender.address,
            to=[self.destination],
            connection=connection,
            track_opens=False,
            track_clicks=False,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def _api_failure(self, err: AnymailRequestsAPIError) -> Exception:
        response = err.response
        if response is None:  # anymail's error is also the original requests exception
            return self._transport_failure(err)
        answer = HttpAnswer(
            response.status_code, None, parse_retry_after(response.headers.get("Retry-After"))
        )
        try:
            body = response.json()
        except ValueError:
            return self.unreadable(response, answer.retry_after)
        if not isinstance(body, dict) or not body.get("name"):
            return self.unexpected(answer, f"answered HTTP {answer.status} in an unknown shape")
        return self.error(str(body["name"]), str(body.get("message") or body["name"]), answer)

    def _recipient_result(self, email: AnymailMessage) -> SendResult:
        status = email.anymail_status
        recipients = {address.lower(): r for address, r in status.recipients.items()}
        recipient = recipients.get(self.destination.lower(), next(iter(recipients.values()), None))
        # anymail keeps no reject_reason or queued_reason; those come from the raw answer.
        item = self._raw_item(status.esp_response)
        answer = HttpAnswer(200, item, None)
        if recipient is None:
            raise self.unexpected(answer, "answered without a status for the recipient")
        if recipient.status in ("rejected", "invalid"):
            reason = str(item.get("reject_reason") or recipient.status)
            message = f"{recipient.status} {self.destination}"
            raise self.error(reason, message, answer, from_provider=False)
        if recipient.status not in _SUCCESS:
            raise self.unexpected(answer, f"answered with recipient status {recipient.status!r}")
        queued_reason = str(item.get("queued_reason") or "") if recipient.status == "queued" else ""
        if queued_reason in _QUEUED_BLOCKED:
            raise self.error(queued_reason, f"queued the email: {queued_reason}", answer)
        detail = f"Mandrill {recipient.status} the email"
        delayed = ""
        if queued_reason:  # hourly-quota-exhausted, sending-backlogged: it goes out later
            detail += f" ({queued_reason})"
            delayed = f"Mandrill holds the email back ({queued_reason}); it goes out later."
        return SendResult(recipient.message_id or "", detail + ".", delayed=delayed)

    def status_request(self, provider_message_id: str) -> HttpRequest:
        return HttpRequest(
            url=f"{self.api_url}/messages/info.json",
            json={"key": self.credentials["api_key"], "id": provider_message_id},
        )

    def parse_status(self, answer: HttpAnswer) -> DeliveryReport:
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("status") == "error":
            if body.get("name") == "Unknown_Message":  # not searchable yet, a few seconds in
                return DeliveryReport(PENDING, "Mandrill does not list the email yet.")
            name = str(body.get("name") or f"http_{answer.status}")
            raise self.error(name, str(body.get("message") or name), answer)
        if answer.status != 200 or "state" not in body:
            raise self.unexpected(answer, f"answered HTTP {answer.status} without a state")
        state = str(body["state"])
        if state == "sent":
            return DeliveryReport(DELIVERED, "Mandrill: the email was delivered.")
        if state in _NOT_DELIVERED:
            events = [e for e in body.get("smtp_events") or [] if isinstance(e, dict)]
            reason = str(body.get("bounce_description") or (events and events[-1].get("diag")))
            return self.undelivered_report(state, reason or state, answer)
        return DeliveryReport(PENDING, f"Mandrill: the email is {state}.")  # deferred, queued

    def _raw_item(self, response: requests.Response | None) -> dict[str, Any]:
        """Our recipient's object from Mandrill's raw answer."""
        try:
            items = response.json() if response is not None else []
        except ValueError:
            items = []
        items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        mine = [i for i in items if str(i.get("email", "")).lower() == self.destination.lower()]
        return (mine or items or [{}])[0]
