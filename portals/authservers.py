"""Where secrets may go: only to Bitrix24's authorization servers (BITRIX_AUTH_SERVERS).

The client_secret and refresh tokens are sent to an authorization server, and which one is
learned from data (the portal's stored server, a token answer's `server_endpoint`, a callback's
`server_domain`; docs/bitrix24-protocol.md §0). Each of those is checked here before anything
is sent or stored, so an edited field or a forged answer cannot send a secret elsewhere.
An origin matches when scheme, host and port all match; a bare host (the callback's
`server_domain`) matches an allowed origin with that host, and a bare `host:port` one with that
host and port (local fakes live on a port).
"""

from urllib.parse import urlsplit

from django.conf import settings

from portals.errors import ConfigurationError

DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> tuple[str, str, int] | None:
    """('https', 'oauth.bitrix.info', 443) for 'https://oauth.bitrix.info/rest/', or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a malformed port or IPv6 literal
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname.lower().rstrip("."), port


def allowed_origins() -> list[tuple[str, str, int]]:
    return [o for o in map(origin, settings.BITRIX_AUTH_SERVERS) if o is not None]


def is_allowed(url_or_host: str) -> bool:
    """True when `url_or_host` names one of BITRIX_AUTH_SERVERS (a bare host: by host only)."""
    value = (url_or_host or "").strip()
    if not value:
        return False
    if "://" not in value:
        return for_host(value) is not None
    found = origin(value)
    if found is None:
        return False
    if found[0] == "http" and not settings.BITRIX_ALLOW_HTTP:
        return False
    return found in allowed_origins()


def for_host(server_domain: str) -> str | None:
    """The base URL of the allowed server named by a bare `host` or `host:port` (the OAuth
    redirect's `server_domain`, docs/bitrix24-protocol.md §1), or None."""
    host, _, port = (server_domain or "").strip().lower().split("/")[0].partition(":")
    host = host.rstrip(".")
    for scheme, allowed_host, allowed_port in allowed_origins():
        if allowed_host != host or (port and str(allowed_port) != port):
            continue
        if scheme == "http" and not settings.BITRIX_ALLOW_HTTP:
            continue
        default = DEFAULT_PORTS[scheme] == allowed_port
        return f"{scheme}://{host}" + ("" if default else f":{allowed_port}")
    return None


def base_url(url: str) -> str:
    """'https://oauth.bitrix.info/rest/' -> 'https://oauth.bitrix.info' (port kept if given)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def require(url: str, what: str) -> str:
    """`url`'s base if it is an allowed authorization server, else ConfigurationError."""
    if is_allowed(url):
        return base_url(url)
    allowed = ", ".join(settings.BITRIX_AUTH_SERVERS) or "(none)"
    raise ConfigurationError(
        f"{what} “{base_url(url) or url}” is not one of BITRIX_AUTH_SERVERS ({allowed}); "
        "b24keeper sends secrets only there. Correct it, or add the server to "
        "BITRIX_AUTH_SERVERS if it really is Bitrix24's (http:// also needs BITRIX_ALLOW_HTTP).",
        setting="BITRIX_AUTH_SERVERS",
    )
