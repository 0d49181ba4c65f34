"""Renew: a consumer says "the portal refused this access token" and gets a working one.

    renew(reference, rejected) -> str          # `rejected`: the access token the portal refused
    renew_token(reference, rejected_sha256) -> TokenView   # the same by its SHA-256 (HTTP)
    arenew(reference, rejected)                # the async twin

If the stored access token is already another one, it is returned without a refresh (someone
renewed meanwhile). Otherwise the token is refreshed once, through the single-flight claim of
portals.tokens.access (callers at the same moment, in any process, join that one refresh).
Bounded: at most one renewal refresh per token per RENEW_EVERY (60 s), whoever asks (the token
API's renew, the REST proxy); past that RenewLimited, so a client that loops on a token the
portal keeps refusing cannot make b24keeper refresh in a loop. Each renewal refresh is on the
token's history (kind "renew") and every renewal is counted in b24keeper_renewals_total{outcome}.

Who may call: the token API and REST proxy (api), any code holding a reference.
"""

import hashlib
import hmac
import math
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ops.record import metrics
from portals.models import RefreshAttempt, Token
from portals.tokens.access import ensure_usable, lease_is_stale, refresh_token
from portals.tokens.errors import TokenError
from portals.tokens.load import load, load_access
from portals.tokens.view import TokenView, view_of

RENEW_EVERY = timedelta(seconds=60)
Kind, Outcome = RefreshAttempt.Kind, RefreshAttempt.Outcome


class RenewLimited(TokenError):
    """The token was renewed by a refresh less than RENEW_EVERY ago and the portal refuses its
    successor too: try again after `retry_after` seconds (or find out why the portal refuses
    it; a refresh would not help)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def digest(access_token: str) -> str:
    """The SHA-256 hex of an access token: how a refused token is named over HTTP."""
    return hashlib.sha256(access_token.encode()).hexdigest()


@sensitive_variables()
def renew(reference: str, rejected: str) -> str:
    """A working access token for `reference`, `rejected` being the one the portal refused.
    Raises what get_access_token() raises, and RenewLimited."""
    return renew_token(reference, digest(rejected)).access_token


@sensitive_variables()
async def arenew(reference: str, rejected: str) -> str:
    """renew() for async code (the database work runs in a worker thread)."""
    return await sync_to_async(renew)(reference, rejected)


@sensitive_variables()
def renew_token(reference: str, rejected_sha256: str) -> TokenView:
    """renew() by the refused token's SHA-256 hex, returning the token's view."""
    return renew_row(load_access(reference=reference), rejected_sha256)[0]


@sensitive_variables()
def renew_row(token: Token, rejected_sha256: str) -> tuple[TokenView, Token]:
    """renew_token() of a row loaded by load_access(); the view and the row now stored (the
    REST proxy keeps calling with the row's portal)."""
    try:
        outcome, token = _renew(token, rejected_sha256.strip().lower())
    except RenewLimited:
        metrics.count(metrics.RENEWALS_TOTAL, outcome="limited")
        raise
    except Exception:
        metrics.count(metrics.RENEWALS_TOTAL, outcome="failed")
        raise
    metrics.count(metrics.RENEWALS_TOTAL, outcome=outcome)
    return view_of(token), token


def _renew(token: Token, rejected: str) -> tuple[str, Token]:
    ensure_usable(token)
    if not _is(token, rejected):
        return "already_renewed", token
    in_flight = token.refresh_started_at is not None and not lease_is_stale(token)
    if not in_flight:
        _check_bound(token, rejected)
    full = load(pk=token.pk)  # with the refresh token and the app: refreshing needs them
    if not _is(full, rejected):  # someone renewed since we read it: no second refresh
        return "already_renewed", load_access(pk=token.pk)
    refreshed = refresh_token(full, Kind.RENEW, wait=True)
    current = load_access(pk=refreshed.pk)  # the row as stored, without the secrets
    ensure_usable(current)
    if _is(current, rejected):  # the refresh we joined ended without a new pair
        raise RenewLimited(
            f"Token “{token.reference}” could not be renewed just now; try again shortly.", 5
        )
    return ("joined" if in_flight else "refreshed"), current


def _check_bound(token: Token, rejected: str) -> None:
    """RenewLimited if a renewal refresh finished within RENEW_EVERY, unless the token has
    moved on since (a caller that read the token before that refresh gets its result)."""
    since = timezone.now() - RENEW_EVERY
    last = (
        RefreshAttempt.objects.filter(
            token_id=token.pk, kind=Kind.RENEW, outcome=Outcome.SUCCESS, finished_at__gt=since
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if last is None:
        return
    if not _is(load_access(pk=token.pk), rejected):
        return  # renewed meanwhile: refresh_token() finds the new pair without refreshing
    wait = math.ceil((last + RENEW_EVERY - timezone.now()).total_seconds())
    raise RenewLimited(
        f"Token “{token.reference}” was renewed {int((timezone.now() - last).total_seconds())} s "
        "ago and the portal refuses the new access token too; another refresh would not help. "
        "Check that the call goes to the token's own portal (client_endpoint) and that the app "
        "is still installed there, then try again after Retry-After.",
        max(1, wait),
    )


def _is(token: Token, rejected_sha256: str) -> bool:
    return hmac.compare_digest(digest(token.access_token or ""), rejected_sha256)
