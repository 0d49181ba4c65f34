"""The refresh service: a valid access token by reference, refreshed under single flight.

Public API (documented in the README):

    get_access_token(reference, min_ttl=300) -> str   # what other code calls
    refresh(reference) -> Token                        # refresh now

How one refresh stays single and loses nothing (protocol notes §3.3):
1. Claim: a compare-and-set UPDATE stamps `refresh_started_at` on the row, only if nobody
   holds a live claim and the version is the one we read. No transaction stays open across
   the HTTP call; other callers see the stamp and wait for the version to move.
2. Call Bitrix24.
3. Store: the new access token, refresh token and expiry go in ONE UPDATE fenced by
   `version`, before anything else runs, so a rotated refresh token is never lost and a stale
   writer changes nothing.
4. A stamp older than TOKEN_REFRESH_LEASE means the claimant died mid-call (maybe after
   Bitrix rotated): the next attempt records that and tries the stored pair once; a refusal
   then marks the token "needs re-authorization" instead of retrying forever.
"""

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from portals import escalation, schedule
from portals.errors import OAuthError, status_for
from portals.models import REFRESHABLE_STATUSES, RefreshAttempt, Token, TokenStatus
from portals.oauth import BitrixOAuthClient, TokenGrant, auth_server_from_endpoint

log = logging.getLogger(__name__)
Kind = RefreshAttempt.Kind
Outcome = RefreshAttempt.Outcome
# get_access_token() keeps serving a token that still has this long to live when a refresh
# fails transiently: consumers should not fail on a blip.
STILL_GOOD = timedelta(seconds=30)


class TokenError(Exception):
    """Base of the errors get_access_token() and refresh() raise besides OAuthError."""


class TokenNotFound(TokenError, LookupError):
    pass


class TokenUnavailable(TokenError):
    """The token cannot be used until a person acts (re-connect, enable, pay)."""


class RefreshBusy(TokenError):
    """Another process's refresh did not finish within TOKEN_REFRESH_WAIT."""


@sensitive_variables()
def get_access_token(reference: str, min_ttl: int = 300) -> str:
    """A valid access token for `reference`, refreshed first if it expires within `min_ttl`
    seconds. Raises TokenNotFound, TokenUnavailable, RefreshBusy or OAuthError."""
    token = _load(reference=reference)
    _ensure_usable(token)
    if token.expires_at and token.expires_at - timezone.now() > timedelta(seconds=min_ttl):
        return token.access_token
    try:
        token = refresh_token(token, Kind.ON_DEMAND, wait=True)
    except (OAuthError, RefreshBusy) as err:
        if getattr(err, "permanent", False) or not _still_good(token):
            raise
        log.warning(
            "token %s: refresh failed (%s); serving the current token",
            reference,
            getattr(err, "code", "busy"),
        )
    return token.access_token


@sensitive_variables()
def refresh(reference: str) -> Token:
    """Refresh now (waiting for, and accepting, a refresh already in flight)."""
    return refresh_token(_load(reference=reference), Kind.MANUAL, wait=True)


@sensitive_variables()
def refresh_token(token: Token, kind: str, *, wait: bool) -> Token | None:
    """Refresh `token` unless another process is already doing it.

    wait=True: wait for that other refresh and return its result (RefreshBusy after
    TOKEN_REFRESH_WAIT). wait=False (background work): return None at once.
    """
    if kind != Kind.MANUAL:
        _ensure_usable(token)
    elif not token.refresh_token:
        raise TokenUnavailable(f"Token “{token.reference}” has no refresh token: connect it first.")
    first_version, saw_busy = token.version, False
    deadline = time.monotonic() + settings.TOKEN_REFRESH_WAIT
    while True:
        stale = _lease_is_stale(token)
        if (stale or token.refresh_started_at is None) and _claim(token):
            return _refresh_claimed(token, kind, interrupted=stale)
        if not wait:
            return None
        saw_busy = saw_busy or token.refresh_started_at is not None
        if time.monotonic() > deadline:
            raise RefreshBusy(f"Token “{token.reference}” is being refreshed elsewhere; try again.")
        time.sleep(random.uniform(0.05, 0.15))
        token = _load(pk=token.pk)
        if token.version != first_version:
            return token
        if saw_busy and token.refresh_started_at is None:
            return _after_failed_peer(token)


def _load(**lookup: object) -> Token:
    try:
        return Token.objects.select_related("portal", "app").get(**lookup)
    except Token.DoesNotExist:
        what = ", ".join(f"{key} “{value}”" for key, value in lookup.items())
        raise TokenNotFound(f"No token with {what}: check the reference.") from None


def _ensure_usable(token: Token) -> None:
    if token.status not in REFRESHABLE_STATUSES or not token.refresh_token:
        raise TokenUnavailable(
            f"Token “{token.reference}” is {token.get_status_display().lower()}"
            + (f": {token.last_error}" if token.last_error else ".")
        )


def _still_good(token: Token) -> bool:
    return bool(token.expires_at and token.expires_at - timezone.now() > STILL_GOOD)


def _lease_is_stale(token: Token) -> bool:
    started = token.refresh_started_at
    lease = timedelta(seconds=settings.TOKEN_REFRESH_LEASE)
    return started is not None and timezone.now() - started > lease


def _claim(token: Token) -> bool:
    """Compare-and-set the refresh stamp: exactly one caller wins."""
    claimable = Token.objects.filter(pk=token.pk, version=token.version)
    if token.refresh_started_at is None:
        claimable = claimable.filter(refresh_started_at__isnull=True)
    else:
        claimable = claimable.filter(refresh_started_at=token.refresh_started_at)
    started = timezone.now()
    if claimable.update(refresh_started_at=started) != 1:
        return False
    token.refresh_started_at = started
    return True


def _after_failed_peer(token: Token) -> Token:
    """The refresh we waited for ended without a new pair: report its reason."""
    _ensure_usable(token)
    if _still_good(token):
        return token
    raise TokenUnavailable(f"Token “{token.reference}” could not be refreshed: {token.last_error}")


def _refresh_claimed(token: Token, kind: str, *, interrupted: bool) -> Token:
    started = token.refresh_started_at
    if interrupted:
        log.warning("token %s: the previous refresh was interrupted mid-call", token.reference)
        _record(token, kind, Outcome.INTERRUPTED, started, 0)
    client = BitrixOAuthClient(server=_auth_server(token))
    began = time.monotonic()
    try:
        grant = client.refresh(token.app.client_id, token.app.client_secret, token.refresh_token)
    except OAuthError as err:
        return _handle_failure(token, kind, err, started, _ms_since(began), interrupted)
    return _store_grant(token, grant, kind, started, _ms_since(began))


def _auth_server(token: Token) -> str:
    return auth_server_from_endpoint(token.server_endpoint) or token.portal.authorization_server()


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def _store_grant(token: Token, grant: TokenGrant, kind: str, started, duration_ms: int) -> Token:
    now = timezone.now()
    fields = {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_at": grant.expires_at,
        "server_endpoint": grant.server_endpoint or token.server_endpoint,
        "client_endpoint": grant.client_endpoint or token.client_endpoint,
        "user_id": grant.user_id or token.user_id,
        "status": TokenStatus.ACTIVE,
        "last_refreshed_at": now,
        "refresh_started_at": None,
        "failure_count": 0,
        "last_error_code": "",
        "last_error": "",
        "failing_since": None,
        "next_refresh_at": schedule.next_refresh_after_success(token.app, grant.expires_at, now),
        "claimed_until": None,
    }
    # The one statement that matters: the rotated pair is durable before anything else runs.
    fence = Token.objects.filter(pk=token.pk, version=token.version)
    if fence.update(version=F("version") + 1, **fields) != 1:
        log.warning(
            "token %s: a newer pair was stored meanwhile; this one is dropped", token.reference
        )
        _record(token, kind, Outcome.ROTATED_ELSEWHERE, started, duration_ms)
        return _load(pk=token.pk)
    was_failing = token.status != TokenStatus.ACTIVE or token.failure_count > 0
    for name, value in fields.items():
        setattr(token, name, value)
    token.version += 1
    _record(token, kind, Outcome.SUCCESS, started, duration_ms)
    if was_failing:
        escalation.on_recovery(token)
    return token


def _handle_failure(token, kind, err: OAuthError, started, duration_ms, interrupted) -> Token:
    if err.code.lower() in ("invalid_grant", "expired_token"):
        # Another worker may have rotated the pair while we used the old refresh token.
        current = _load(pk=token.pk)
        if current.version != token.version:
            _record(token, kind, Outcome.ROTATED_ELSEWHERE, started, duration_ms, err)
            return current
    if interrupted and err.permanent:
        err.hint = (
            "A previous refresh was interrupted after Bitrix24 may have rotated the token, and "
            "the stored refresh token is no longer accepted. " + err.hint
        )
    if err.permanent:
        _mark_failed(token, err, status_for(err), next_refresh_at=None)
        _record(token, kind, Outcome.PERMANENT_ERROR, started, duration_ms, err)
        escalation.on_failure(token, err, next_attempt_at=None)
    else:
        next_at = schedule.next_attempt_after_failure(token.failure_count + 1, timezone.now())
        _mark_failed(token, err, TokenStatus.REFRESH_FAILING, next_refresh_at=next_at)
        _record(token, kind, Outcome.TRANSIENT_ERROR, started, duration_ms, err)
        escalation.on_failure(token, err, next_attempt_at=next_at)
    raise err


def _mark_failed(token: Token, err: OAuthError, status: str, next_refresh_at) -> None:
    """Record the failure; the stored token pair is left exactly as it was."""
    now = timezone.now()
    Token.objects.filter(pk=token.pk, version=token.version).update(
        status=status,
        refresh_started_at=None,
        claimed_until=None,
        failure_count=F("failure_count") + 1,
        last_error_code=err.code[:100],
        last_error=err.message(),
        failing_since=Coalesce(F("failing_since"), now),
        last_failure_at=now,
        next_refresh_at=next_refresh_at,
    )
    token.status, token.failure_count = status, token.failure_count + 1
    token.failing_since, token.last_failure_at = token.failing_since or now, now
    token.last_error_code, token.last_error = err.code[:100], err.message()
    token.next_refresh_at, token.refresh_started_at = next_refresh_at, None


def _record(token, kind, outcome, started, duration_ms, err: OAuthError | None = None) -> None:
    RefreshAttempt.objects.create(
        token=token,
        kind=kind,
        outcome=outcome,
        started_at=started or timezone.now(),
        finished_at=timezone.now(),
        error_code=err.code[:100] if err else "",
        error_description=err.description if err else "",
        http_status=err.http_status if err else None,
        duration_ms=duration_ms,
    )
