"""The periodic sweep: find due tokens with one indexed query and enqueue one task each.

One PeriodicTask (not one per portal: django-celery-beat reloads every row on any change)
runs sweep() every minute. A sweep claims the tokens it enqueues (`claimed_until`), under
`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, so a second sweep or a second beat never
enqueues the same token twice. At most REFRESH_MAX_PER_SWEEP tokens go out per sweep: after
an outage or a beat restart, the backlog drains at that rate instead of in one burst.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError

from core import publish
from core.dbclock import DbNow
from portals.bitrix.errors import OAuthError
from portals.models import SCHEDULED_STATUSES, RefreshAttempt, Token, refresh_lease
from portals.tokens import state
from portals.tokens.access import db_now, refresh_token
from portals.tokens.errors import TokenError, TokenNotFound
from portals.tokens.load import load

log = logging.getLogger(__name__)
# The tasks' registered names (contracts: queued messages and periodic-task rows carry them).
SWEEP_TASK = "portals.tasks.sweep_due_tokens"
REFRESH_TASK = "portals.tasks.refresh_due_token"


def claim_due_tokens(now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Claim up to `limit` due tokens, most overdue first, and return their ids."""
    return state.claim_due(now, limit or settings.REFRESH_MAX_PER_SWEEP)


def sweep(now: datetime | None = None) -> int:
    """Claim due tokens and enqueue a refresh task for each; returns how many. Claims whose
    task was not enqueued (the broker went away mid-sweep) are released at once, so the next
    sweep enqueues them instead of skipping them until the claims expire."""
    ids = claim_due_tokens(now)
    try:
        if ids:  # one bounded connection for all of them (a catch-up enqueues thousands)
            args = [(token_id,) for token_id in ids]
            publish.send_many(REFRESH_TASK, args, expires=settings.REFRESH_TASK_EXPIRES)
    except publish.PartlySent as err:
        state.release_sweep_claims(ids[err.sent :])
        log.warning("sweep: %d refresh(es) not enqueued; their claims are released",
                    len(ids) - err.sent)  # fmt: skip
        raise
    if ids:
        log.info("sweep: enqueued %d token refresh(es)", len(ids))
    return len(ids)


def refresh_if_due(token_id: int, now: datetime | None = None) -> str:
    """The task body: refresh one token if it is still due. Returns what happened, in a word.

    Re-checking due-ness makes a duplicate or redelivered task harmless: once one run has
    refreshed the token, its next refresh time lies in the future and the others skip. The
    sweep's claim ends here whatever happened, so the token is never kept from the next sweep
    (a successful store releases it in the same statement).
    """
    outcome = "failed"
    try:
        outcome = _refresh_if_due(token_id, now)
    finally:
        if outcome != "refreshed":
            _release(token_id)
    return outcome


def _refresh_if_due(token_id: int, now: datetime | None) -> str:
    try:
        token = load(pk=token_id)
    except TokenNotFound:
        return "skipped"
    except TokenError as err:  # its secrets cannot be read: recorded on the token
        log.warning("token %s: not refreshed: %s", token_id, type(err).__name__)
        return "failed"
    if token.status not in SCHEDULED_STATUSES:
        return "skipped"
    now = now or db_now(token)  # the database's clock, read with the row
    interrupted = token.refresh_started_at and token.refresh_started_at < now - refresh_lease()
    if not interrupted and (token.next_refresh_at is None or token.next_refresh_at > now):
        return "not-due"
    try:
        result = refresh_token(token, RefreshAttempt.Kind.SCHEDULED, wait=False)
    except (OAuthError, TokenError) as err:
        # Already recorded on the token and escalated by the token service.
        log.info(
            "token %s: scheduled refresh failed: %s",
            token.reference,
            err.code if isinstance(err, OAuthError) else type(err).__name__,
        )
        return "failed"
    return "refreshed" if result is not None else "busy"


def _release(token_id: int) -> None:
    try:
        state.release_sweep_claim(token_id)
    except DatabaseError as err:  # the database is away: the claim expires by itself
        log.warning("token %s: sweep claim not released (%s)", token_id, type(err).__name__)


def lease_remaining(token_id: int) -> float:
    """Seconds until another process's refresh claim on the token is presumed dead (by the
    database's clock)."""
    row = Token.objects.filter(pk=token_id).annotate(db_now=DbNow())
    found = row.values_list("refresh_started_at", "db_now").first()
    if found is None or found[0] is None:
        return 0.0
    lease_end = found[0] + timedelta(seconds=settings.TOKEN_REFRESH_LEASE)
    return max(0.0, (lease_end - found[1]).total_seconds())
