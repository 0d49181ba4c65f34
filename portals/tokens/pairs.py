"""Storing a pair Bitrix24 has issued, so that it is never lost (docs/bitrix24-protocol.md
§3.3): first the local journal (portals.tokens.journal), then the database through the one
fenced statement (portals.tokens.state.store_pair), retried on a fresh connection through an
outage of up to TOKEN_STORE_RETRY seconds while the refresh claim is kept alive; and replaying
what a journal still holds, at process start and before this machine refreshes a token."""

import contextlib
import logging
import os
import socket
import time
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from encryption.crypto import DecryptionError
from portals.bitrix.oauth import TokenGrant
from portals.models import RefreshAttempt, Token, TokenStatus
from portals.tokens import journal, state
from portals.tokens.errors import PairNotStored
from portals.tokens.history import record_attempt
from portals.tokens.load import load

log = logging.getLogger(__name__)
Outcome = RefreshAttempt.Outcome
# Connection-level failures: a fresh connection may succeed. Data errors are not retried.
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# SQLSTATE 25006 (read_only_sql_transaction): after a failover the address may reach a
# read-only standby for a while; a fresh connection later reaches the new primary.
READ_ONLY = "25006"


def _is_connection_error(err: DatabaseError) -> bool:
    if isinstance(err, CONNECTION_ERRORS):
        return True
    return getattr(err.__cause__, "sqlstate", None) == READ_ONLY


@sensitive_variables()
def store_refreshed(
    token: Token, grant: TokenGrant, kind: str, started: datetime, duration_ms: int
) -> Token:
    """Store the pair Bitrix24 just issued for `token` (claimed at `token.version`, loaded
    with its portal and app)."""
    entry = _journal(token, grant)
    stored, retries = _store_durably(token, grant, journaled=entry is not None)
    replayed = stored is None and entry is not None and not entry.exists()
    if entry is not None:
        entry.remove()
    if stored is None:
        if not replayed:
            log.warning("token %s: a newer pair was stored meanwhile; this one is dropped", token)
        # Ours went in through a replay on this machine, or another pair did: either way the
        # row holds the newest pair now.
        outcome = Outcome.SUCCESS if replayed else Outcome.ROTATED_ELSEWHERE
        record_attempt(token, kind, outcome, started, duration_ms, store_retries=retries)
        return load(pk=token.pk)
    was_failing = token.status != TokenStatus.ACTIVE or token.failure_count > 0
    attempt = (kind, Outcome.SUCCESS, started, duration_ms, retries)
    return state.finish_success(token, grant, stored, attempt, recovered=was_failing)


@sensitive_variables()
def _journal(token: Token, grant: TokenGrant) -> journal.Entry | None:
    try:
        return journal.write(token.pk, token.version, grant)
    except OSError as err:
        # A full or read-only disk must not cost the pair: go on and store it directly.
        log.error("token %s: could not write the local journal (%s)", token, err.strerror)
        return None


@sensitive_variables()
def _store_durably(
    token: Token, grant: TokenGrant, *, journaled: bool
) -> tuple[state.StoredPair | None, int]:
    """state.store_pair, retried on a fresh connection with backoff for up to TOKEN_STORE_RETRY
    seconds; returns (the stored row or None, retries). PairNotStored when the database stays
    away: the pair then waits in the journal or, when the journal could not be written, in
    memory (`_HELD`), and the journal loop (portals.tokens.replayer) retries it either way."""
    deadline = time.monotonic() + settings.TOKEN_STORE_RETRY
    delay, retries = 0.2, 0
    while True:
        try:
            return state.store_pair(token.pk, token.version, grant), retries
        except DatabaseError as err:
            if not _is_connection_error(err):
                raise
            retries += 1
            if time.monotonic() + delay > deadline:
                raise _not_stored(token, grant, retries, journaled) from None
            log.warning("token %s: storing the new pair failed (%s); retry %d in %.1f s",
                        token, type(err).__name__, retries, delay)  # fmt: skip
        _reconnect()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
        try:
            state.keep_claim_alive(token)
        except DatabaseError as err:
            if not _is_connection_error(err):
                raise
            _reconnect()


def _not_stored(token: Token, grant: TokenGrant, tries: int, journaled: bool) -> PairNotStored:
    if journaled:
        log.error("token %s: new pair not stored after %d tries; it stays in the journal",
                  token, tries)  # fmt: skip
        return PairNotStored(
            f"The database was unreachable while storing token “{token}”'s new pair; "
            "it is kept in the local journal and stored once the database is back."
        )
    _HELD[(token.pk, token.version)] = grant
    _HELD_SINCE[(token.pk, token.version)] = (token.reference, timezone.now())
    host = socket.gethostname()
    log.error("token %s: new pair not stored after %d tries and the journal could not be "
              "written: it waits in memory on %s, retried in the background; it is lost if "
              "this process stops", token, tries, host)  # fmt: skip
    return PairNotStored(
        f"The database was unreachable while storing token “{token}”'s new pair, and the local "
        f"journal could not be written: the pair waits in this process's memory on {host} and "
        "is retried in the background until the database takes it. Do not stop this process "
        "before then (free the disk under VAR_DIR meanwhile)."
    )


# Pairs that neither the database nor the journal took: (token id, from version) -> pair. Only
# this process has them; the journal loop retries them with the journal's entries.
_HELD: dict[tuple[int, int], TokenGrant] = {}
# What may be shown of them (never the pair itself): (token reference, held since).
_HELD_SINCE: dict[tuple[int, int], tuple[str, datetime]] = {}


class HeldPair(NamedTuple):
    """A pair waiting in a process's memory, as the token page and /health/ name it."""

    token_id: int
    reference: str
    host: str
    pid: int
    since: datetime

    def as_reply(self) -> dict[str, object]:
        """JSON for a Celery remote-control reply (portals.tokens.held)."""
        return {**self._asdict(), "since": self.since.isoformat()}

    @classmethod
    def from_reply(cls, item: dict[str, Any]) -> "HeldPair":
        since = datetime.fromisoformat(str(item["since"]))
        host, reference = str(item["host"]), str(item["reference"])
        return cls(int(item["token_id"]), reference, host, int(item["pid"]), since)


def held_pairs() -> list[HeldPair]:
    """The pairs waiting in this process's memory: which token, where, since when."""
    host, pid = socket.gethostname(), os.getpid()
    return [
        HeldPair(token_id, reference, host, pid, since)
        for (token_id, _version), (reference, since) in list(_HELD_SINCE.items())
    ]


def held_in_memory() -> int:
    """How many pairs wait in this process's memory (neither stored nor journaled)."""
    return len(_HELD)


@sensitive_variables()
def retry_held() -> int:
    """Store (or drop as stale) the pairs held in memory; returns how many were stored. A
    database still away raises, and they stay held."""
    stored = 0
    for (token_id, from_version), grant in list(_HELD.items()):
        if restore_pair(token_id, from_version, grant):
            stored += 1
        del _HELD[(token_id, from_version)]
        _HELD_SINCE.pop((token_id, from_version), None)
    return stored


def _reconnect() -> None:
    with contextlib.suppress(*CONNECTION_ERRORS):
        connection.close()


# --- The local journal ----------------------------------------------------------------------
@sensitive_variables()
def replay_journal(token_id: int | None = None, *, settled_for: float = 0.0) -> int:
    """Store pairs left in this machine's journal (all, or `token_id`'s; with `settled_for`,
    only entries at least that old); returns how many were restored. Called at process start,
    before this machine refreshes a token, and by the journal loop."""
    restored = 0
    for entry in journal.entries(token_id, settled_for=settled_for):
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
    stored = state.store_pair(token_id, from_version, grant)
    if stored is None:
        log.info("journal: token %s moved on since; the older pair is discarded", token_id)
        return False
    token = Token.objects.select_related("portal", "app").defer(*state.SECRETS).get(pk=token_id)
    attempt = (RefreshAttempt.Kind.SCHEDULED, Outcome.RESTORED, now, 0, 0)
    state.finish_success(token, grant, stored, attempt, recovered=True)
    log.warning("token %s: restored a pair from the local journal", token)
    return True
