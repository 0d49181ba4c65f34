"""Email through Mandrill (Mailchimp Transactional), using django-anymail's Mandrill backend
(providers reference §4 and §8.4).

anymail owns the HTTP here, so this backend overrides `deliver()` instead of building a request:
it opens an explicit anymail connection (the site's EMAIL_BACKEND stays untouched), then maps
anymail's outcome onto the same SendResult / DeliveryError as every other backend. Mandrill's
HTTP status and numeric code have changed over the years, so errors are classified by `name`.
"""

from collections.abc import Mapping
from email.utils import formataddr
from typing import Any

import requests
from anymail.exceptions import AnymailError, AnymailRequestsAPIError
from django.core.mail import EmailMultiAlternatives, get_connection

from .base import (
    DESTINATIONS,
    Backend,
    CredentialField,
    HttpAnswer,
    Message,
    Rule,
    SendResult,
    parse_retry_after,
)
from .errors import ConfigurationError

_RETRY = "This is temporary; the delivery will be retried."
_FIX_ADDRESS = "Choose another address for this channel, or remove it from Mandrill's Rejection "
_FIX_ADDRESS += "Blacklist if the cause is fixed, then re-enable the channel."
_BOUNCED = Rule(True, _FIX_ADDRESS)
_BUG = Rule(True, "This is a bug in b24keeper, please report it.")
_SUCCESS = frozenset({"sent", "queued", "scheduled"})


class MandrillBackend(Backend):
    kind = "mandrill"
    label = "Mandrill"
    destination_kind = "email"
    api_url_setting = "MANDRILL_API_URL"
    credential_fields = (
        CredentialField(
            "api_key",
            "API key",
            secret=True,
            help_text="A Mandrill API key (Mandrill → Settings → SMTP & API Info).",
        ),
        CredentialField(
            "from_email",
            "Sender address",
            secret=False,
            help_text="On a sending domain verified (SPF and DKIM) in Mandrill.",
        ),
        CredentialField(
            "from_name", "Sender name", secret=False, help_text="Optional.", required=False
        ),
    )
    errors = {
        # Whole-call errors, by the JSON `name`.
        "Invalid_Key": Rule(True, "Check the Mandrill API key, then re-enable this channel."),
        "ValidationError": Rule(
            True,
            "Mandrill refused the message as malformed; check the "
            "sender address, or report a bug in b24keeper.",
        ),
        "PaymentRequired": Rule(
            True, "The Mandrill account needs payment; settle it, then re-enable this channel."
        ),
        "Unknown_Subaccount": Rule(True, "Check the Mandrill account settings."),
        "Unknown_Template": Rule(True, "Check the Mandrill account settings."),
        "GeneralError": Rule(False, "Mandrill had an internal error. " + _RETRY),
        "ServiceUnavailable": Rule(False, "Mandrill is unavailable. " + _RETRY),
        "RequestLimitExceeded": Rule(False, "Mandrill is rate-limiting us. " + _RETRY),
        # Per-recipient outcomes inside an HTTP 200, by reject_reason.
        "invalid": Rule(True, "Mandrill finds the address invalid; correct it on this channel."),
        "hard-bounce": _BOUNCED,
        "soft-bounce": Rule(
            True,
            "The address soft-bounced recently, so Mandrill holds mail to it for a while. "
            + _FIX_ADDRESS,
        ),
        "spam": _BOUNCED,
        "unsub": Rule(True, "The recipient unsubscribed. " + _FIX_ADDRESS),
        "custom": _BOUNCED,
        "rule": _BOUNCED,
        "invalid-sender": Rule(True, "Check the sender address, then re-enable this channel."),
        "unsigned": Rule(
            True,
            "The sender's domain is not verified (SPF/DKIM) in Mandrill; verify it, then "
            "re-enable this channel.",
        ),
        "test-mode-limit": Rule(True, "Use a live Mandrill API key, not a test key."),
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

    def _email(self, message: Message) -> EmailMultiAlternatives:
        connection = get_connection(
            "anymail.backends.mandrill.EmailBackend",
            api_key=self.credentials["api_key"],
            api_url=self.api_url,
            timeout=self.timeout,
            # We read the recipient's status ourselves, to classify a rejection.
            ignore_recipient_status=True,
        )
        from_name = self.credentials["from_name"]
        from_email = self.credentials["from_email"]
        email = EmailMultiAlternatives(
            subject=" ".join(message.subject.split()),  # a header: no line breaks
            body=message.text,
            from_email=formataddr((from_name, from_email)) if from_name else from_email,
            to=[self.destination],
            connection=connection,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        # Tracking rewrites links through Mandrill's redirector; alerts link straight.
        email.track_opens = False  # type: ignore[attr-defined]
        email.track_clicks = False  # type: ignore[attr-defined]
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

    def _recipient_result(self, email: EmailMultiAlternatives) -> SendResult:
        status = email.anymail_status  # type: ignore[attr-defined]
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
        detail = f"Mandrill {recipient.status} the email"
        if item.get("queued_reason"):  # e.g. hourly-quota-exhausted: it goes out later
            detail += f" ({item['queued_reason']})"
        return SendResult(provider_message_id=recipient.message_id or "", detail=detail + ".")

    def _raw_item(self, response: requests.Response | None) -> dict[str, Any]:
        """Our recipient's object from Mandrill's raw answer."""
        try:
            items = response.json() if response is not None else []
        except ValueError:
            items = []
        items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        mine = [i for i in items if str(i.get("email", "")).lower() == self.destination.lower()]
        return (mine or items or [{}])[0]
