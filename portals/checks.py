"""The system checks of portals (`manage.py check`, and at every worker start): settings that
would only fail at the first refresh fail now, with the setting's name and the fix. Registered
in PortalsConfig.ready(). The encryption checks live here too: without readable secrets no
token can be refreshed (E004 probes every table that holds secrets, notifications' included)."""

from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from encryption.probe import unreadable_tables
from portals.bitrix import authservers


def register_checks() -> None:
    for check in (check_encryption_keys, check_stored_secrets, check_auth_servers, check_oauth_url):
        register(check)
    register(check_oauth_deadline)


def check_oauth_deadline(**kwargs: Any) -> list[CheckMessage]:
    """A call to the authorization server must end before its refresh claim looks dead, or
    another process takes the claim over while the answer still drips in."""
    if settings.BITRIX_OAUTH_DEADLINE < settings.TOKEN_REFRESH_LEASE:
        return []
    return [
        Error(
            f"BITRIX_OAUTH_DEADLINE ({settings.BITRIX_OAUTH_DEADLINE:g} s) must be shorter than "
            f"TOKEN_REFRESH_LEASE ({settings.TOKEN_REFRESH_LEASE} s): a slow answer would "
            "outlive the refresh claim and another process would refresh the same token.",
            hint="Lower BITRIX_OAUTH_DEADLINE (default 30) or raise TOKEN_REFRESH_LEASE.",
            id="b24keeper.E017",
        )
    ]


def check_encryption_keys(**kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
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


def check_stored_secrets(**kwargs: Any) -> list[CheckMessage]:
    return [
        Error(
            f"Stored secrets of {label} cannot be decrypted with any key in ENCRYPTION_KEYS.",
            hint="Put the key they were written with back into ENCRYPTION_KEYS (after the "
            "newest one); see the README's key rotation drill.",
            id="b24keeper.E004",
        )
        for label in unreadable_tables()
    ]


def check_auth_servers(**kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = [
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


def check_oauth_url(**kwargs: Any) -> list[CheckMessage]:
    problems = url_problems("BITRIX_OAUTH_SERVER")
    if settings.BITRIX_ALLOW_HTTP and not settings.DEBUG:
        problems.append(
            Warning(
                "BITRIX_ALLOW_HTTP is on with DEBUG off: tokens may travel over plain http://.",
                hint="Turn it off in production; it is meant for tests and local fakes.",
                id="b24keeper.W002",
            )
        )
    return problems


def url_problems(name: str) -> list[CheckMessage]:
    """E002 when the setting `name` is not an http(s) URL; W001 when it is plain http outside
    DEBUG and BITRIX_ALLOW_HTTP. Shared by notifications' checks for the providers' URLs."""
    parts = urlsplit(getattr(settings, name))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [
            Error(
                f"{name} is not an http(s) URL.", hint="Use e.g. https://host", id="b24keeper.E002"
            )
        ]
    if parts.scheme == "http" and not (settings.DEBUG or settings.BITRIX_ALLOW_HTTP):
        return [
            Warning(
                f"{name} uses plain http://: credentials would cross the network unencrypted.",
                hint="Use https:// outside tests and local fakes.",
                id="b24keeper.W001",
            )
        ]
    return []
