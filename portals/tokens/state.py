"""The only writer of a token's state. Every statement that changes a Token row's pair,
version, status, schedule, claims, endpoints, counters or event bindings is in this module;
what happened is announced through portals.tokens.signals (notifications listens). Staff fields
(reference, owner, notes) are written here too, by `update_staff_fields`, and nothing else.

Callers: the refresh flow (portals.tokens.access, .pairs, .load, .sweep), connecting
(portals.connect), the REST client's verified portal move (portals.rest), the admin and the
commands. They decide; this module writes.

Two rules keep a rotated pair from ever being lost or undone:
- The pair is written first, in one UPDATE that depends on nothing but the answer, fenced by
  `version` (the one the refresh started from) and bumping it (`store_pair`). Everything else
  (schedule, endpoints, failure counters) is computed and written after (`finish_success`).
- Staff changes (disable, enable, reference, owner, notes) never bump `version`, so they never
  make an in-flight pair look stale, and the pair's UPDATE sets *active* only if the status is
  still one a new pair should undo.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from core.dbclock import DbNow
from encryption.crypto import DecryptionError
from portals import addresses
from portals.bitrix import authservers
from portals.bitrix.errors import ConfigurationError, OAuthError
from portals.bitrix.oauth import TokenGrant
from portals.models import (
    REACTIVATED_BY_A_NEW_PAIR,
    SCHEDULED_STATUSES,
    Portal,
    RefreshAttempt,
    Token,
    TokenStatus,
    refresh_lease,
)
from portals.tokens import rows, schedule, signals
from portals.tokens.history import record_attempt

log = logging.getLogger(__name__)
Outcome = RefreshAttempt.Outcome
# Encrypted columns a caller that only changes state need not read (nor decrypt).
SECRETS = ("access_token", "refresh_token", "app__client_secret")
STAFF_FIELDS = frozenset({"reference", "owner", "owner_id", "notes"})


# --- A refresh: the claim, the pair, what follows -------------------------------------------
def claim_refresh(token: Token) -> bool:
    """Compare-and-set the refresh stamp: exactly one caller wins (a live stamp, or a version
    that moved, makes the UPDATE touch nothing). Whether a stamp is stale (older than
    TOKEN_REFRESH_LEASE) is judged by the database's clock, as is the new stamp: a process
    whose clock runs ahead cannot take over a live claim."""
    claimable = Token.objects.filter(pk=token.pk, version=token.version)
    if token.refresh_started_at is None:
        claimable = claimable.filter(refresh_started_at__isnull=True)
    else:
        claimable = claimable.filter(
            refresh_started_at=token.refresh_started_at,
            refresh_started_at__lt=DbNow() - refresh_lease(),
        )
    if claimable.update(refresh_started_at=DbNow()) != 1:
        return False
    # The stamp's value is only reported (the attempt's start); the claim is the row's.
    token.refresh_started_at = getattr(token, "db_now", None) or timezone.now()
    return True


@dataclass(frozen=True)
class StoredPair:
    """The row as the pair's UPDATE left it (read back in the same statement): what
    finish_success needs, so it reads nothing again."""

    version: int
    status: str
    failure_count: int
    failing_since: datetime | None
    client_endpoint: str
    user_id: int | None
    app_status: str
    db_now: datetime


@sensitive_variables()
def store_pair(token_id: int, from_version: int, grant: TokenGrant) -> StoredPair | None:
    """THE statement: the pair, fenced by version, depending on nothing but the answer. None
    when the version moved (a newer pair is stored: ours is dropped)."""
    now, now_params = rows.now_sql()
    reactivated = list(REACTIVATED_BY_A_NEW_PAIR)
    values = rows.db_params(
        Token,
        {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_at": grant.expires_at,
        },
    )
    sql = rows.store_pair_sql(now, len(reactivated))
    params = [*values, *reactivated, TokenStatus.ACTIVE, *now_params, token_id, from_version]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *now_params])
        row = cursor.fetchone()
    if row is None:
        return None
    version, status, failures, failing_since, endpoint, user_id, app_status, db_now = row
    return StoredPair(
        version=version,
        status=status,
        failure_count=failures,
        failing_since=rows.timestamp(failing_since),
        client_endpoint=endpoint,
        user_id=user_id,
        app_status=app_status,
        db_now=rows.timestamp(db_now),
    )


def keep_claim_alive(token: Token) -> None:
    """While a pair waits to be stored, renew the refresh claim, so that no other process
    presumes the refresh dead and tries the refresh token Bitrix has already replaced."""
    Token.objects.filter(pk=token.pk, version=token.version).exclude(
        refresh_started_at=None
    ).update(refresh_started_at=DbNow())


@sensitive_variables()
def finish_success(
    token: Token,
    grant: TokenGrant,
    stored: StoredPair,
    attempt: tuple[str, str, datetime, int, int],
    *,
    recovered: bool,
) -> Token:
    """Everything after the pair, in one transaction: endpoints, counters, the next refresh
    time, and the attempt's audit row (`attempt`: kind, outcome, started, duration_ms,
    store_retries). `token` is the row the refresh started from, with its portal and app;
    `stored` is the row as the pair's UPDATE left it. A recovery is announced when the caller
    knew the token was failing (`recovered`) or when `stored` says so: another process may
    have recorded a failure (and opened an incident) while this one's pair was on its way,
    and only the database knows."""
    recovered = recovered or stored.failure_count > 0 or stored.failing_since is not None
    changes = {
        "client_endpoint": grant.client_endpoint or stored.client_endpoint,
        "user_id": grant.user_id or stored.user_id,
        "app_status": grant.status or stored.app_status,
        "failure_count": 0,
        "last_error_code": "",
        "last_error": "",
        "failing_since": None,
        "claimed_until": None,
        # The database's clock, like the sweep that reads it.
        "next_refresh_at": schedule.next_refresh_after_success(
            token.app, grant.expires_at, stored.db_now
        ),
    }
    if authservers.is_allowed(grant.server_endpoint):
        changes["server_endpoint"] = grant.server_endpoint
    elif grant.server_endpoint:
        log.warning("token %s: ignoring a server_endpoint outside BITRIX_AUTH_SERVERS", token)
    token.access_token, token.refresh_token = grant.access_token, grant.refresh_token
    token.expires_at, token.version = grant.expires_at, stored.version
    token.refresh_started_at, token.last_refreshed_at = None, stored.db_now
    token.status = stored.status
    for name, value in changes.items():
        setattr(token, name, value)
    kind, outcome, started, duration_ms, retries = attempt
    with transaction.atomic():  # one commit for the schedule and the audit row
        Token.objects.filter(pk=token.pk, version=stored.version).update(**changes)
        record_attempt(token, kind, outcome, started, duration_ms, store_retries=retries)
    if recovered:
        signals.token_recovered.send(sender=Token, token=token)
    return token


def record_failure(
    token: Token,
    kind: str,
    error: OAuthError | ConfigurationError,
    started: datetime,
    duration_ms: int,
    *,
    status: str = TokenStatus.REFRESH_FAILING,
    next_refresh_at: datetime | None = None,
) -> None:
    """A refresh failed: the stored pair stays exactly as it was; the claim is released."""
    if isinstance(error, ConfigurationError):
        status = TokenStatus.CONFIG_ERROR
        next_refresh_at = schedule.next_attempt_after_failure(token.failure_count + 1, started)
    now = timezone.now()
    message = error.message()[:2000]
    recorded = Token.objects.filter(pk=token.pk, version=token.version).update(
        status=status,
        refresh_started_at=None,
        claimed_until=None,
        failure_count=F("failure_count") + 1,
        last_error_code=error.code[:100],
        last_error=message,
        failing_since=Coalesce(F("failing_since"), now),
        last_failure_at=now,
        next_refresh_at=next_refresh_at,
    )
    if not recorded:
        # A newer pair was stored meanwhile (the version moved): this failure was about the
        # pair it replaced, and the token is fine. Nothing to record, nobody to alert.
        log.info("token %s: a failure of a replaced pair is ignored", token)
        return
    token.status, token.failure_count = status, token.failure_count + 1
    token.failing_since, token.last_failure_at = token.failing_since or now, now
    token.last_error_code, token.last_error = error.code[:100], message
    token.next_refresh_at, token.refresh_started_at = next_refresh_at, None
    outcome = Outcome.CONFIG_ERROR if isinstance(error, ConfigurationError) else None
    if outcome is None:
        outcome = Outcome.PERMANENT_ERROR if error.permanent else Outcome.TRANSIENT_ERROR
    record_attempt(token, kind, outcome, started, duration_ms, error)
    signals.token_failed.send(
        sender=Token, token=token, error=error, next_attempt_at=next_refresh_at
    )


def record_unreadable(token: Token, error: ConfigurationError) -> None:
    """A stored secret cannot be decrypted: a configuration error, said once; while it lasts,
    only the next retry is pushed back, quietly."""
    if token.status != TokenStatus.CONFIG_ERROR:
        record_failure(token, RefreshAttempt.Kind.SCHEDULED, error, timezone.now(), 0)
        return
    retry_at = schedule.next_attempt_after_failure(token.failure_count, timezone.now())
    Token.objects.filter(pk=token.pk).update(next_refresh_at=retry_at, claimed_until=None)


# --- The sweep's claims -----------------------------------------------------------------------
def claim_scheduled(token_id: int) -> tuple[Token, bool] | None:
    """The sweep's task claims the refresh of one token, if it is due (its schedule has come,
    or a refresh claim outlived TOKEN_REFRESH_LEASE), and reads it with its portal and app:
    on PostgreSQL in one statement. Returns the token (`refresh_started_at` is our claim,
    `db_now` the database's time) and whether it takes over an interrupted refresh; None when
    it is not due, not refreshable or claimed by a live refresh. DecryptionError when a secret
    cannot be read (the claim undone)."""
    if connection.vendor != "postgresql":
        return _claim_scheduled_orm(token_id)
    lease = settings.TOKEN_REFRESH_LEASE
    sql, params = rows.claim_due_sql(token_id, lease, list(SCHEDULED_STATUSES))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    try:
        token, previous = rows.claimed_token(row)
    except DecryptionError:
        Token.objects.filter(pk=token_id).update(refresh_started_at=None)  # ours: undone
        raise
    return token, previous is not None


def _claim_scheduled_orm(token_id: int) -> tuple[Token, bool] | None:
    """claim_scheduled() for SQLite: a read and the compare-and-set claim, in one transaction."""
    with transaction.atomic():
        rows_ = Token.objects.select_related("portal", "app").annotate(db_now=DbNow())
        token = rows_.filter(pk=token_id, status__in=SCHEDULED_STATUSES).first()
        if token is None:
            return None
        started, now = token.refresh_started_at, token.db_now
        interrupted = started is not None and started < now - refresh_lease()
        due = started is None and token.next_refresh_at is not None and token.next_refresh_at <= now
        usable = token.status == TokenStatus.CONFIG_ERROR or bool(token.refresh_token)
        if not (interrupted or due) or not usable or not claim_refresh(token):
            return None
    return token, interrupted


def claim_due(now: datetime | None, limit: int) -> list[int]:
    """Claim up to `limit` due tokens for the sweep, most overdue first; their ids. Due-ness
    and the claim are judged on the database's clock unless a test passes `now`."""
    # The claim outlives the task's expiry, so a task lost with a broker is retried by a later
    # sweep, never while it may still run.
    length = settings.REFRESH_TASK_EXPIRES + 60
    if connection.vendor == "postgresql":
        # One statement: no list of ids goes back and forth (a catch-up claims thousands).
        clock, clock_params = ("%s", [now]) if now is not None else rows.now_sql()
        statuses, lease = [str(s) for s in SCHEDULED_STATUSES], settings.TOKEN_REFRESH_LEASE
        params = [*clock_params, *statuses, lease, limit, *statuses, limit, limit, length]
        with connection.cursor() as cursor:
            cursor.execute(rows.claim_sweep_sql(clock, statuses), params)
            return [token_id for (token_id,) in cursor.fetchall()]
    at = DbNow() if now is None else now
    claimed_until = at + timedelta(seconds=length)
    with transaction.atomic():
        # Two queries, each on its own partial index: interrupted refreshes (a handful) first,
        # then the schedule, most overdue first.
        ids = _lock(Token.objects.interrupted(at), limit)
        ids += _lock(Token.objects.scheduled(at).exclude(pk__in=ids), limit - len(ids))
        if ids:
            Token.objects.filter(pk__in=ids).update(claimed_until=claimed_until)
    return ids


def _lock(tokens: "QuerySet[Token]", limit: int) -> list[int]:
    if limit <= 0:
        return []
    rows = tokens.order_by("next_refresh_at").select_for_update(skip_locked=True)
    return list(rows.values_list("pk", flat=True)[:limit])


def release_sweep_claim(token_id: int) -> None:
    """The sweep's claim (`claimed_until`) ends with its task, whatever the task found."""
    Token.objects.filter(pk=token_id).exclude(claimed_until=None).update(claimed_until=None)


def release_sweep_claims(token_ids: list[int]) -> None:
    """Claims the sweep took but could not enqueue (the broker went away): free at once."""
    Token.objects.filter(pk__in=token_ids).update(claimed_until=None)


def claim_uninstall_check(token_id: int, every: timedelta) -> bool:
    """Make the token due now, so one refresh tells whether its app is still installed; at
    most once per `every` (a conditional UPDATE: of two callers at once, one wins)."""
    now = timezone.now()
    claimed = (
        Token.objects.filter(pk=token_id, status__in=SCHEDULED_STATUSES)
        .filter(Q(uninstall_checked_at=None) | Q(uninstall_checked_at__lt=now - every))
        .update(uninstall_checked_at=now, next_refresh_at=now)
    )
    return claimed == 1


# --- Connecting -----------------------------------------------------------------------------
@sensitive_variables()
def store_connection(
    token: Token,
    grant: TokenGrant,
    *,
    scope: str,
    started: datetime,
    duration_ms: int,
    application_token: str | None = None,
    kind: str = RefreshAttempt.Kind.CODE_EXCHANGE,
) -> Token:
    """Store the pair of a code exchange (or of an install event, `kind` EVENT) on `token`
    (new, or re-connected). A new pair starts a new chain: `version` moves on, so a refresh
    still in flight on the old chain drops its pair. Runs inside the connect transaction, with
    `token`'s row locked (select_for_update)."""
    now = timezone.now()
    if application_token:
        token.application_token = application_token
    token.access_token, token.refresh_token = grant.access_token, grant.refresh_token
    token.expires_at, token.scope = grant.expires_at, scope
    token.server_endpoint, token.client_endpoint = grant.server_endpoint, grant.client_endpoint
    token.user_id, token.status = grant.user_id, TokenStatus.ACTIVE
    token.app_status = grant.status or token.app_status
    token.version, token.last_refreshed_at = token.version + 1, now
    token.failure_count, token.last_error_code, token.last_error = 0, "", ""
    token.failing_since = token.refresh_started_at = token.claimed_until = None
    token.next_refresh_at = schedule.next_refresh_after_success(token.app, grant.expires_at, now)
    token.save()
    record_attempt(token, kind, Outcome.SUCCESS, started, duration_ms)
    signals.token_recovered.send(sender=Token, token=token)
    return token


def record_scope(token_id: int, scope: str) -> None:
    """The scope Bitrix24 says the token has (app.info after a connect, §7)."""
    Token.objects.filter(pk=token_id).update(scope=scope[:500])


def record_binding(token_id: int, error: str = "") -> None:
    """Whether the uninstall and update handlers are bound (portals.connect.eventbind): bound
    now when `error` is empty, else why not."""
    if error:
        Token.objects.filter(pk=token_id).update(events_bind_error=error)
    else:
        now = timezone.now()
        Token.objects.filter(pk=token_id).update(events_bound_at=now, events_bind_error="")


def mark_uninstalled(token: Token, error: OAuthError, *, clean: bool) -> None:
    """The app was removed from the portal (ONAPPUNINSTALL): every stored token is dead. One
    permanent failure is recorded (one incident, one alert); with `clean` the secrets go too,
    and `version` moves on so a refresh in flight cannot store a pair afterwards."""
    if token.status == TokenStatus.UNINSTALLED and token.failure_count:
        log.info("token %s: already marked uninstalled", token)
    else:
        kind, now = RefreshAttempt.Kind.EVENT, timezone.now()
        record_failure(token, kind, error, now, 0, status=TokenStatus.UNINSTALLED)
    if clean:
        Token.objects.filter(pk=token.pk).update(
            access_token="",
            refresh_token="",
            application_token="",
            expires_at=None,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )


# --- Staff ------------------------------------------------------------------------------------
def disable(token_ids: list[int]) -> int:
    """Stop refreshing. The pair stays; a refresh in flight still stores its pair but leaves
    the token disabled (no version bump here, see the module docstring)."""
    tokens = list(Token.objects.filter(pk__in=token_ids).defer(*SECRETS))
    count = Token.objects.filter(pk__in=token_ids).update(
        status=TokenStatus.DISABLED, next_refresh_at=None, claimed_until=None
    )
    for token in tokens:
        signals.token_disabled.send(sender=Token, token=token)
    return count


def enable(token_ids: list[int]) -> int:
    """Refresh on schedule again, starting now, and close the token's incident. Tokens never
    connected (no refresh token) stay as they are. A live refresh claim is left alone."""
    enabled = Token.objects.filter(pk__in=token_ids).exclude(status=TokenStatus.AWAITING_CODE)
    tokens = list(enabled.select_related("portal").defer(*SECRETS))
    count = enabled.update(
        status=TokenStatus.ACTIVE,
        next_refresh_at=timezone.now(),
        claimed_until=None,
        failure_count=0,
        failing_since=None,
        last_error_code="",
        last_error="",
    )
    for token in tokens:
        signals.token_recovered.send(sender=Token, token=token)
    return count


def update_staff_fields(token_id: int, **fields: object) -> None:
    """What staff own on a token: its reference, owner and notes; nothing else."""
    if unknown := set(fields) - STAFF_FIELDS:
        raise ValueError(f"Staff may not change {', '.join(sorted(unknown))} on a token.")
    Token.objects.filter(pk=token_id).update(**fields, updated_at=timezone.now())


# --- A renamed portal -------------------------------------------------------------------------
def move_portal(
    member_id: str, domain: str, client_endpoint: str, move_aside: int | None
) -> Portal:
    """Bitrix24 confirmed that the portal `member_id` now lives at `domain` (it was renamed;
    docs/bitrix24-protocol.md §4.3): store the new address on the portal and the new REST root
    on its tokens. Neither is a pair change, so `version` stays. `move_aside`: the dead portal
    row that holds the address (portals.addresses.free_for decided it, before)."""
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(member_id=member_id)
        if move_aside is not None:
            addresses.move_aside(move_aside, domain, member_id)
        old, portal.domain = portal.domain, domain
        Portal.objects.filter(pk=portal.pk).update(domain=domain, updated_at=timezone.now())
        Token.objects.filter(portal_id=portal.pk).update(client_endpoint=client_endpoint)
    if old != domain:
        log.warning("portal %r was renamed to %r", old, domain)
    return portal
