"""The periodic sweep: find due tokens with one indexed query and enqueue them in batches.

One PeriodicTask (not one per portal: django-celery-beat reloads every row on any change)
runs sweep() every minute. A sweep claims the tokens it enqueues (`claimed_until`), under
`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, so a second sweep or a second beat never
enqueues the same token twice. At most REFRESH_MAX_PER_SWEEP tokens go out per sweep: after
an outage or a beat restart, the backlog drains at that rate instead of in one burst. They go
out as tasks of up to REFRESH_BATCH_SIZE tokens (batches()), over one broker connection: a
message costs about half a millisecond to publish here, a token's share of one 0.05 ms.
Each task refreshes its tokens one after the other (refresh_batch), each claimed and read in
one statement (portals.tokens.state.claim_scheduled).
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError

from core import publish
from core.dbclock import DbNow
from encryption.crypto import DecryptionError
from portals.bitrix.errors import OAuthError
from portals.models import SCHEDULED_STATUSES, RefreshAttempt, Token, refresh_lease
from portals.tokens import pairs, state
from portals.tokens.access import db_now, refresh_claimed, refresh_token
from portals.tokens.errors import TokenError, TokenNotFound
from portals.tokens.load import load

log = logging.getLogger(__name__)
# The tasks' registered names (contracts: queued messages and periodic-task rows carry them).
SWEEP_TASK = "portals.tasks.sweep_due_tokens"
REFRESH_TASK = "portals.tasks.refresh_due_token"  # one token: busy retries, older messages
REFRESH_BATCH_TASK = "portals.tasks.refresh_due_tokens"
# A sweep spreads its tokens over at least this many tasks when it can (REFRESH_BATCH_SIZE
# caps the tokens per task): more than any deployment's worker slots, so none stays idle.
SPREAD = 64


def claim_due_tokens(now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Claim up to `limit` due tokens, most overdue first, and return their ids."""
    return state.claim_due(now, limit or settings.REFRESH_MAX_PER_SWEEP)


def sweep(now: datetime | None = None) -> int:
    """Claim due tokens and enqueue refresh tasks for them; returns how many tokens. Claims
    whose task was not enqueued (the broker went away mid-sweep) are released at once, so the
    next sweep enqueues them instead of skipping them until the claims expire."""
    ids = claim_due_tokens(now)
    sent = 0  # tokens whose message went out
    try:
        if ids:
            # One bounded connection and producer for all of them, and several tokens per
            # message: a catch-up enqueues thousands.
            with publish.producer() as producer:
                for chunk in batches(ids, settings.REFRESH_BATCH_SIZE):
                    expires = settings.REFRESH_TASK_EXPIRES
                    publish.send(REFRESH_BATCH_TASK, (chunk,), expires=expires, producer=producer)
                    sent += len(chunk)
    finally:
        if sent < len(ids):
            state.release_sweep_claims(ids[sent:])
            log.warning("sweep: %d refresh(es) not enqueued; their claims are released",
                        len(ids) - sent)  # fmt: skip
    if ids:
        log.info("sweep: enqueued %d token refresh(es)", len(ids))
    return len(ids)


def batches(ids: list[int], most: int) -> list[list[int]]:
    """`ids` in order (most overdue first), in chunks of up to `most`, but over at least
    SPREAD chunks while that leaves more than one token per chunk."""
    size = max(1, min(most, len(ids) // SPREAD))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def refresh_batch(token_ids: list[int]) -> dict[str, int]:
    """The batch task's body: refresh_if_due() for each token, one after the other; a token
    another process is refreshing goes to the one-token task, retried when that claim is
    over (or presumed dead). Returns how many of each outcome."""
    outcomes: dict[str, int] = {}
    for token_id in token_ids:
        outcome = refresh_if_due(token_id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "busy":
            countdown = lease_remaining(token_id) + 1
            publish.send(REFRESH_TASK, (token_id,), countdown=countdown)
    return outcomes


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
    if now is None:  # the database's clock judges (a test may pass its own `now`)
        claimed = None
        try:
            pairs.replay_journal(token_id)  # a pair this machine could not store earlier, first
            claimed = state.claim_scheduled(token_id)  # claim and read: one statement
        except OSError:
            pass  # an unreadable journal: refresh_token() below records it on the token
        except DecryptionError:
            pass  # load() below records it
        if claimed is not None:
            token, interrupted = claimed
            kind = RefreshAttempt.Kind.SCHEDULED
            return _attempt(token, lambda: refresh_claimed(token, kind, interrupted=interrupted))
    # Not claimed: find out why (or, with `now`, decide here and claim as any caller does).
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
    stale = token.refresh_started_at and token.refresh_started_at < now - refresh_lease()
    if not stale and (token.next_refresh_at is None or token.next_refresh_at > now):
        return "not-due"
    return _attempt(token, lambda: refresh_token(token, RefreshAttempt.Kind.SCHEDULED, wait=False))


def _attempt(token: Token, run: Callable[[], Token | None]) -> str:
    try:
        result = run()
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
