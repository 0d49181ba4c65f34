"""System checks (`manage.py check`, run at every start): settings that would only fail later,
at the first refresh or the first alert, fail now with the setting's name and the fix."""

from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

PROVIDER_URL_SETTINGS = (
    "TWILIO_API_URL",
    "MESSAGEBIRD_API_URL",
    "UNISENDER_API_URL",
    "MANDRILL_API_URL",
    "TELEGRAM_API_URL",
)


@register()
def check_encryption_keys(**kwargs: Any) -> list:
    errors = []
    for position, key in enumerate(settings.ENCRYPTION_KEYS, start=1):
        try:
            Fernet(key.strip().encode())
        except ValueError:
            errors.append(
                Error(
                    f"ENCRYPTION_KEYS: key {position} is not a Fernet key.",
                    hint="Make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'",
                    id="b24keeper.E001",
                )
            )
    return errors


@register()
def check_stored_secrets(**kwargs: Any) -> list:
    from encryption.probe import unreadable_tables

    return [
        Error(
            f"Stored secrets of {label} cannot be decrypted with any key in ENCRYPTION_KEYS.",
            hint="Put the key they were written with back into ENCRYPTION_KEYS (after the "
            "newest one); see the README's key rotation drill.",
            id="b24keeper.E004",
        )
        for label in unreadable_tables()
    ]


@register()
def check_auth_servers(**kwargs: Any) -> list:
    from portals.bitrix import authservers

    problems = [
        Error(
            f"BITRIX_AUTH_SERVERS: “{ascii(entry)[1:-1]}” is not an origin such as "
            "https://oauth.bitrix.info.",
            hint="List origins only: scheme://host[:port], comma-separated, in plain ASCII "
            "(an internationalized host in its xn-- form); see the README, Where secrets may go.",
            id="b24keeper.E003",
        )
        for entry in settings.BITRIX_AUTH_SERVERS
        if authservers.parse_origin(entry, allow_path=False) is None
    ]
    if not authservers.is_allowed(settings.BITRIX_OAUTH_SERVER):
        problems.append(
            Error(
                f"BITRIX_OAUTH_SERVER ({settings.BITRIX_OAUTH_SERVER}) is not one of "
                "BITRIX_AUTH_SERVERS, so no portal could be connected.",
                hint="Use one of BITRIX_AUTH_SERVERS, or add it there if it is Bitrix24's "
                "(http:// also needs BITRIX_ALLOW_HTTP).",
                id="b24keeper.E005",
            )
        )
    return problems


@register()
def check_external_urls(**kwargs: Any) -> list:
    problems: list[CheckMessage] = []
    names = ("BITRIX_OAUTH_SERVER", *PROVIDER_URL_SETTINGS)
    for name in names:
        parts = urlsplit(getattr(settings, name))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(
                Error(
                    f"{name} is not an http(s) URL.",
                    hint="Use e.g. https://host",
                    id="b24keeper.E002",
                )
            )
        elif parts.scheme == "http" and not (settings.DEBUG or settings.BITRIX_ALLOW_HTTP):
            problems.append(
                Warning(
                    f"{name} uses plain http://: credentials would cross the network unencrypted.",
                    hint="Use https:// outside tests and local fakes.",
                    id="b24keeper.W001",
                )
            )
    if settings.BITRIX_ALLOW_HTTP and not settings.DEBUG:
        problems.append(
            Warning(
                "BITRIX_ALLOW_HTTP is on with DEBUG off: tokens may travel over plain http://.",
                hint="Turn it off in production; it is meant for tests and local fakes.",
                id="b24keeper.W002",
            )
        )
    return problems


@register()
def check_admin_email(**kwargs: Any) -> list:
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


@register(Tags.security, deploy=True)
def check_trusted_proxies(**kwargs: Any) -> list:
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
