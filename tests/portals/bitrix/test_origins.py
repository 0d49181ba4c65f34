"""One parser decides where a request goes (portals.bitrix.authservers.parse_origin): for every URL
the checks accept, the host and port that requests itself would connect to are the allowed origin's;
anything two parsers could read differently is refused.

The hostile URLs come from a deterministic generator (a fixed seed): allowed origins and attacker
hosts glued with backslashes, "@", percent-escapes, control characters, look-alike Unicode,
IPv6 literals, odd ports, trailing dots, queries and fragments.
"""

import ipaddress
import random

import pytest
import requests
from django.core.checks import run_checks
from requests.adapters import HTTPAdapter

from portals.bitrix import authservers
from portals.bitrix.errors import ConfigurationError
from portals.bitrix.oauth import BitrixOAuthClient
from portals.bitrix.transport import RestError
from portals.models import Portal, Token
from portals.rest import credential_of

ALLOWED = ["https://oauth.bitrix.info", "https://oauth.bitrix24.tech", "http://127.0.0.1:8081"]
GOOD_HOSTS = ["oauth.bitrix.info", "oauth.bitrix24.tech", "127.0.0.1:8081"]
EVIL_HOSTS = [
    "evil.example",
    "127.0.0.2",
    "169.254.169.254",
    "[::1]",
    "localhost",
    "oauth.bitrix.info.evil.example",
    "evil.example:443",
    "2130706433",
    "0x7f.0.0.1",
]
SEPARATORS = [
    "\\", "\\\\", "@", "\\@", ":@", "%2f", "%2F", "%5c", "%5C", "%40", "%2540", "%00", "%0a",
    "\t", "\n", "\r", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", " ", "#", "?",
    ";", ",", "/", "//", ":", "&", "\uff0f", "\uff20", "\u2215", "\ufe6b", "\u3002", "\uff0e",
    ".", "..", "%2e",
]  # fmt: skip
LOOKALIKES = [
    "OAUTH.BITRIX.INFO",
    "oauth.bitrix.info.",
    "oauth.bitrix.info..",
    ".oauth.bitrix.info",
    "\u043eauth.bitrix.info",  # a Cyrillic "о"
    "oauth.bitrix.\u0131nfo",  # a dotless "ı"
    "oauth\u3002bitrix.info",  # an ideographic full stop, which IDNA maps to "."
    "\uff4fauth.bitrix.info",  # a full-width "ｏ"
    "xn--auth-6jc.bitrix.info",
    "oauth.bitrix.info\u200b",  # a zero-width space
    "oauth_bitrix.info",
    "-oauth.bitrix.info",
    "[::ffff:127.0.0.1]:8081",
    "[0:0:0:0:0:ffff:7f00:1]:8081",
    "127.000.000.001:8081",
    "127.1:8081",
    "0177.0.0.1:8081",
]
PORTS = [
    "", ":443", ":80", ":8081", ":0", ":65536", ":", ":0443", ":+443", ": 443", ":443 ",
    ":\uff18", ":-1", ":99999999999", ":0x1bb", "::443", ":443:443",
]  # fmt: skip
SCHEMES = [
    "https://", "HTTPS://", "hTtPs://", "http://", "https:/", "https:\\\\", "https:\\/", "//",
    "https:///", " https://", "\thttps://", "https://\\", "ftp://", "https:", "https//", "",
    "https:\\\\\\\\", "https:/\\",
]  # fmt: skip
SUFFIXES = [
    "", "/", "/rest/", "/rest/app.info", "?x=1", "#frag", "/rest/?a=b", "/#", "\\rest",
    "/rest\\..\\", "/%2e%2e/", " ", "\n", "/rest/@evil.example", ";x", "/rest/#@evil.example",
    "\x00", "%00",
]  # fmt: skip
# The issue's own example, and the shapes that broke URL parsers before.
KNOWN_ATTACKS = [
    "https://evil.example\\@oauth.bitrix.info/rest/",
    "https://evil.example\\\\@oauth.bitrix.info/rest/",
    "https://evil.example%5c@oauth.bitrix.info/rest/",
    "https://evil.example%2f@oauth.bitrix.info/rest/",
    "https://evil.example%40oauth.bitrix.info/rest/",
    "https://oauth.bitrix.info@evil.example/rest/",
    "https://oauth.bitrix.info:443@evil.example/rest/",
    "https://evil.example#@oauth.bitrix.info/rest/",
    "https://evil.example?@oauth.bitrix.info/rest/",
    "https://evil.example\t@oauth.bitrix.info/rest/",
    "https://evil.example\n@oauth.bitrix.info/rest/",
    "https://evil.example\x00@oauth.bitrix.info/rest/",
    "https://evil.example @oauth.bitrix.info/rest/",
    "https:\\\\evil.example\\@oauth.bitrix.info/rest/",
    "https:/evil.example\\@oauth.bitrix.info/rest/",
    "//evil.example\\@oauth.bitrix.info/rest/",
    "https://oauth.bitrix.info\\.evil.example/rest/",
    "https://oauth\u3002bitrix.info/rest/",
    "https://\u043eauth.bitrix.info/rest/",
    "https://oauth.bitrix.info:0/rest/",
    "https://oauth.bitrix.info:65536/rest/",
    "https://oauth.bitrix.info:/rest/",
    "https://oauth.bitrix.info/rest/?x=1",
    "https://oauth.bitrix.info/rest/#x",
    "https://oauth.bitrix.info\n",
    " https://oauth.bitrix.info",
    "evil.example\\@oauth.bitrix.info",
    "oauth.bitrix.info@evil.example",
]

_ADAPTER = HTTPAdapter()


def connection_of(url: str) -> tuple[str, int]:
    """The host and port requests would open a connection to for `url` (its own code path:
    prepare the request, then ask the adapter for the connection pool)."""
    prepared = requests.Request("POST", url).prepare()
    pool = _ADAPTER.get_connection_with_tls_context(prepared, verify=True)
    return str(pool.host), int(pool.port)


def _same_host(host: str) -> str:
    """requests keeps a trailing dot and an IPv6 literal as written; compare them canonically."""
    host = host.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def hostile_urls(seed: int = 14, combined: int = 4000) -> list[str]:
    """A few thousand hostile variants of the allowed origins, always the same ones."""
    rng = random.Random(seed)
    urls: set[str] = set(KNOWN_ATTACKS)
    hosts = GOOD_HOSTS + LOOKALIKES
    # Every host and port with well-formed schemes and tails: the accepted ones are here.
    for scheme in ("https://", "HTTPS://", "http://", "hTtPs://"):
        for host in hosts:
            for port in PORTS:
                for tail in ("", "/", "/rest/", "/rest/app.info", "?x=1", "#f"):
                    urls.add(scheme + host + port + tail)
    combined += len(urls)
    while len(urls) < combined:
        good, evil = rng.choice(hosts), rng.choice(EVIL_HOSTS)
        sep = rng.choice(SEPARATORS)
        authority = rng.choice(
            [good, f"{evil}{sep}{good}", f"{good}{sep}{evil}", f"{evil}{sep}@{good}", good + sep]
        )
        urls.add(rng.choice(SCHEMES) + authority + rng.choice(PORTS) + rng.choice(SUFFIXES))
    # Every hostile character at every place of each allowed origin's REST root.
    for origin in ALLOWED:
        base = origin + "/rest/"
        for i in range(len(base) + 1):
            for sep in ("\\", "@", "%", "\t", "\n", "\x00", "\x1b", " ", "\u3002", "#", "?"):
                urls.add(base[:i] + sep + base[i:])
                urls.add(base[:i] + sep + base[i + 1 :])
    return sorted(urls)


@pytest.fixture
def allow_list(settings):
    settings.BITRIX_AUTH_SERVERS = ALLOWED
    settings.BITRIX_ALLOW_HTTP = True
    return {connection_of(origin + "/") for origin in ALLOWED}


def test_every_accepted_url_connects_to_an_allowed_origin(allow_list):
    accepted = 0
    for url in hostile_urls():
        if not authservers.is_allowed(url):
            continue
        accepted += 1
        base = authservers.for_host(url) if "://" not in url else authservers.require(url, "x")
        assert base is not None
        for path in ("/oauth/token/", "/rest/app.info"):
            assert connection_of(base + path) in allow_list, (url, base)
        if "://" in url:  # the raw string, read by requests, names the same place
            host, port = connection_of(url)
            assert (_same_host(host), port) in allow_list, url
            assert BitrixOAuthClient(server=url).server == base
    assert accepted > 50  # the generator also produced well-formed variants


def test_the_known_attack_strings_are_refused(allow_list):
    for url in KNOWN_ATTACKS:
        assert not authservers.is_allowed(url), url
        assert authservers.for_host(url) is None, url
        with pytest.raises(ConfigurationError):
            authservers.require(url, "The authorization server")
        assert "evil" not in authservers.base_url(url), url


def test_a_refused_value_is_shown_escaped_in_the_error(allow_list):
    with pytest.raises(ConfigurationError) as raised:
        authservers.require("https://evil.example\n@oauth.bitrix.info/", "The server")
    assert "\n" not in str(raised.value) and "\\n" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://OAUTH.Bitrix.Info./rest/", "https://oauth.bitrix.info"),
        ("HTTPS://oauth.bitrix.info:443", "https://oauth.bitrix.info"),
        ("http://127.0.0.1:8081/rest/", "http://127.0.0.1:8081"),
        ("http://[0:0::1]:8081/", "http://[::1]:8081"),
        ("https://xn--e1afmkfd.xn--p1ai/rest/", "https://xn--e1afmkfd.xn--p1ai"),
    ],
)
def test_an_origin_is_rebuilt_from_scheme_host_and_port(url, expected):
    origin = authservers.parse_origin(url)
    assert origin is not None and origin.url == expected
    assert authservers.base_url(url) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    "entry",
    ["https://oauth.bitrix.info/rest/", "https://oauth.bitrix.info\\@x", "oauth.bitrix.info"],
)
def test_the_system_check_refuses_an_entry_that_is_not_a_plain_origin(settings, entry):
    settings.BITRIX_AUTH_SERVERS = [entry]
    assert "b24keeper.E003" in {m.id for m in run_checks()}


def test_every_accepted_rest_endpoint_is_where_requests_would_go(settings):
    """A token's client_endpoint (the access token goes there): no allow-list for portal hosts,
    but the same strict parser, and the URL rebuilt as scheme://host[:port]/rest/."""
    settings.BITRIX_ALLOW_HTTP = True
    portal = Portal(domain="acme.bitrix24.com")
    accepted = 0
    for url in hostile_urls(seed=15, combined=2500):
        try:
            root = credential_of(Token(client_endpoint=url, portal=portal)).root
        except RestError as err:
            assert err.code == "invalid_endpoint" and err.permanent
            assert "\n" not in str(err) and "\x00" not in str(err)
            continue
        accepted += 1
        assert root.endswith("/rest/") and root.count("/") == 4, (url, root)
        host, port = connection_of(url)
        assert connection_of(root + "user.current") == (_same_host(host), port), url
    assert accepted > 50


@pytest.mark.parametrize("url", KNOWN_ATTACKS)
def test_a_hostile_client_endpoint_is_an_invalid_endpoint(settings, url):
    settings.BITRIX_ALLOW_HTTP = True
    token = Token(client_endpoint=url, portal=Portal(domain="acme.bitrix24.com"))
    with pytest.raises(RestError) as raised:
        credential_of(token)
    assert raised.value.code == "invalid_endpoint"
