"""GET /metrics at 10,000 tokens with 30 days of history (about 17 million refresh attempts).

    .venv/bin/python bench/metrics_scrape.py [--tokens 10000] [--days 30] [--per-day 580000]
        [--runs 30] [--keep]

Seeds with SQL: tokens with mixed statuses (as bench/sweep_query.py does), --days days of
refresh attempts at --per-day a day (10,000 tokens every 25 minutes is about 580,000), some
incidents and deliveries, and running totals for every outcome, error code and provider; then
VACUUM ANALYZE. Times the whole request through Django (view, permission check, every query,
rendering) with the bearer token: median, p95 and worst of --runs, and the queries it sent.
Target: under 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _procs import warn_if_busy
from _setup import bench_env, finish, percentile, print_table, setup_django
from sweep_query import seed

TARGET_MS = 100.0
BEARER = "bench-metrics-token"
ATTEMPTS_SQL = """
INSERT INTO portals_refreshattempt (token_id, kind, outcome, started_at, finished_at,
    error_code, error_description, http_status, duration_ms, store_retries)
SELECT t.ids[1 + g %% t.n], 'scheduled',
    CASE WHEN g %% 50 = 0 THEN 'transient_error' ELSE 'success' END,
    %(start)s + interval '1 day' * g / %(per_day)s,
    %(start)s + interval '1 day' * g / %(per_day)s + interval '120 ms',
    CASE WHEN g %% 50 = 0 THEN 'QUERY_LIMIT_EXCEEDED' ELSE '' END, '', NULL, 120, 0
FROM generate_series(0, %(per_day)s - 1) AS g,
     (SELECT array_agg(id) AS ids, count(*) AS n FROM portals_token) AS t
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=580_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warn_if_busy()
    env = bench_env("https://oauth.bitrix.info", METRICS_TOKEN=BEARER, ALLOWED_HOSTS="testserver")
    setup_django(env)
    try:
        seed(args.tokens, 0.03)
        seed_history(args.days, args.per_day)
        seed_counters()
        measure(args.runs)
    finally:
        finish(args.keep)


def sql(statement: str, params: dict | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def seed_history(days: int, per_day: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    began = time.monotonic()
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(days, 0, -1):
        sql(ATTEMPTS_SQL, {"start": today - timedelta(days=day), "per_day": per_day})
        print(f"  history: day -{day} seeded ({time.monotonic() - began:.0f} s)", flush=True)
    sql(
        "INSERT INTO notifications_incident (kind, token_id, permanent, error_code, message,"
        " occurrences, affected_tokens, changes, opened_at, last_seen_at, resolved_at)"
        " SELECT 'token', id, false, 'QUERY_LIMIT_EXCEEDED', 'm', 3, 1, 0, now(), now(),"
        " CASE WHEN id % 10 = 0 THEN NULL ELSE now() END FROM portals_token"
        " WHERE id % 20 = 0"
    )
    sql("VACUUM ANALYZE")


def seed_counters() -> None:
    """Running totals for every series a month of operation would have."""
    from ops.record import metrics
    from portals.models import RefreshAttempt

    for outcome in RefreshAttempt.Outcome.values:
        for code in ("QUERY_LIMIT_EXCEEDED", "invalid_grant", "NOT_INSTALLED", "http_503"):
            metrics.refresh_attempt("scheduled", outcome, code, 120)
    for provider in ("twilio", "messagebird", "unisender_sms", "mandrill", "telegram"):
        for status in ("sent", "failed", "retried"):
            metrics.delivery(provider, status, 3)
    for outcome in ("success", "transient_error", "permanent_error"):
        metrics.rest_call(outcome)


def measure(runs: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from portals.models import RefreshAttempt, Token

    client = Client()
    headers = {"Authorization": f"Bearer {BEARER}"}
    client.get("/metrics", headers=headers)  # warm: imports, first connection
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        response = client.get("/metrics", headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/metrics", headers=headers)
    median = statistics.median(times)
    print_table(
        [
            ("tokens", Token.objects.count()),
            ("refresh attempts in history", RefreshAttempt.objects.count()),
            ("response size, bytes", len(response.content)),
            ("queries per scrape", len(queries)),
            ("SQL time per scrape, ms", sum(float(q["time"]) for q in queries) * 1000),
            ("scrape median, ms", median),
            ("scrape p95, ms", percentile(times, 0.95)),
            ("scrape worst, ms", max(times)),
            (f"target < {TARGET_MS:.0f} ms (median)", "met" if median < TARGET_MS else "MISSED"),
        ],
        f"GET /metrics, {runs} scrapes",
    )


if __name__ == "__main__":
    main()
