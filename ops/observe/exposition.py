"""GET /metrics: the Prometheus text format, built from the database at scrape time.

Counters and the histogram come from the running totals (ops.record.metrics, one small table);
gauges are counted from the live tables now: tokens by status (one GROUP BY over the token
table), open incidents, the sweep's and the workers' heartbeats. Nothing scans the history
tables, so a scrape costs the same with a day or a year of attempts (bench/metrics_scrape.py).
"""

import json
from collections import defaultdict
from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from notifications.incidents.coverage import unheard_incidents
from notifications.models import Incident
from ops.models import Counter
from ops.record import heartbeat, metrics
from portals.models import RefreshAttempt, Token, TokenStatus

COUNTERS = {
    metrics.REFRESH_TOTAL: ("Refresh attempts, by outcome.", ["outcome"]),
    metrics.REFRESH_FAILURES_TOTAL: ("Failed refresh attempts, by Bitrix24 error code.", ["code"]),
    metrics.DELIVERIES_TOTAL: (
        "Notification deliveries that ended (sent, failed) or were put back to retry "
        "(retried), by provider.",
        ["provider", "status"],
    ),
    metrics.REST_CALLS_TOTAL: ("Bitrix24 REST calls, by outcome.", ["outcome"]),
    metrics.RENEWALS_TOTAL: (
        "Renewals of a token a consumer said the portal refused (renew, the REST proxy), by "
        "outcome: refreshed, joined, already_renewed, limited, failed.",
        ["outcome"],
    ),
}


class DatabaseCollector:
    """Reads everything in a handful of queries per scrape."""

    def collect(self) -> Iterator[Metric]:
        metrics.flush()  # this process's own counts first (the others flush on their interval)
        totals = _totals()
        yield _tokens()
        for name, (documentation, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            for values, value in totals.get(name, []):
                family.add_metric([values.get(label, "") for label in labels], value)
            if name == metrics.REFRESH_TOTAL:  # every outcome, even at zero, for alert rules
                seen = {values.get("outcome") for values, _ in totals.get(name, [])}
                for outcome in RefreshAttempt.Outcome.values:
                    if outcome not in seen:
                        family.add_metric([outcome], 0)
            yield family
        yield _duration(totals)
        yield _sweep_last_run()
        yield GaugeMetricFamily(
            "b24keeper_incidents_open",
            "Incidents not resolved yet (token incidents and outage incidents).",
            value=Incident.objects.filter(resolved_at=None).count(),
        )
        yield GaugeMetricFamily(
            "b24keeper_incidents_unheard",
            "Open incidents nobody has heard of: no alert was sent, and none waits on an enabled "
            "channel for less than NOTIFY_HEARD_WITHIN.",
            value=unheard_incidents().count(),
        )
        yield _workers()


def _totals() -> dict[str, list[tuple[dict[str, str], float]]]:
    totals: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for name, labels, value in Counter.objects.values_list("name", "labels", "value"):
        totals[name].append((json.loads(labels), value))
    return totals


def _tokens() -> Metric:
    family = GaugeMetricFamily(
        "b24keeper_tokens", "Tokens by status (every status, zero included).", labels=["status"]
    )
    counts = dict(Token.objects.values_list("status").annotate(n=Count("pk")).order_by())
    for status in TokenStatus.values:
        family.add_metric([status], counts.get(status, 0))
    return family


def _duration(totals: dict[str, list[tuple[dict[str, str], float]]]) -> Metric:
    name = metrics.REFRESH_DURATION
    per_bucket = {values["le"]: value for values, value in totals.get(f"{name}_bucket", [])}
    cumulative, buckets = 0.0, []
    for bound in metrics.DURATION_BUCKETS:
        le = metrics.le_label(bound)
        cumulative += per_bucket.get(le, 0.0)
        buckets.append((le, cumulative))
    total = sum(value for _, value in totals.get(f"{name}_sum", []))
    return HistogramMetricFamily(
        name,
        "Duration of the refresh call to Bitrix24's authorization server.",
        buckets=buckets,
        sum_value=total,
    )


def _sweep_last_run() -> Metric:
    started = heartbeat.last(heartbeat.SWEEP)
    return GaugeMetricFamily(
        "b24keeper_sweep_last_run_timestamp_seconds",
        "When the refresh sweep last started (Unix time; 0: never). Beat enqueues it every "
        "minute by default, and a worker runs it.",
        value=started.timestamp() if started else 0,
    )


def _workers() -> Metric:
    family = GaugeMetricFamily(
        "b24keeper_worker_last_task_timestamp_seconds",
        "When each Celery worker last finished a task (Unix time, to within 15 s).",
        labels=["worker"],
    )
    for name, at in sorted(heartbeat.workers().items()):
        family.add_metric([name], at.timestamp())
    return family


def render() -> bytes:
    from prometheus_client import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
