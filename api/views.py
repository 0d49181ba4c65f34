"""The token API: `GET /api/tokens/<reference>/` with `Authorization: Bearer <key>`.

Every answer is JSON and never cached; an error is `{"error": <code>, "detail": <sentence>}`
(the codes are a contract, listed in the README). The key is checked before anything else, and
a key limited to some tokens gets the same 403 for a token it may not read and for one that
does not exist, so it cannot probe references.
"""

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from api import keys
from core.client_ip import forwarded_client_ip
from portals import tokens
from portals.bitrix.errors import OAuthError
from portals.bitrix.errors import status_for as token_status_for
from portals.models import Token
from portals.tokens import PairNotStored, RefreshBusy, TokenNotFound, TokenUnavailable

if TYPE_CHECKING:
    from api.keys import CheckedKey

log = logging.getLogger(__name__)
MIN_TTL_DEFAULT, MIN_TTL_MAX = 300, 3000
RETRY_BUSY = 5  # seconds a client should wait after refresh_busy


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
    try:
        if request.method not in ("GET", "HEAD"):
            raise ApiError(405, "method_not_allowed", "Use GET.", headers={"Allow": "GET, HEAD"})
        api_key = _authorize(request, reference)
        min_ttl = _min_ttl(request)
        _check_access(api_key, reference)
        return _json(_describe(_get_token(reference, min_ttl)))
    except ApiError as err:
        return err.response()
    except Exception:  # the edge of the API: still JSON, and the cause in the (redacted) log
        log.exception("token API: unexpected error for reference %r", reference[:100])
        detail = "Something went wrong in b24keeper; try again, and tell its staff if it lasts."
        return ApiError(500, "internal_error", detail).response()


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return ApiError(
        404, "not_found", "No such API endpoint: use /api/tokens/<reference>/."
    ).response()


def _authorize(request: HttpRequest, reference: str) -> "CheckedKey":
    api_key = keys.authenticate(request.headers.get("Authorization", ""), reference)
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


def _check_access(api_key: "CheckedKey", reference: str) -> None:
    if api_key.may_read:  # set by keys.authenticate, in the key's own query
        return
    raise ApiError(403, "forbidden", f"This API key may not read token “{reference[:100]}”.")


@sensitive_variables()
def _get_token(reference: str, min_ttl: int) -> Token:
    try:
        return tokens.get_token(reference, min_ttl)
    except TokenNotFound:
        raise ApiError(404, "not_found", f"No token with reference “{reference[:100]}”.") from None
    except TokenUnavailable as err:
        raise ApiError(409, "token_unavailable", str(err), status=err.status) from None
    except RefreshBusy as err:
        raise ApiError(503, "refresh_busy", str(err), headers={"Retry-After": RETRY_BUSY}) from None
    except PairNotStored as err:
        raise ApiError(502, "refresh_failed", str(err)) from None
    except OAuthError as err:
        if err.permanent:
            status = token_status_for(err)
            raise ApiError(409, "token_unavailable", str(err), status=status) from None
        raise ApiError(502, "refresh_failed", str(err)) from None


@sensitive_variables()
def _describe(token: Token) -> dict[str, object]:
    expires_at = token.expires_at or timezone.now()
    return {
        "reference": token.reference,
        "access_token": token.access_token,
        "expires_at": expires_at.isoformat(),
        "expires_in": max(0, int((expires_at - timezone.now()).total_seconds())),
        "domain": token.portal.domain,
        "client_endpoint": token.client_endpoint,
        "member_id": token.portal.member_id or "",
    }
