"""Counting what happens, for GET /metrics: one call per event, from anywhere, any machine.

    from ops.record import metrics
    metrics.count("b24keeper_rest_calls_total", outcome="success")
    metrics.observe("b24keeper_refresh_duration_seconds", 0.42)

Running totals live in the database (ops.Counter), incremented atomically with one `INSERT … ON
CONFLICT DO UPDATE SET value = value + n` per event. So they are global (a worker on another machine
counts into the same rows the scraped web process reads), survive restarts, and never decrease:
deleting old history rows does not touch them. A histogram is kept as one counter per bucket (not
cumulative), its sum and its count; ops.observe.exposition adds the buckets up.

Counting never breaks the work it counts: a database error here is logged and dropped.
"""

import json
import logging
from collections.abc import Iterable

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
def add(increments: Iterable[Increment]) -> None:
    """Apply increments in one statement. Rows are locked in a fixed order (sorted), so two
    processes counting the same series at once never deadlock."""
    merged: dict[tuple[str, str], float] = {}
    for name, labels, amount in increments:
        merged[(name, labels)] = merged.get((name, labels), 0.0) + amount
    if not merged:
        return
    rows = sorted(merged.items())
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: a failure must not doom the caller's work
                _upsert(rows)
        else:
            _upsert(rows)
    except DatabaseError as err:
        log.warning("metrics: %d increment(s) not counted (%s)", len(rows), type(err).__name__)


def _upsert(rows: list[tuple[tuple[str, str], float]]) -> None:
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [item for (name, labels), amount in rows for item in (name, labels, amount)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO ops_counter (name, labels, value) VALUES {values} "  # noqa: S608
            "ON CONFLICT (name, labels) DO UPDATE SET value = ops_counter.value + excluded.value",
            params,
        )
