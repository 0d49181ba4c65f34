"""The token API, with `Authorization: Bearer <key>` (a key with the `token` scope):

    GET  /api/tokens/<reference>/          the token (refreshed first within min_ttl)
    POST /api/tokens/<reference>/renew/    {"rejected": "<sha256 hex>"}: the portal refused it
    GET  /api/tokens/?member_id=<id>       or ?domain=<host>: the key's tokens of a portal

Every answer is JSON and never cached; an error is `{"error": <code>, "detail": <sentence>}`
(the codes are a contract, listed in the README). The key is checked before anything else, and
a key limited to some tokens gets the same 403 for a token it may not read and for one that
does not exist, so it cannot probe references.
"""

import json
import logging
import math
import re
from collections.abc import Callable, Mapping

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from api import keys
from api.keys import KeyInfo
from core.client_ip import forwarded_client_ip
from portals import tokens
from portals.bitrix.errors import OAuthError
from portals.bitrix.errors import status_for as token_status_for
from portals.models import Token
from portals.tokens import (
    PairNotStored,
    RefreshBusy,
    RenewLimited,
    TokenNotFound,
    TokenUnavailable,
    TokenView,
)
from portals.tokens.renew import renew_token

log = logging.getLogger(__name__)
MIN_TTL_DEFAULT, MIN_TTL_MAX = 300, 3000
RETRY_BUSY = 5  # seconds a client should wait after refresh_busy
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
MAX_BODY = 4096  # a renew request is one short JSON object


class ApiError(Exception):
    """An error answer: `extra` goes into the JSON body, `headers` into the response."""

    def __init__(
        self,
        http_status: int,
        code: str,
        detail: str,
        headers: Mapping[str, object] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(detail)
        self.http_status, self.code, self.detail, self.extra = http_status, code, detail, extra
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}

    def response(self) -> JsonResponse:
        body = {"error": self.code, "detail": self.detail}
        return _json({**body, **self.extra}, self.http_status, self.headers)


def _json(
    body: dict[str, object], status: int = 200, headers: dict[str, str] | None = None
) -> JsonResponse:
    response = JsonResponse(body, status=status, headers=headers or {})
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt  # no cookies: the key in the header is the credential
@sensitive_variables()
def token(request: HttpRequest, reference: str) -> JsonResponse:
    def answer() -> JsonResponse:
        _allow(request, "GET", "HEAD")
        api_key = _authorize(request)
        min_ttl = _min_ttl(request)
        _check_access(api_key, reference)
        return _json(describe(_token_call(reference, lambda: tokens.get_token(reference, min_ttl))))

    return _answer(answer, reference)


@csrf_exempt
@sensitive_variables()
def renew(request: HttpRequest, reference: str) -> JsonResponse:
    def answer() -> JsonResponse:
        _allow(request, "POST")
        api_key = _authorize(request)
        rejected = _rejected(request)
        _check_access(api_key, reference)
        return _json(describe(_token_call(reference, lambda: renew_token(reference, rejected))))

    return _answer(answer, reference)


@csrf_exempt
def lookup(request: HttpRequest) -> JsonResponse:
    def answer() -> JsonResponse:
        _allow(request, "GET", "HEAD")
        api_key = _authorize(request)
        rows = Token.objects.select_related("portal").order_by("reference")
        member_id, domain = request.GET.get("member_id", ""), request.GET.get("domain", "")
        if bool(member_id) == bool(domain):
            raise ApiError(
                400,
                "bad_request",
                "Give exactly one of member_id=<the portal's member_id> or domain=<its host>, "
                "e.g. /api/tokens/?domain=acme.bitrix24.com.",
            )
        rows = (
            rows.filter(portal__member_id=member_id)
            if member_id
            else rows.filter(portal__domain__iexact=domain.strip().lower())
        )
        if not api_key.all_tokens:
            rows = rows.filter(pk__in=api_key.token_ids)
        found = [_listed(t) for t in rows[:100]]
        return _json({"tokens": found})

    return _answer(answer, "")


def _answer(answer: Callable[[], JsonResponse], reference: str) -> JsonResponse:
    try:
        return answer()
    except ApiError as err:
        return err.response()
    except Exception:  # the edge of the API: still JSON, and the cause in the (redacted) log
        log.exception("token API: unexpected error for reference %r", reference[:100])
        detail = "Something went wrong in b24keeper; try again, and tell its staff if it lasts."
        return ApiError(500, "internal_error", detail).response()


def _allow(request: HttpRequest, *methods: str) -> None:
    if request.method not in methods:
        allowed = ", ".join(methods)
        raise ApiError(
            405, "method_not_allowed", f"Use {methods[0]} here.", headers={"Allow": allowed}
        )


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return ApiError(
        404,
        "not_found",
        "No such API endpoint: use /api/tokens/<reference>/, /api/tokens/<reference>/renew/ "
        "or /api/tokens/?member_id=<id>.",
    ).response()


def _authorize(request: HttpRequest) -> KeyInfo:
    api_key = keys.authenticate(request.headers.get("Authorization", ""))
    if api_key is None:
        raise ApiError(
            401,
            "unauthorized",
            "Send a valid API key as “Authorization: Bearer <key>”; this one is missing, "
            "unknown, revoked or expired.",
            headers={"WWW-Authenticate": 'Bearer realm="b24keeper"'},
        )
    turn = keys.throttle(api_key)
    if not turn.granted:
        raise ApiError(
            429,
            "rate_limited",
            f"This key may make {api_key.rate_per_minute} requests a minute; keep the token "
            "until shortly before expires_at instead of asking each time.",
            headers={"Retry-After": max(1, math.ceil(turn.wait))},
        )
    keys.note_use(api_key, forwarded_client_ip(request))  # TRUSTED_PROXY_COUNT decides
    if "token" not in api_key.scopes:
        raise ApiError(
            403,
            "forbidden",
            "This API key may only call Bitrix24 through the REST proxy (scope “proxy”); ask "
            "for a key with the “token” scope to read tokens.",
        )
    return api_key


def _min_ttl(request: HttpRequest) -> int:
    raw = request.GET.get("min_ttl", str(MIN_TTL_DEFAULT))
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MIN_TTL_MAX:
        raise ApiError(
            400,
            "bad_request",
            f"min_ttl must be a whole number of seconds from 0 to {MIN_TTL_MAX} "
            f"(default {MIN_TTL_DEFAULT}); got “{raw[:20]}”.",
        )
    return value


def _rejected(request: HttpRequest) -> str:
    """The SHA-256 hex of the refused access token, from the JSON body."""
    body: object = None
    if request.content_type == "application/json" and len(request.body) <= MAX_BODY:
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
    rejected = body.get("rejected") if isinstance(body, dict) else None
    if not isinstance(rejected, str) or not SHA256_HEX.fullmatch(rejected):
        raise ApiError(
            400,
            "bad_request",
            'Send JSON {"rejected": "<SHA-256 hex of the access token the portal refused>"} '
            "with Content-Type: application/json (64 hex digits; the token itself never "
            "needs to travel back).",
        )
    return rejected.lower()


def _check_access(api_key: KeyInfo, reference: str) -> None:
    if api_key.may_read(reference):
        return
    raise ApiError(403, "forbidden", f"This API key may not read token “{reference[:100]}”.")


@sensitive_variables()
def _token_call(reference: str, call: Callable[[], TokenView]) -> TokenView:
    """`call`'s token view, its errors turned into the API's answers."""
    try:
        return call()
    except TokenNotFound:
        raise ApiError(
            404,
            "not_found",
            f"No token with reference “{reference[:100]}”: check the reference (the admin's "
            "Tokens page lists them).",
        ) from None
    except TokenUnavailable as err:
        raise ApiError(409, "token_unavailable", str(err), status=err.status) from None
    except RefreshBusy as err:
        raise ApiError(503, "refresh_busy", str(err), headers={"Retry-After": RETRY_BUSY}) from None
    except RenewLimited as err:
        headers = {"Retry-After": err.retry_after}
        raise ApiError(429, "renew_limited", str(err), headers=headers) from None
    except PairNotStored as err:
        raise ApiError(502, "refresh_failed", str(err)) from None
    except OAuthError as err:
        if err.permanent:
            status = token_status_for(err)
            raise ApiError(409, "token_unavailable", str(err), status=status) from None
        raise ApiError(502, "refresh_failed", str(err)) from None


@sensitive_variables()
def describe(view: TokenView) -> dict[str, object]:
    """The token API's JSON of a token (GET and renew answer the same)."""
    return {
        "id": view.id,
        "reference": view.reference,
        "access_token": view.access_token,
        "expires_at": view.expires_at.isoformat(),
        "expires": view.expires,
        "expires_in": view.expires_in,
        "domain": view.domain,
        "member_id": view.member_id,
        "client_endpoint": view.client_endpoint,
        "server_endpoint": view.server_endpoint,
        "scope": view.scope,
        "status": view.status,
        "app_status": view.app_status,
        "user_id": view.user_id,
    }


def _listed(token: Token) -> dict[str, object]:
    """A token in a lookup's answer: no access token."""
    return {
        "reference": token.reference,
        "domain": token.portal.domain,
        "member_id": token.portal.member_id or "",
        "status": token.status,
        "expires": int(token.expires_at.timestamp()) if token.expires_at else None,
    }
