"""A valid access token by reference, refreshed under single flight.

Public API (documented in the README):

    get_access_token(reference, min_ttl=300) -> str   # what other code calls
    get_token(reference, min_ttl=300) -> TokenView     # the same, with expiry and endpoints
    refresh(reference) -> TokenView                    # refresh now
    aget_access_token(...)                             # the async twin

`fresh_token()` is get_token() as the Token row, for the REST client (portals.rest), which
needs the portal's rate limit; nothing else should need the row.

How one refresh stays single and loses nothing (docs/bitrix24-protocol.md §3.3):
1. Claim: a compare-and-set UPDATE stamps `refresh_started_at` on the row, only if nobody
   holds a live claim and the version is the one we read. No transaction stays open across
   the HTTP call; other callers see the stamp and wait for the version to move.
2. Call Bitrix24.
3. Store (portals.tokens.pairs): the pair goes to the local journal, then into the database in one
   UPDATE fenced by `version`, retried through a database outage; a stale writer changes
   nothing.
4. A stamp older than TOKEN_REFRESH_LEASE means the claimant died mid-call (maybe after
   Bitrix rotated): the next attempt records that and tries the stored pair once; a refusal
   then marks the token "needs re-authorization" instead of retrying forever. If the dead
   claimant's pair is in a journal, its machine restores it later.
"""

import logging
import random
import time
from datetime import datetime, timedelta
from typing import Literal, overload

from asgiref.sync import sync_to_async
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from core import dbclock
from core.logging import bind_token
from portals.bitrix.errors import ConfigurationError, OAuthError, status_for
from portals.bitrix.oauth import BitrixOAuthClient, auth_server_from_endpoint
from portals.models import REFRESHABLE_STATUSES, RefreshAttempt, Token, TokenStatus
from portals.tokens import history, pairs, schedule, state
from portals.tokens.errors import RefreshBusy, TokenConfigurationError, TokenUnavailable
from portals.tokens.load import load, load_access
from portals.tokens.view import TokenView, view_of

log = logging.getLogger(__name__)
Kind = RefreshAttempt.Kind
# get_access_token() keeps serving a token that still has this long to live when a refresh
# fails transiently: consumers should not fail on a blip.
STILL_GOOD = timedelta(seconds=30)


@sensitive_variables()
def get_access_token(reference: str, min_ttl: int = 300) -> str:
    """A valid access token for `reference`, refreshed first if it expires within `min_ttl`
    seconds. Raises TokenNotFound, TokenUnavailable (TokenConfigurationError among them),
    RefreshBusy, PairNotStored or OAuthError."""
    return fresh_token(reference, min_ttl).access_token


@sensitive_variables()
async def aget_access_token(reference: str, min_ttl: int = 300) -> str:
    """get_access_token() for async code (the database work runs in a worker thread)."""
    return await sync_to_async(get_access_token)(reference, min_ttl)


@sensitive_variables()
def get_token(reference: str, min_ttl: int = 300) -> TokenView:
    """get_access_token(), returning the token's immutable view (expiry, endpoints, scope,
    status): the token API's fields, and nothing that could refresh it."""
    return view_of(fresh_token(reference, min_ttl))


@sensitive_variables()
def fresh_token(reference: str, min_ttl: int = 300, *, pk: int | None = None) -> Token:
    """get_token() as the Token row (with its portal), for the REST client and the REST proxy
    (which names the token by `pk`). Its refresh token and app are not loaded unless a refresh
    was needed."""
    token = load_access(pk=pk) if pk is not None else load_access(reference=reference)
    if token.status not in REFRESHABLE_STATUSES or not token.access_token:
        ensure_usable(token)
    # Judged on the database's clock (read with the row): a consumer whose clock is behind
    # must not serve a token the portal already refuses.
    fresh = token.expires_at and token.expires_at - db_now(token) > timedelta(seconds=min_ttl)
    # A refresh that died mid-call may have made the stored pair dead at Bitrix: never serve
    # it as if nothing happened; refreshing now finds out (and restores or escalates).
    if fresh and not lease_is_stale(token):
        return token
    # Refreshing needs the refresh token and the client secret: load (and decrypt) them now.
    token = load(pk=token.pk)
    ensure_usable(token)
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
    return token


@sensitive_variables()
def refresh(reference: str) -> TokenView:
    """Refresh now (waiting for, and accepting, a refresh already in flight)."""
    return view_of(refresh_token(load(reference=reference), Kind.MANUAL, wait=True))


@overload
def refresh_token(token: Token, kind: str, *, wait: Literal[True]) -> Token: ...
@overload
def refresh_token(token: Token, kind: str, *, wait: bool) -> Token | None: ...


@sensitive_variables()
def refresh_token(token: Token, kind: str, *, wait: bool) -> Token | None:
    """Refresh `token` unless another process is already doing it.

    wait=True: wait for that other refresh and return its result (RefreshBusy after
    TOKEN_REFRESH_WAIT). wait=False (background work): return None at once.
    """
    bind_token(token.reference)  # JSON log lines name the token
    if _replay_own_journal(token, kind):  # a pair this machine could not store earlier
        token = load(pk=token.pk)
    if kind == Kind.SCHEDULED and token.status == TokenStatus.CONFIG_ERROR:
        pass  # the sweep retries a configuration error: the setting may be fixed by now
    elif kind != Kind.MANUAL:
        ensure_usable(token)
    elif not token.refresh_token:
        raise TokenUnavailable(f"Token “{token.reference}” has no refresh token: connect it first.")
    first_version, saw_busy = token.version, False
    deadline = time.monotonic() + settings.TOKEN_REFRESH_WAIT
    while True:
        stale = lease_is_stale(token)
        if (stale or token.refresh_started_at is None) and state.claim_refresh(token):
            return _refresh_claimed(token, kind, interrupted=stale)
        if not wait:
            return None
        saw_busy = saw_busy or token.refresh_started_at is not None
        if time.monotonic() > deadline:
            raise RefreshBusy(f"Token “{token.reference}” is being refreshed elsewhere; try again.")
        time.sleep(random.uniform(0.05, 0.15))
        token = load(pk=token.pk)
        if token.version != first_version:
            return token
        if saw_busy and token.refresh_started_at is None:
            return _after_failed_peer(token)


def _replay_own_journal(token: Token, kind: str) -> int:
    """pairs.replay_journal for `token`; a journal this process cannot read (permissions, a
    file where the folder should be) is a configuration error on the token, with an incident,
    not a crash that records nothing: it may hold the token's only good pair."""
    try:
        return pairs.replay_journal(token.pk)
    except OSError as err:
        error = ConfigurationError(
            f"The local journal {settings.TOKEN_JOURNAL_DIR} cannot be read "
            f"({err.strerror or type(err).__name__}). Make VAR_DIR/journal a folder this "
            "process may read and write; the token then recovers by itself.",
            setting="VAR_DIR",
        )
        state.record_failure(token, kind, error, db_now(token), 0)
        raise TokenConfigurationError(str(error), error.setting) from None


@sensitive_variables()
def refresh_claimed(token: Token, kind: str, *, interrupted: bool) -> Token:
    """Refresh `token`, whose refresh claim the caller took with the row
    (state.claim_scheduled: the sweep's task), after replaying this machine's journal."""
    bind_token(token.reference)  # JSON log lines name the token
    return _refresh_claimed(token, kind, interrupted=interrupted)


def ensure_usable(token: Token) -> None:
    if token.status == TokenStatus.CONFIG_ERROR:
        raise TokenConfigurationError(token.last_error, _setting_named(token.last_error))
    if token.status not in REFRESHABLE_STATUSES or not token.refresh_token:
        what = _UNAVAILABLE.get(token.status, _UNAVAILABLE[TokenStatus.AWAITING_CODE])
        cause = f" Bitrix24 said: {token.last_error}" if token.last_error else ""
        raise TokenUnavailable(f"Token “{token.reference}” {what}.{cause}", status=token.status)


# Why a token cannot be used, and what a person does about it (the token API's 409 detail).
_UNAVAILABLE: dict[str, str] = {
    TokenStatus.NEEDS_REAUTH: "needs re-authorization: Bitrix24 no longer accepts its refresh "
    "token; an administrator of the portal connects it again (Add task or the Connect button)",
    TokenStatus.UNINSTALLED: "cannot be used: the app was uninstalled from the portal; install "
    "it again there",
    TokenStatus.PAYMENT_REQUIRED: "cannot be used: Bitrix24 asks for the app to be paid for on "
    "the portal",
    TokenStatus.DISABLED: "is disabled by b24keeper's staff; enable it in the admin to use it",
    TokenStatus.AWAITING_CODE: "is not connected yet: connect the portal first (Add task or "
    "the Connect button)",
}


def _setting_named(message: str) -> str:
    return next(
        (s for s in ("ENCRYPTION_KEYS", "BITRIX_AUTH_SERVERS", "VAR_DIR") if s in message), ""
    )


def _still_good(token: Token) -> bool:
    return bool(token.expires_at and token.expires_at - db_now(token) > STILL_GOOD)


def db_now(token: Token) -> datetime:
    """The database's time when `token` was read (portals.tokens.load), or now."""
    return getattr(token, "db_now", None) or dbclock.now()


def lease_is_stale(token: Token) -> bool:
    """Whether the refresh claim looked dead when the row was read, by the database's clock
    (state.claim_refresh judges it again, in the database, when taking it over)."""
    started = token.refresh_started_at
    lease = timedelta(seconds=settings.TOKEN_REFRESH_LEASE)
    return started is not None and db_now(token) - started > lease


def _after_failed_peer(token: Token) -> Token:
    """The refresh we waited for ended without a new pair: report its reason."""
    ensure_usable(token)
    if _still_good(token):
        return token
    raise TokenUnavailable(
        f"Token “{token.reference}” could not be refreshed: {token.last_error}", token.status
    )


def _refresh_claimed(token: Token, kind: str, *, interrupted: bool) -> Token:
    started = token.refresh_started_at or db_now(token)
    if interrupted:
        log.warning("token %s: the previous refresh was interrupted mid-call", token.reference)
        history.record_interrupted(token, kind, started)
    began = time.monotonic()
    try:
        client = BitrixOAuthClient(server=_auth_server(token))
        grant = client.refresh(token.app.client_id, token.app.client_secret, token.refresh_token)
    except OAuthError as err:
        return _handle_failure(token, kind, err, started, _ms_since(began), interrupted)
    except ConfigurationError as err:
        state.record_failure(token, kind, err, started, 0)
        raise TokenConfigurationError(str(err), err.setting) from None
    return pairs.store_refreshed(token, grant, kind, started, _ms_since(began))


def _auth_server(token: Token) -> str:
    return auth_server_from_endpoint(token.server_endpoint) or token.portal.authorization_server()


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def _handle_failure(
    token: Token, kind: str, err: OAuthError, started: datetime, duration_ms: int, interrupted: bool
) -> Token:
    if err.code.lower() in ("invalid_grant", "expired_token"):
        # Another worker may have rotated the pair while we used the old refresh token.
        current = load(pk=token.pk)
        if current.version != token.version:
            outcome = RefreshAttempt.Outcome.ROTATED_ELSEWHERE
            history.record_attempt(token, kind, outcome, started, duration_ms, err)
            return current
    if interrupted and err.permanent:
        err.hint = (
            "A previous refresh was interrupted after Bitrix24 may have rotated the token, and "
            "the stored refresh token is no longer accepted. " + err.hint
        )
    if err.permanent:
        state.record_failure(token, kind, err, started, duration_ms, status=status_for(err))
    else:
        next_at = schedule.next_attempt_after_failure(token.failure_count + 1, db_now(token))
        state.record_failure(token, kind, err, started, duration_ms, next_refresh_at=next_at)
    raise err
