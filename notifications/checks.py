"""The system checks of notifications: the providers' base URLs, a half-configured email to
ADMINS (the one warning that no channel is left would go nowhere), and NOTIFY_HEARD_WITHIN
longer than the hold. Registered in
NotificationsConfig.ready()."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from portals.checks import url_problems

PROVIDER_URL_SETTINGS = (
    "TWILIO_API_URL",
    "MESSAGEBIRD_API_URL",
    "UNISENDER_API_URL",
    "MANDRILL_API_URL",
    "TELEGRAM_API_URL",
)


def register_checks() -> None:
    register(check_provider_urls)
    register(check_admin_email)
    register(check_heard_within)


def check_provider_urls(**kwargs: Any) -> list[CheckMessage]:
    return [problem for name in PROVIDER_URL_SETTINGS for problem in url_problems(name)]


def check_admin_email(**kwargs: Any) -> list[CheckMessage]:
    """Half-configured admin email: the one warning that no channel is left would go nowhere."""
    if bool(settings.ADMINS) == bool(settings.EMAIL_URL):
        return []
    missing, present = ("EMAIL_URL", "ADMINS") if settings.ADMINS else ("ADMINS", "EMAIL_URL")
    return [
        Warning(
            f"{present} is set but {missing} is not: nobody is emailed when an open incident "
            "reaches no enabled channel.",
            hint=f"Set {missing} too (see .env.example), or clear {present}.",
            id="b24keeper.W003",
        )
    ]


def check_heard_within(**kwargs: Any) -> list[CheckMessage]:
    """An alert waits NOTIFY_HOLD_SECONDS on purpose: the incident must not count as unheard
    while it does."""
    if settings.NOTIFY_HEARD_WITHIN > settings.NOTIFY_HOLD_SECONDS:
        return []
    return [
        Error(
            f"NOTIFY_HEARD_WITHIN ({settings.NOTIFY_HEARD_WITHIN:g} s) must be greater than "
            f"NOTIFY_HOLD_SECONDS ({settings.NOTIFY_HOLD_SECONDS:g} s): every new incident "
            "would count as heard by nobody while its first alert waits.",
            hint="Raise NOTIFY_HEARD_WITHIN (default 300) or lower NOTIFY_HOLD_SECONDS.",
            id="b24keeper.E016",
        )
    ]
