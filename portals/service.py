"""The token service: every change of a token's state goes through here and through
portals/lifecycle.py, and is announced through portals.signals. The refresh flow
(portals.tokens), connecting (portals.connect), install events, the admin and the commands
call these functions; nothing else writes a token's state.

Here: load a token, store a refreshed pair, restore one from the local journal, record a
failure. In portals/lifecycle.py: connect, disable, enable, uninstall, rename.

Two rules keep a rotated pair from ever being lost or undone:
- The pair is written first, in one UPDATE that depends on nothing but the answer, fenced by
  `version` (the one the refresh started from) and bumping it. Everything else (schedule,
  endpoints, failure counters) is computed and written after.
- Staff changes (disable, enable, reference, owner, notes) never bump `version`, so they never
  make an in-flight pair look stale, and the pair's UPDATE sets *active* only if the status is
  still one a new pair should undo.
"""

import contextlib
import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Case, F, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from encryption.crypto import DecryptionError
from ops import metrics
from portals import authservers, journal, schedule, signals
from portals.errors import (
    ConfigurationError,
    OAuthError,
    PairNotStored,
    TokenConfigurationError,
    TokenNotFound,
)
from portals.models import (
    REACTIVATED_BY_A_NEW_PAIR,
    RefreshAttempt,
    Token,
    TokenStatus,
)
from portals.oauth import TokenGrant

log = logging.getLogger(__name__)
Outcome = RefreshAttempt.Outcome
SECRETS = ("access_token", "refresh_token", "app__client_secret")
# Connection-level failures: a fresh connection may succeed. Data errors are not retried.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


# --- Loading ----------------------------------------------------------------------------------
def load(**lookup: object) -> Token:
    """The token with its portal and app; TokenNotFound, or TokenConfigurationError (after
    recording it on the token) when its secrets cannot be decrypted."""
    return _load(Token.objects.select_related("portal", "app"), lookup)


def load_access(**lookup: object) -> Token:
    """load() for reading the access token only, the hot path of get_access_token(): the
    refresh token and the app (with its client secret) are neither fetched nor decrypted."""
    return _load(Token.objects.select_related("portal").defer("refresh_token"), lookup)


def _load(rows: "QuerySet[Token]", lookup: dict[str, object]) -> Token:
    try:
        return rows.get(**lookup)
    except Token.DoesNotExist:
        what = ", ".join(f"{key} “{value}”" for key, value in lookup.items())
        raise TokenNotFound(f"No token with {what}: check the reference.") from None
    except DecryptionError:
        token = Token.objects.select_related("portal", "app").defer(*SECRETS).get(**lookup)
    error = _unreadable(token)
    if token.status != TokenStatus.CONFIG_ERROR:
        record_failure(token, RefreshAttempt.Kind.SCHEDULED, error, timezone.now(), 0)
    else:  # already said: only push the next retry back, quietly
        retry_at = schedule.next_attempt_after_failure(token.failure_count, timezone.now())
        Token.objects.filter(pk=token.pk).update(next_refresh_at=retry_at, claimed_until=None)
    raise TokenConfigurationError(str(error), error.setting)


def _unreadable(token: Token) -> ConfigurationError:
    return ConfigurationError(
        f"A stored secret of token “{token.reference}” (its tokens or its app's client secret) "
        "cannot be decrypted with any key in ENCRYPTION_KEYS. Put the key it was written with "
        "back into ENCRYPTION_KEYS (after the newest one) and restart; the token then recovers "
        "by itself.",
        setting="ENCRYPTION_KEYS",
    )


# --- A refreshed pair -----------------------------------------------------------------------
@sensitive_variables()
def store_refreshed(
    token: Token, grant: TokenGrant, kind: str, started: datetime, duration_ms: int
) -> Token:
    """Store the pair Bitrix24 just issued for `token` (claimed at `token.version`)."""
    entry = _journal(token, grant)
    applied, retries = _store_durably(token, grant)
    if not applied and entry is not None and not entry.exists():
        applied = True  # a replay on this machine stored our entry meanwhile
    if entry is not None:
        entry.remove()
    if not applied:
        log.warning("token %s: a newer pair was stored meanwhile; this one is dropped", token)
        record_attempt(token, kind, Outcome.ROTATED_ELSEWHERE, started, duration_ms)
        return load(pk=token.pk)
    was_failing = token.status != TokenStatus.ACTIVE or token.failure_count > 0
    token = _finish_success(token.pk, grant)
    record_attempt(token, kind, Outcome.SUCCESS, started, duration_ms, store_retries=retries)
    if was_failing:
        signals.token_recovered.send(sender=Token, token=token)
    return token


@sensitive_variables()
def _journal(token: Token, grant: TokenGrant) -> journal.Entry | None:
    try:
        return journal.write(token.pk, token.version, grant)
    except OSError as err:
        # A full or read-only disk must not cost the pair: go on and store it directly.
        log.error("token %s: could not write the local journal (%s)", token, err.strerror)
        return None


@sensitive_variables()
def _store_pair(token_id: int, from_version: int, grant: TokenGrant) -> bool:
    """THE statement: the pair, fenced by version, depending on nothing but the answer."""
    reactivate = When(status__in=REACTIVATED_BY_A_NEW_PAIR, then=Value(TokenStatus.ACTIVE))
    updated = Token.objects.filter(pk=token_id, version=from_version).update(
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        expires_at=grant.expires_at,
        version=F("version") + 1,
        status=Case(reactivate, default=F("status")),
        refresh_started_at=None,
        last_refreshed_at=timezone.now(),
    )
    return updated == 1


@sensitive_variables()
def _store_durably(token: Token, grant: TokenGrant) -> tuple[bool, int]:
    """_store_pair, retried on a fresh connection with backoff for up to TOKEN_STORE_RETRY
    seconds; returns (applied, retries). PairNotStored when the database stays away."""
    deadline = time.monotonic() + settings.TOKEN_STORE_RETRY
    delay, retries = 0.2, 0
    while True:
        try:
            return _store_pair(token.pk, token.version, grant), retries
        except CONNECTION_ERRORS as err:
            retries += 1
            if time.monotonic() + delay > deadline:
                log.error("token %s: new pair not stored after %d tries; it stays in the journal",
                          token, retries)  # fmt: skip
                raise PairNotStored(
                    f"The database was unreachable while storing token “{token}”'s new pair; "
                    "it is kept in the local journal and stored once the database is back."
                ) from None
            log.warning("token %s: storing the new pair failed (%s); retry %d in %.1f s",
                        token, type(err).__name__, retries, delay)  # fmt: skip
        _reconnect()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
        _keep_claim_alive(token)


def _reconnect() -> None:
    with contextlib.suppress(*CONNECTION_ERRORS):
        connection.close()


def _keep_claim_alive(token: Token) -> None:
    """While the pair waits to be stored, renew our refresh claim, so that no other process
    presumes this refresh dead and tries the refresh token Bitrix has already replaced."""
    try:
        Token.objects.filter(pk=token.pk, version=token.version).exclude(
            refresh_started_at=None
        ).update(refresh_started_at=timezone.now())
    except CONNECTION_ERRORS:
        _reconnect()


@sensitive_variables()
def _finish_success(token_id: int, grant: TokenGrant) -> Token:
    """Everything after the pair: endpoints, counters, the next refresh time."""
    token = Token.objects.select_related("portal", "app").defer(*SECRETS).get(pk=token_id)
    now = timezone.now()
    changes = {
        "client_endpoint": grant.client_endpoint or token.client_endpoint,
        "user_id": grant.user_id or token.user_id,
        "failure_count": 0,
        "last_error_code": "",
        "last_error": "",
        "failing_since": None,
        "claimed_until": None,
        "next_refresh_at": schedule.next_refresh_after_success(token.app, grant.expires_at, now),
    }
    if authservers.is_allowed(grant.server_endpoint):
        changes["server_endpoint"] = grant.server_endpoint
    elif grant.server_endpoint:
        log.warning("token %s: ignoring a server_endpoint outside BITRIX_AUTH_SERVERS", token)
    Token.objects.filter(pk=token_id, version=token.version).update(**changes)
    for name, value in changes.items():
        setattr(token, name, value)
    return token


# --- The local journal ----------------------------------------------------------------------
@sensitive_variables()
def replay_journal(token_id: int | None = None) -> int:
    """Store pairs left in this machine's journal (all, or `token_id`'s); returns how many were
    restored. Called at process start and before this machine refreshes a token."""
    restored = 0
    for entry in journal.entries(token_id):
        try:
            grant = entry.read()
        except FileNotFoundError:
            continue  # another process replayed it
        except DecryptionError:
            log.error("journal: %s cannot be decrypted with ENCRYPTION_KEYS", entry.path.name)
            continue
        if restore_pair(entry.token_id, entry.from_version, grant):
            restored += 1
        entry.remove()
    return restored


@sensitive_variables()
def restore_pair(token_id: int, from_version: int, grant: TokenGrant) -> bool:
    """Apply a journal entry if the token is still at `from_version`: the pair is then the
    newest Bitrix issued, even if another machine marked the token *needs re-authorization*
    meanwhile by trying the refresh token it replaced."""
    now = timezone.now()
    if not _store_pair(token_id, from_version, grant):
        log.info("journal: token %s moved on since; the older pair is discarded", token_id)
        return False
    token = _finish_success(token_id, grant)
    record_attempt(token, RefreshAttempt.Kind.SCHEDULED, Outcome.RESTORED, now, 0)
    log.warning("token %s: restored a pair from the local journal", token)
    signals.token_recovered.send(sender=Token, token=token)
    return True


# --- Failures -------------------------------------------------------------------------------
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
    Token.objects.filter(pk=token.pk, version=token.version).update(
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


def record_interrupted(token: Token, kind: str, started: datetime) -> None:
    record_attempt(token, kind, Outcome.INTERRUPTED, started, 0)


def record_attempt(
    token: Token,
    kind: str,
    outcome: str,
    started: datetime | None,
    duration_ms: int,
    error: OAuthError | ConfigurationError | None = None,
    store_retries: int = 0,
) -> None:
    RefreshAttempt.objects.create(
        token_id=token.pk,
        kind=kind,
        outcome=outcome,
        started_at=started or timezone.now(),
        finished_at=timezone.now(),
        error_code=error.code[:100] if error else "",
        error_description=getattr(error, "description", "") if error else "",
        http_status=getattr(error, "http_status", None) if error else None,
        duration_ms=duration_ms,
        store_retries=store_retries,
    )
    metrics.refresh_attempt(kind, outcome, error.code if error else "", duration_ms)
