"""One REST request over HTTP (docs/bitrix24-protocol.md §4.3, §5.1, §5.2): POST with a JSON
body on the process's pooled session (core.http), the answer turned into its envelope or a
RestError, and the check that makes a redirect safe to follow. Plain: a `Credential` in, no
model. Used by the REST client (portals.bitrix.rest) and install proofs (portals.connect).

The access token travels in the JSON body (`auth`), never in a URL, so no access log, proxy
log or urllib3 debug line can hold it; exceptions from requests are never chained (their text
holds the URL). Redirects are never followed by requests: a renamed portal answers 302, and
the token goes to the new host only once `confirm_move()` has heard from the token's
authorization server that this portal (by member_id) now lives there.
"""

import re
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from core import http
from portals.bitrix import authservers
from portals.bitrix.authservers import Origin
from portals.bitrix.errors import ConfigurationError, OAuthError, Source, classify

Envelope = dict[str, Any]
# A REST method name as Bitrix24 spells them (crm.lead.list, user.admin, batch); anything else
# would change the path the token is sent to.
METHOD = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


class RestError(OAuthError):
    """A REST call failed. `code` and `description` are Bitrix24's words (or b24keeper's, when
    no answer came: `timeout`, `connection_error`, `portal_moved`, ...), `permanent` (the error
    table's verdict) says whether trying again can help, `status` is the HTTP status (None
    without an answer). `str(err)` adds what a person should do. Never holds a secret."""

    def __init__(
        self, code: str, description: str = "", hint: str = "", status: int | None = None
    ) -> None:
        super().__init__(code, description, hint, status, Source.REST)

    @property
    def status(self) -> int | None:
        return self.http_status

    @classmethod
    def from_answer(cls, code: str, description: str, status: int | None) -> "RestError":
        """With the advice of the one Bitrix error table (portals.bitrix.errors, REST)."""
        err = classify(code, description, status, Source.REST)
        return cls(err.code, err.description, err.hint, status)


class Moved(Exception):
    """The portal answered a redirect to `location`."""

    def __init__(self, location: str) -> None:
        super().__init__("redirect")
        self.location = location


def session() -> requests.Session:
    """The process's pooled session for the portals' REST API (keep-alive to every portal)."""
    return http.session("bitrix-rest", pool_size=settings.BITRIX_HTTP_POOL_SIZE)


@sensitive_variables()
def post(root: str, method: str, body: dict[str, Any], read_timeout: float) -> Envelope:
    """POST `body` as JSON to `method` under the REST root `root` (as endpoint() gives it);
    the envelope of a good answer, else RestError (or Moved). The URL is rebuilt here from
    the root's origin, so nothing but a checked host ever receives the token."""
    url = rest_url(root, method)
    timeout = (settings.BITRIX_CONNECT_TIMEOUT, max(1.0, read_timeout))
    try:
        response = session().post(url, json=body, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise RestError("timeout", hint="Bitrix24 did not answer in time.") from None
    except requests.RequestException as err:
        raise RestError(
            "connection_error", hint=f"Could not reach Bitrix24 ({type(err).__name__})."
        ) from None
    if response.is_redirect:
        raise Moved(response.headers.get("Location", ""))
    return parse(response)


def parse(response: requests.Response) -> Envelope:
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if isinstance(body, dict) and "error" in body and (body["error"] or status != 200):
        code = str(body["error"] or f"http_{status}")
        raise RestError.from_answer(code, str(body.get("error_description") or ""), status)
    if status == 200 and isinstance(body, dict) and "result" in body:
        return body
    # No Bitrix error code: judge by the status (5xx and 429 transient, the rest permanent;
    # a deleted portal, for one, answers 403 with an HTML page).
    what = "a page, not JSON" if body is None else "JSON without a result"
    raise RestError.from_answer(f"http_{status}", f"The portal answered with {what}.", status)


def root_of(url: str) -> str:
    """The REST root `scheme://host[:port]/rest/` of a portal URL, rebuilt by the strict parser;
    RestError("invalid_endpoint") for anything it refuses."""
    return _root(_portal_origin(url))


def rest_url(root: str, method: str) -> str:
    """`root` (a REST root) and a method name, rebuilt as `scheme://host[:port]/rest/method`."""
    if not METHOD.fullmatch(method):
        raise RestError(
            "invalid_method",
            f"“{ascii(method[:100])[1:-1]}” is not a REST method name.",
            "Use a Bitrix24 method name such as crm.lead.list.",
        )
    return _root(_portal_origin(root)) + method


def _portal_origin(url: str) -> Origin:
    origin = authservers.parse_origin(url)
    allowed = ("https", "http") if settings.BITRIX_ALLOW_HTTP else ("https",)
    if origin is None or origin.scheme not in allowed:
        raise RestError(
            "invalid_endpoint",
            f"The token's REST address {authservers.shown(url)} is not a plain https address.",
            "Re-connect the portal; http:// portals need BITRIX_ALLOW_HTTP (tests only).",
        )
    return origin


def _root(origin: Origin) -> str:
    return f"{origin.url}/rest/"


@dataclass(frozen=True, repr=False)
class Credential:
    """What one REST request needs from whoever keeps the token (portals.rest binds the token
    service): the access token, where to send it, and the portal's shared rate limit. `handle`
    is the keeper's own (a model row, say); this module never looks at it."""

    access_token: str
    root: str  # the REST root, scheme://host[:port]/rest/, as root_of() rebuilds it
    domain: str  # the portal's address, for messages
    member_id: str
    auth_server: str  # the token's authorization server, for confirming a move
    bucket: str  # the portal's rate-limit bucket (portals.bitrix.ratelimit)
    rate: float
    burst: float
    handle: object = None

    def __repr__(self) -> str:  # the access token stays out of tracebacks
        return f"Credential(domain={self.domain!r}, member_id={self.member_id!r})"


@dataclass(frozen=True)
class PortalMove:
    """The authorization server confirmed: the portal `member_id` now answers at `endpoint`."""

    member_id: str
    endpoint: str  # the new REST root (client_endpoint), rebuilt by the strict parser
    domain: str  # its host[:port], the portal's new address


@sensitive_variables()
def confirm_move(credential: Credential, location: str, read_timeout: float) -> PortalMove:
    """The portal redirected to `location`: the move, once the authorization server's
    app.info (§7) says this portal's member_id lives at that host; RestError
    ("portal_moved") otherwise, with nothing sent to the new host."""
    domain = credential.domain
    target = authservers.parse_origin(location)
    if target is None:  # relative, or an address two URL parsers could read two ways
        shown = authservers.shown(location or "(no address)")
        raise _refused(domain, shown, "it is not a plain absolute http(s) address")
    host = target.netloc
    if host == _portal_origin(credential.root).netloc:
        raise _refused(domain, host, "it does not name another host")
    if not credential.member_id:
        raise _refused(domain, host, "b24keeper does not know this portal's member_id")
    try:
        server = authservers.require(credential.auth_server, "The token's authorization server")
    except ConfigurationError as err:
        raise _refused(domain, host, str(err)) from None
    try:
        body = {"auth": credential.access_token}
        info = post(f"{server}/rest/", "app.info", body, read_timeout)
    except (RestError, Moved) as err:
        failure = getattr(err, "code", "a redirect")
        raise _refused(domain, host, f"app.info failed ({failure})") from None
    install = (info.get("result") or {}).get("install") or {}
    if install.get("member_id") != credential.member_id:
        raise _refused(domain, host, "the authorization server knows no such move of this portal")
    new = authservers.parse_origin(str(install.get("client_endpoint") or ""))
    if new is None or (new.scheme, new.host, new.port) != (target.scheme, target.host, target.port):
        raise _refused(domain, host, "the authorization server names another address")
    return PortalMove(credential.member_id, _root(new), new.netloc)


def _refused(domain: str, host: str, reason: str) -> RestError:
    return RestError(
        "portal_moved",
        f"Portal {domain} redirected to {host}; not followed: {reason}.",
        "Nothing was sent there. If the portal was renamed, re-connect it under its new "
        "address; if not, someone is redirecting its traffic.",
        302,
    )
