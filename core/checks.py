"""The system checks of the web edge (`manage.py check --deploy`): who the client is behind a
TLS proxy. Registered in CoreConfig.ready()."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


def register_checks() -> None:
    register(check_trusted_proxies, Tags.security, deploy=True)


def check_trusted_proxies(**kwargs: Any) -> list[CheckMessage]:
    """Behind a TLS proxy with no proxy trusted, every request seems to come from the proxy:
    the login throttle then counts everyone's failures together."""
    if not settings.HTTPS or settings.TRUSTED_PROXY_COUNT > 0:
        return []
    return [
        Warning(
            "HTTPS is on, so a proxy stands in front of b24keeper, but TRUSTED_PROXY_COUNT is 0: "
            "every request seems to come from the proxy's address, and one person's failed "
            "logins lock that username out for everyone.",
            hint="Set TRUSTED_PROXY_COUNT to the number of proxies of yours in front of the "
            "service (1 for the documented nginx, which appends to X-Forwarded-For).",
            id="b24keeper.W004",
        )
    ]
