"""Counting what happens, for GET /metrics: one call per event, from anywhere, any machine.

    from ops.record import metrics
    metrics.count("b24keeper_rest_calls_total", outcome="success")
    metrics.observe("b24keeper_refresh_duration_seconds", 0.42)

Running totals live in the database (ops.Counter), so they are global (a worker on another
machine counts into the same rows the scraped web process reads), survive restarts, and never
decrease: deleting old history rows does not touch them. A histogram is kept as one counter per
bucket (not cumulative), its sum and its count; ops.observe.exposition adds the buckets up.

Each process adds its increments up in memory and writes them every METRICS_FLUSH_SECONDS
(10) in one `INSERT … ON CONFLICT DO UPDATE SET value = value + n` (a daemon thread), and at
shutdown (atexit; a Celery pool process: ops.observe.signals). So a refresh costs no statement
of its own; a SIGKILLed process loses at most what it counted since its last flush. With
METRICS_FLUSH_SECONDS=0 every event is written at once, in the caller's connection (the tests).

Counting never breaks the work it counts: a database error here is logged, and the increments
wait for the next flush.
"""

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import DatabaseError, connection, transaction

log = logging.getLogger(__name__)

# The metric names are a contract (README, alert rules): keep them exactly.
REFRESH_TOTAL = "b24keeper_refresh_total"
REFRESH_FAILURES_TOTAL = "b24keeper_refresh_failures_total"
REFRESH_DURATION = "b24keeper_refresh_duration_seconds"
DELIVERIES_TOTAL = "b24keeper_deliveries_total"
REST_CALLS_TOTAL = "b24keeper_rest_calls_total"
RENEWALS_TOTAL = "b24keeper_renewals_total"

# Seconds; a Bitrix24 call is cut at BITRIX_CONNECT_TIMEOUT + BITRIX_READ_TIMEOUT (20 s).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, float("inf"))
# Attempts that called Bitrix24 (the histogram is of that call) and attempts that failed.
_CALLED = {"success", "rotated_elsewhere", "transient_error", "permanent_error"}
_FAILED = {"transient_error", "permanent_error", "config_error"}
_MAX_LABEL = 100

Increment = tuple[str, str, float]  # (name, labels as canonical JSON, amount)


def series(name: str, labels: dict[str, object]) -> Increment:
    """One increment of 1 to `name{labels}` (labels cut to a sane length)."""
    clean = {key: str(value)[:_MAX_LABEL] for key, value in labels.items()}
    return name, json.dumps(clean, sort_keys=True, ensure_ascii=False), 1.0


def count(name: str, amount: float = 1, **labels: object) -> None:
    """Add `amount` to the counter `name{labels}`."""
    key, encoded, _ = series(name, labels)
    add([(key, encoded, float(amount))])


def observe(
    name: str, value: float, buckets: tuple[float, ...] = DURATION_BUCKETS, **labels: object
) -> None:
    """Record one observation of the histogram `name`."""
    add(_observation(name, value, buckets, labels))


def _observation(
    name: str, value: float, buckets: tuple[float, ...], labels: dict[str, object]
) -> list[Increment]:
    bound = next(b for b in buckets if value <= b)
    bucket = series(f"{name}_bucket", {**labels, "le": le_label(bound)})
    total = series(f"{name}_sum", labels)
    return [bucket, (total[0], total[1], float(value)), series(f"{name}_count", labels)]


def le_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


# --- The events b24keeper counts (one call each from the code that does the work) ------------
def refresh_attempt(kind: str, outcome: str, error_code: str, duration_ms: int) -> None:
    """A refresh attempt was recorded (portals.tokens.history.record_attempt)."""
    if kind == "code_exchange":
        return  # connecting a portal is not a refresh
    increments = [series(REFRESH_TOTAL, {"outcome": outcome})]
    if outcome in _FAILED:
        increments.append(series(REFRESH_FAILURES_TOTAL, {"code": error_code or outcome}))
    if outcome in _CALLED:
        increments += _observation(REFRESH_DURATION, duration_ms / 1000, DURATION_BUCKETS, {})
    add(increments)


def delivery(provider: str, status: str, deliveries: int = 1) -> None:
    """`deliveries` deliveries on a `provider` channel ended as `status` (sent, failed) or
    were put back to retry (retried)."""
    if deliveries:
        count(DELIVERIES_TOTAL, deliveries, provider=provider, status=status)


def rest_call(outcome: str) -> None:
    """One Bitrix24 REST call ended with `outcome` (success, transient_error, …)."""
    count(REST_CALLS_TOTAL, outcome=outcome)


# --- Storage ----------------------------------------------------------------------------------
Totals = dict[tuple[str, str], float]


class _Buffer:
    """This process's increments not written yet, and the thread that writes them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: Totals = {}
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def take(self) -> Totals:
        with self.lock:
            taken, self.pending = self.pending, {}
        return taken

    def put(self, totals: Totals) -> None:
        with self.lock:
            for key, amount in totals.items():
                self.pending[key] = self.pending.get(key, 0.0) + amount
            if self.thread is None:
                self.thread = threading.Thread(
                    target=_flush_every, name="metrics-flush", daemon=True
                )
                self.thread.start()


_buffer = _Buffer()


def _after_fork() -> None:
    """A forked child (a prefork pool process) starts empty: its parent's increments are its
    parent's to write, and the parent's flush thread does not exist here."""
    global _buffer
    _buffer = _Buffer()


os.register_at_fork(after_in_child=_after_fork)


def add(increments: Iterable[Increment]) -> None:
    """Count `increments`: kept for the next flush, or written at once with
    METRICS_FLUSH_SECONDS=0."""
    merged: Totals = {}
    for name, labels, amount in increments:
        merged[(name, labels)] = merged.get((name, labels), 0.0) + amount
    if not merged:
        return
    if settings.METRICS_FLUSH_SECONDS > 0:
        _buffer.put(merged)
    elif not _write(merged):
        log.warning("metrics: %d increment(s) not counted", len(merged))


def flush() -> None:
    """Write this process's pending increments now (the flush thread, shutdown, a scrape)."""
    totals = _buffer.take()
    if totals and not _write(totals):
        log.warning("metrics: %d increment(s) kept for the next flush", len(totals))
        _buffer.put(totals)


def _flush_every() -> None:
    while True:
        time.sleep(settings.METRICS_FLUSH_SECONDS)
        # This thread's own connection: drop it if the database went away meanwhile.
        connection.close_if_unusable_or_obsolete()
        flush()


atexit.register(flush)


def _write(totals: Totals) -> bool:
    """Apply totals in one statement. Rows are locked in a fixed order (sorted), so two
    processes counting the same series at once never deadlock. False if the database failed."""
    rows = sorted(totals.items())
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: a failure must not doom the caller's work
                _upsert(rows)
        else:
            _upsert(rows)
    except DatabaseError as err:
        log.warning("metrics: writing counters failed (%s)", type(err).__name__)
        return False
    return True


def _upsert(rows: list[tuple[tuple[str, str], float]]) -> None:
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [item for (name, labels), amount in rows for item in (name, labels, amount)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO ops_counter (name, labels, value) VALUES {values} "  # noqa: S608
            "ON CONFLICT (name, labels) DO UPDATE SET value = ops_counter.value + excluded.value",
            params,
        )
