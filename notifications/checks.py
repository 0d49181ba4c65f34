"""The system checks of notifications: the providers' base URLs, and a half-configured email
to ADMINS (the one warning that no channel is left would go nowhere). Registered in
NotificationsConfig.ready()."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

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
