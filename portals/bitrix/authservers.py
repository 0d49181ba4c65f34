"""Where secrets may go: only to Bitrix24's authorization servers (BITRIX_AUTH_SERVERS), and
where a request goes at all: one strict parser, `parse_origin()`.

The client_secret and refresh tokens are sent to an authorization server, and which one is
learned from data (the portal's stored server, a token answer's `server_endpoint`, a callback's
`server_domain`; docs/bitrix24-protocol.md §0). Each of those is checked here before anything
is sent or stored, so an edited field or a forged answer cannot send a secret elsewhere.

The check and the HTTP client must never read one URL two ways (urllib.parse and urllib3
disagree on a backslash: `https://evil.example\\@oauth.bitrix.info/` is oauth.bitrix.info to
one and evil.example to the other). So `parse_origin()` accepts only URLs every parser reads
alike, and callers send to the origin it rebuilds from scheme, host and port plus a fixed path,
never to the string they were given. It refuses:

- anything but printable ASCII letters, digits and `-._~:/[]`: so no userinfo (`@`), backslash,
  whitespace, control character, `%`-escape, query (`?`), fragment (`#`) or non-ASCII
  character. An internationalized host must be written in its `xn--` form, which every parser
  passes through untouched; a Unicode host is refused rather than IDNA-mapped, because
  look-alike characters (`。` for `.`) map differently in different libraries;
- a scheme other than http or https, or no `//` after it;
- a host that is not dot-separated letter-digit-hyphen labels: no empty label, no leading or
  trailing hyphen, at most 253 characters. One trailing dot is dropped (`bitrix.info.` is
  `bitrix.info`). A host whose last label is a number must be a plain dotted-quad IPv4 address
  (`127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1` are refused: resolvers read them as
  addresses in ways other parsers do not);
- an IPv6 literal that is not one (`[...]` is read by `ipaddress` and rebuilt in its short
  form; zone ids need `%`, so they are refused);
- an empty, zero, leading-zero or out-of-range port (a port equal to the scheme's default is
  dropped from the rebuilt origin).

Matching: an origin is allowed when scheme, host and port all equal one of
BITRIX_AUTH_SERVERS (http:// only with BITRIX_ALLOW_HTTP); a bare host (the callback's
`server_domain`) matches an allowed origin with that host, a bare `host:port` one with that host
and port (local fakes live on a port).
"""

import ipaddress
import re
from dataclasses import dataclass

from django.conf import settings

from portals.bitrix.errors import ConfigurationError

DEFAULT_PORTS = {"https": 443, "http": 80}
# The whole URL, then its parts. fullmatch() everywhere: `$` would let a final newline through.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/\[\]]+")
_URL = re.compile(r"(?P<scheme>[A-Za-z]+)://(?P<authority>[^/]*)(?P<path>/[^\[\]]*)?")
_AUTHORITY = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+))(?::(?P<port>[0-9]+))?"
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
_NUMERIC = re.compile(r"0x[0-9a-f]*|[0-9]+")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
MAX_HOST_LENGTH = 253


@dataclass(frozen=True)
class Origin:
    """Where a connection goes. `host` is lower-case, without a trailing dot; an IPv6 address
    is kept without brackets (as urllib3 reports it)."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """`host[:port]`, the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """`scheme://host[:port]`, rebuilt from the three parts only."""
        return f"{self.scheme}://{self.netloc}"


def parse_origin(url: str, *, allow_path: bool = True) -> Origin | None:
    """The origin of an http(s) URL that every URL parser reads alike, or None (see the module
    docstring for what is refused). allow_path=False: nothing but "/" may follow the origin."""
    if not isinstance(url, str) or not _URL_CHARACTERS.fullmatch(url):
        return None
    found = _URL.fullmatch(url)
    if found is None:
        return None
    scheme, path = found["scheme"].lower(), found["path"] or ""
    if scheme not in DEFAULT_PORTS or (not allow_path and path not in ("", "/")):
        return None
    authority = parse_authority(found["authority"])
    if authority is None:
        return None
    host, port = authority
    return Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port)


def parse_authority(authority: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a bare `host[:port]`, by the rules of parse_origin(), or None."""
    if not isinstance(authority, str) or not _URL_CHARACTERS.fullmatch(authority):
        return None
    found = _AUTHORITY.fullmatch(authority)
    if found is None:
        return None
    host = _ipv6(found["ipv6"]) if found["ipv6"] is not None else _hostname(found["host"])
    port = found["port"]
    if host is None or (port is not None and not _valid_port(port)):
        return None
    return host, int(port) if port is not None else None


def _ipv6(text: str) -> str | None:
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        return None


def _hostname(text: str) -> str | None:
    host = text.lower()
    host = host[:-1] if host.endswith(".") else host
    labels = host.split(".")
    if len(host) > MAX_HOST_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if _NUMERIC.fullmatch(labels[-1]):  # an address: only the plain dotted-quad form
        try:
            return host if str(ipaddress.IPv4Address(host)) == host else None
        except ValueError:
            return None
    return host


def _valid_port(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and int(text) <= 65535


def _scheme_permitted(scheme: str) -> bool:
    return scheme == "https" or settings.BITRIX_ALLOW_HTTP


def allowed_origins() -> list[Origin]:
    """BITRIX_AUTH_SERVERS, parsed (an entry that is not a plain origin counts for nothing and
    is reported by the system check b24keeper.E003)."""
    parsed = (parse_origin(entry, allow_path=False) for entry in settings.BITRIX_AUTH_SERVERS)
    return [origin for origin in parsed if origin is not None]


def allowed_origin(url_or_host: str) -> Origin | None:
    """The allowed origin `url_or_host` names (a URL, or a bare `host[:port]`), or None."""
    value = url_or_host if isinstance(url_or_host, str) else ""
    if "://" not in value:
        return _for_authority(value)
    found = parse_origin(value)
    if found is None or not _scheme_permitted(found.scheme):
        return None
    return found if found in allowed_origins() else None


def _for_authority(server_domain: str) -> Origin | None:
    parsed = parse_authority(server_domain)
    if parsed is None:
        return None
    host, port = parsed
    for origin in allowed_origins():
        if origin.host == host and port in (None, origin.port) and _scheme_permitted(origin.scheme):
            return origin
    return None


def is_allowed(url_or_host: str) -> bool:
    """True when `url_or_host` names one of BITRIX_AUTH_SERVERS (a bare host: by host only)."""
    return allowed_origin(url_or_host) is not None


def for_host(server_domain: str) -> str | None:
    """The base URL of the allowed server named by a bare `host` or `host:port` (the OAuth
    redirect's `server_domain`, docs/bitrix24-protocol.md §1), or None."""
    origin = _for_authority(server_domain)
    return origin.url if origin else None


def base_url(url: str) -> str:
    """'https://oauth.bitrix.info/rest/' -> 'https://oauth.bitrix.info' (port kept if not the
    default), rebuilt by parse_origin(); "" for anything it refuses."""
    origin = parse_origin(url)
    return origin.url if origin else ""


def shown(value: str) -> str:
    """A value from data, safe to put in a message or log line: the rebuilt origin when it
    parses, else the raw text escaped (no control character survives) and shortened."""
    origin = parse_origin(value)
    return origin.url if origin else ascii(str(value)[:100])[1:-1]


def require(url: str, what: str) -> str:
    """`url`'s origin (rebuilt) if it is an allowed authorization server, else
    ConfigurationError."""
    origin = allowed_origin(url)
    if origin is not None:
        return origin.url
    allowed = ", ".join(settings.BITRIX_AUTH_SERVERS) or "(none)"
    raise ConfigurationError(
        f"{what} “{shown(url)}” is not one of BITRIX_AUTH_SERVERS ({allowed}); "
        "b24keeper sends secrets only there. Correct it, or add the server to "
        "BITRIX_AUTH_SERVERS if it really is Bitrix24's (http:// also needs BITRIX_ALLOW_HTTP).",
        setting="BITRIX_AUTH_SERVERS",
    )
