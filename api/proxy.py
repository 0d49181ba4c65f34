"""The REST proxy: an inbound-webhook-shaped address at b24keeper's own host,

    SITE_URL/rest/<token id>/<api key>/<method>[.json]      (GET or POST; form, JSON or query)

so that any Bitrix24 library, given it as its webhook, calls the token's portal without ever
seeing a token. For each request: the key (from the cache, api.keys) must have the `proxy`
scope, the token, and every method called (a batch's commands too) among its patterns; the
token comes from the token service (refreshed first when about to expire); the request waits
its turn in the portal's shared rate limit for at most PROXY_MAX_WAIT seconds; the portal's
answer goes back unchanged (status and body), after one renewal (portals.tokens.renew, bounded
with the token API's) on expired_token/invalid_token, or after following a rename the
authorization server confirmed. Our own errors are in Bitrix24's shape, `{"error": …,
"error_description": …}`, so libraries show them.

The key is in the path: the logs (core.logging, core.gunicorn) and error reports
(core.error_reports) blank it. Who calls: config.urls.
"""

import logging
import math
import time
from collections.abc import Mapping

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from api import keys, proxy_request
from api.keys import KeyInfo
from api.proxy_request import BadRequest, Outgoing
from core.client_ip import forwarded_client_ip
from portals.bitrix import ratelimit, transport
from portals.bitrix.errors import OAuthError
from portals.bitrix.rest import Credential, usable_burst
from portals.bitrix.transport import METHOD, RestError
from portals.models import Token
from portals.rest import TokenKeeper, credential_of
from portals.tokens import RefreshBusy, RenewLimited, TokenError, TokenNotFound, TokenUnavailable
from portals.tokens.access import fresh_token
from portals.tokens.load import load_access
from portals.tokens.renew import digest, renew_row

log = logging.getLogger(__name__)
MIN_TTL = 60  # as the REST client: a token about to expire is refreshed before the call
MAX_BODY = 10 * 1024 * 1024
RENEW_ON = ("expired_token", "invalid_token")


class ProxyError(Exception):
    """One of our own answers, in Bitrix24's error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        description: str,
        headers: Mapping[str, object] | None = None,
        *,
        logged: bool = False,
    ) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description
        self.headers = {k: str(v) for k, v in (headers or {}).items()}
        self.logged = logged

    def response(self) -> JsonResponse:
        body = {"error": self.code, "error_description": self.description}
        answer = JsonResponse(body, status=self.status, headers=self.headers)
        if self.logged:  # logged here already: Django need not log it as a server error
            answer._has_been_logged = True  # type: ignore[attr-defined]
        return answer


@csrf_exempt  # no cookies: the key in the path is the credential
@sensitive_variables()
def call(request: HttpRequest, token_id: str, key: str, method: str) -> HttpResponse:
    try:
        return _call(request, int(token_id), key, method.removesuffix(".json"))
    except ProxyError as err:
        return err.response()
    except Exception:  # still Bitrix24's shape; the cause in the (redacted) log
        log.exception("REST proxy: unexpected error calling %r", method[:100])
        text = "Something went wrong in b24keeper; tell its staff if it lasts."
        return ProxyError(500, "internal_error", text).response()


@sensitive_variables()
def _call(request: HttpRequest, token_id: int, key: str, method: str) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        allow = {"Allow": "GET, POST"}
        raise ProxyError(405, "http_method_not_allowed", "Use GET or POST.", allow)
    if not METHOD.fullmatch(method):
        raise ProxyError(400, "invalid_method", f"“{method[:100]}” is not a REST method name.")
    api_key = _authorize(key)
    try:
        outgoing = proxy_request.read(request, MAX_BODY)
    except BadRequest as err:
        raise ProxyError(400, "invalid_request", str(err)) from None
    if refused := proxy_request.refused_method(method, outgoing.commands(), api_key.methods):
        raise ProxyError(
            403,
            "method_not_allowed",
            f"This API key may not call {refused}: it is outside the key's method patterns "
            "(event.* and app.* need a pattern naming them).",
        )
    if not api_key.may_use(token_id):  # the same answer as for no such token: no probing
        raise _no_token(token_id)
    credential = _credential(token_id)
    _first_turn(request, api_key, credential)
    return _send(credential, method, outgoing)


def _authorize(key: str) -> KeyInfo:
    api_key = keys.find(key)
    if api_key is None:
        raise ProxyError(
            401,
            "invalid_api_key",
            "The API key in this webhook address is unknown, revoked or expired; ask "
            "b24keeper's staff for the token's webhook address again.",
        )
    if "proxy" not in api_key.scopes:
        raise ProxyError(
            403,
            "scope_not_allowed",
            "This API key may read tokens but not call through the REST proxy: it needs the "
            "“proxy” scope.",
        )
    return api_key


def _first_turn(request: HttpRequest, api_key: KeyInfo, credential: Credential) -> None:
    """The key's own limit and the portal's bucket, in one round trip to the store."""
    turns = ratelimit.reserve_many([keys.throttle_ask(api_key), _portal_ask(credential)])
    if not turns[0].granted:
        raise ProxyError(
            429,
            "rate_limited",
            f"This API key may make {api_key.rate_per_minute} requests a minute.",
            {"Retry-After": max(1, math.ceil(turns[0].wait))},
        )
    keys.note_use(api_key, forwarded_client_ip(request))
    _take(turns[1], credential)


def _no_token(token_id: int) -> ProxyError:
    return ProxyError(
        404, "token_not_found", f"No token {token_id} for this API key: check the webhook address."
    )


# token id -> (time.monotonic() when read, its credential): a busy proxy reads a token's row
# (one query, and the access token decrypted) at most once per CREDENTIAL_SECONDS per process.
# A token renewed elsewhere meanwhile costs one refused call here, and the renewal then finds
# the new token without refreshing; a token disabled meanwhile is served that long at most.
_credentials: dict[int, tuple[float, Credential]] = {}
CREDENTIAL_SECONDS = 1.0


@sensitive_variables()
def _credential(token_id: int) -> Credential:
    now = time.monotonic()
    cached = _credentials.get(token_id)
    if cached is not None and now - cached[0] < CREDENTIAL_SECONDS:
        return cached[1]
    credential = credential_of(_token(token_id))
    _remember(token_id, credential, now)
    return credential


def _remember(token_id: int, credential: Credential, now: float | None = None) -> None:
    if len(_credentials) >= 10_000:  # bounded: start over rather than grow
        _credentials.clear()
    _credentials[token_id] = (time.monotonic() if now is None else now, credential)


@sensitive_variables()
def _token(token_id: int) -> Token:
    try:
        return fresh_token("", MIN_TTL, pk=token_id)
    except TokenNotFound:
        raise _no_token(token_id) from None
    except (TokenError, OAuthError) as err:
        raise _token_error(err) from None


def _token_error(err: Exception) -> ProxyError:
    if isinstance(err, TokenUnavailable) or getattr(err, "permanent", False):
        return ProxyError(403, "token_unavailable", str(err))
    if isinstance(err, RefreshBusy):
        return ProxyError(429, "refresh_busy", str(err), {"Retry-After": 5})
    return ProxyError(502, "refresh_failed", str(err))


@sensitive_variables()
def _send(credential: Credential, method: str, outgoing: Outgoing) -> HttpResponse:
    deadline = time.monotonic() + settings.BITRIX_REST_DEADLINE
    renewed = moved = False
    while True:
        if renewed or moved:  # the first turn was taken with the key's (_first_turn)
            _take(ratelimit.reserve(*_portal_ask(credential)), credential)
        response = _post(credential, method, outgoing, deadline)
        if response.is_redirect and not moved:
            moved = True
            credential = _follow(credential, response.headers.get("Location", ""), deadline)
            continue
        if not renewed and _refused(response):
            renewed = True
            fresh = _renew(credential)
            if fresh is not None:
                credential = fresh
                continue
        return _passed_through(response)


def _portal_ask(credential: Credential) -> ratelimit.Ask:
    return (credential.bucket, credential.rate, usable_burst(credential), settings.PROXY_MAX_WAIT)


def _take(turn: ratelimit.Turn, credential: Credential) -> None:
    """Wait for a turn in the portal's bucket, or answer as Bitrix24 would."""
    if not turn.granted:  # Bitrix24's own answer to a full bucket; expected, not a fault
        log.info("REST proxy: no turn in %r's rate limit within PROXY_MAX_WAIT", credential.domain)
        raise ProxyError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests", logged=True)
    if turn.wait > 0:
        time.sleep(turn.wait)


@sensitive_variables()
def _post(
    credential: Credential, method: str, outgoing: Outgoing, deadline: float
) -> requests.Response:
    url = transport.rest_url(credential.root, method)
    left = max(1.0, deadline - time.monotonic())
    try:
        return transport.session().post(
            url,
            timeout=(settings.BITRIX_CONNECT_TIMEOUT, left),
            allow_redirects=False,
            **outgoing.with_auth(credential.access_token),
        )
    except requests.Timeout:
        raise ProxyError(504, "timeout", "The portal did not answer in time.") from None
    except requests.RequestException as err:
        text = f"Could not reach the portal ({type(err).__name__})."
        raise ProxyError(502, "connection_error", text) from None


def _refused(response: requests.Response) -> bool:
    if response.status_code != 401:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("error", "")).lower() in RENEW_ON


@sensitive_variables()
def _renew(credential: Credential) -> Credential | None:
    """A credential with the renewed token, or None when the renewal bound says not now (the
    portal's answer then goes back as it is)."""
    token = credential.handle
    assert isinstance(token, Token)
    try:
        _, row = renew_row(load_access(pk=token.pk), digest(credential.access_token))
    except RenewLimited:
        return None
    except (TokenError, OAuthError) as err:
        raise _token_error(err) from None
    renewed = credential_of(row)
    _remember(row.pk, renewed)
    return renewed


def _follow(credential: Credential, location: str, deadline: float) -> Credential:
    try:
        left = deadline - time.monotonic()
        move = transport.confirm_move(credential, location, left)
        token = credential.handle
        assert isinstance(token, Token)
        moved = TokenKeeper(token.reference, MIN_TTL).moved(credential, move)
        _credentials.pop(token.pk, None)
        return moved
    except RestError as err:
        raise ProxyError(409, "portal_moved", str(err)) from None


def _passed_through(response: requests.Response) -> HttpResponse:
    content_type = response.headers.get("Content-Type", "application/json")
    answer = HttpResponse(response.content, status=response.status_code, content_type=content_type)
    # The portal's own answer, not an error of ours: Django would log each 5xx (a busy portal's
    # QUERY_LIMIT_EXCEEDED) as a server error. The flag is how Django marks a logged response.
    answer._has_been_logged = True  # type: ignore[attr-defined]
    return answer
