"""Notification provider backends: one small module per provider on one shared base.

    backend = get_backend("telegram", {"bot_token": "..."}, "987654321")
    result = backend.send(Message(subject=..., text=..., sms_text=...))

`send()` returns a SendResult or raises TransientDeliveryError (retry later) or
PermanentDeliveryError (a person must act); a broken channel configuration raises
ConfigurationError already at construction. To add a provider, see CONTRIBUTING.md.
"""

from collections.abc import Mapping

from django.views.decorators.debug import sensitive_variables

from .base import (
    DELIVERED,
    PENDING,
    UNDELIVERED,
    Backend,
    CredentialField,
    DeliveryReport,
    Message,
    SendResult,
    gsm7_safe,
)
from .errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from .mandrill import MandrillBackend
from .messagebird import MessageBirdBackend
from .telegram import TelegramBackend
from .twilio import TwilioBackend
from .unisender_email import UniSenderEmailBackend
from .unisender_sms import UniSenderSmsBackend

BACKENDS: dict[str, type[Backend]] = {
    backend.kind: backend
    for backend in (
        TwilioBackend,
        MessageBirdBackend,
        UniSenderSmsBackend,
        MandrillBackend,
        UniSenderEmailBackend,
        TelegramBackend,
    )
}


@sensitive_variables()
def get_backend(kind: str, credentials: Mapping[str, str], destination: str) -> Backend:
    """A ready backend for one channel; ConfigurationError if anything it needs is missing."""
    try:
        backend_class = BACKENDS[kind]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            f"There is no notification backend called “{kind}”; known kinds: {known}."
        ) from None
    return backend_class(credentials, destination)


__all__ = [
    "BACKENDS",
    "DELIVERED",
    "PENDING",
    "UNDELIVERED",
    "Backend",
    "ConfigurationError",
    "CredentialField",
    "DeliveryError",
    "DeliveryReport",
    "Message",
    "PermanentDeliveryError",
    "SendResult",
    "TransientDeliveryError",
    "get_backend",
    "gsm7_safe",
]
