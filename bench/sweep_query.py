"""The sweep's claim query at 10,000 and 100,000 tokens.

    .venv/bin/python bench/sweep_query.py [--sizes 10000,100000] [--runs 9]
        [--limit 2000] [--due-share 0.03] [--keep]

Seeds realistic rows with SQL (mixed statuses, next refresh times spread over 25 minutes, about
--due-share of them due now, a fifth of those already claimed by a sweep in flight), then
times `portals.tokens.sweep.claim_due_tokens()` (median of --runs, the claims undone between runs)
and prints the EXPLAIN ANALYZE plan of the SELECT it really ran. Baselines in the same run: a
`SELECT 1` round trip and the smallest size. Target: under 50 ms at 100,000 rows.
"""

from __future__ import annotations

import argparse
from typing import Any

from _procs import warn_if_busy
from _setup import bench_env, create_app, finish, median_seconds, print_table, setup_django

TARGET_MS = 50.0
# One INSERT for portals, one for their tokens; statuses, due times and claims drawn per row.
SEED_SQL = """
WITH new_portals AS (
    INSERT INTO portals_portal (
        domain, member_id, auth_server, rest_rate, rest_burst, created_at, updated_at)
    SELECT 'q' || g || '.bench.bitrix24.com', md5('q' || g), '', 2, 50, now(), now()
    FROM generate_series(%(first)s, %(last)s) AS g
    RETURNING id
), drawn AS (
    SELECT id, random() AS kind, random() AS due, random() AS spread FROM new_portals
), typed AS (
    SELECT id, due, spread, CASE
        WHEN kind < 0.02 THEN 'awaiting_code'
        WHEN kind < 0.04 THEN 'needs_reauth'
        WHEN kind < 0.05 THEN 'uninstalled'
        WHEN kind < 0.055 THEN 'payment_required'
        WHEN kind < 0.06 THEN 'disabled'
        WHEN kind < 0.08 THEN 'refresh_failing'
        ELSE 'active' END AS status
    FROM drawn
)
INSERT INTO portals_token (
    portal_id, app_id, reference, notes, application_token, status, access_token,
    refresh_token, expires_at, scope,
    client_endpoint, server_endpoint, user_id, version, last_refreshed_at, next_refresh_at,
    claimed_until, failure_count, last_error_code, last_error, failing_since, last_failure_at,
    events_bind_error, app_status, created_at, updated_at)
SELECT
    id, %(app)s, 'q' || id, '', '', status,
    CASE WHEN status = 'awaiting_code' THEN '' ELSE %(secret)s END,
    CASE WHEN status = 'awaiting_code' THEN '' ELSE %(secret)s END,
    CASE WHEN status = 'awaiting_code' THEN NULL ELSE now() + interval '1 hour' * spread END,
    'crm,user', 'https://q' || id || '.bench.bitrix24.com/rest/',
    'https://oauth.bitrix.info/rest/', 1, 1 + (spread * 500)::int,
    CASE WHEN status = 'awaiting_code' THEN NULL
         ELSE now() - interval '25 minutes' * (1 - spread) END,
    CASE WHEN status NOT IN ('active', 'refresh_failing') THEN NULL
         WHEN due < %(due_share)s THEN now() - interval '5 minutes' * spread
         ELSE now() + interval '25 minutes' * spread END,
    CASE WHEN status IN ('active', 'refresh_failing') AND due < %(due_share)s / 5
         THEN now() + interval '6 minutes' END,
    CASE WHEN status IN ('active', 'awaiting_code') THEN 0 ELSE 1 + (spread * 6)::int END,
    CASE WHEN status IN ('active', 'awaiting_code') THEN '' ELSE 'QUERY_LIMIT_EXCEEDED' END,
    '', NULL, NULL, '', 'S', now(), now()
FROM typed
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--limit", type=int, default=0, help="default: REFRESH_MAX_PER_SWEEP")
    parser.add_argument("--due-share", type=float, default=0.03)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warn_if_busy()
    setup_django(bench_env("https://oauth.bitrix.info"))
    try:
        run(args)
    finally:
        finish(args.keep)


def run(args: argparse.Namespace) -> None:
    from django.conf import settings

    limit = args.limit or settings.REFRESH_MAX_PER_SWEEP
    select_one = median_seconds(lambda: sql("SELECT 1"), args.runs * 5, lambda: None)
    results: list[dict[str, Any]] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        seed(size, args.due_share)
        print_distribution(size)
        results.append({"size": size, **measure(limit, args.runs)})
    print_results(results, select_one, limit)
    print_plan(limit)
    compare_fillfactor(results[-1], limit, args.runs)


def sql(statement: str, params: dict[str, Any] | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def seed(size: int, due_share: float) -> None:
    """Top the table up to `size` tokens, then VACUUM ANALYZE as autovacuum would have."""
    from encryption import crypto
    from portals.models import Token

    have = Token.objects.count()
    if size > have:
        params = {
            "first": have + 1,
            "last": size,
            "app": create_app().pk,
            # Fernet output differs per call but not in length: one value stands for all.
            "secret": crypto.encrypt("0a1b2c3d" + "5e" * 31),
            "due_share": due_share,
        }
        sql(SEED_SQL, params)
    sql("VACUUM ANALYZE portals_token")


def print_distribution(size: int) -> None:
    from django.db.models import Count
    from django.utils import timezone

    from portals.models import Token

    by_status = dict(Token.objects.values_list("status").annotate(n=Count("id")))
    due = Token.objects.due().count()
    claimed = Token.objects.filter(claimed_until__gt=timezone.now()).count()
    rows = [(f"status {name}", n) for name, n in sorted(by_status.items())]
    rows += [("due now and unclaimed", due), ("claimed by a sweep in flight", claimed)]
    print_table(rows, f"{size} tokens")


def measure(limit: int, runs: int) -> dict[str, Any]:
    """Median claim time at `limit` and at a 100-row limit, each claim undone before the next."""
    from portals.models import Token
    from portals.tokens.sweep import claim_due_tokens

    claimed: list[int] = []

    def claim(n: int) -> None:
        claimed[:] = claim_due_tokens(limit=n)

    def undo() -> None:
        Token.objects.filter(pk__in=claimed).update(claimed_until=None)

    full = median_seconds(lambda: claim(limit), runs, undo)
    full_rows = len(claimed)
    undo()
    small = median_seconds(lambda: claim(100), runs, undo)
    undo()
    return {"full": full, "full_rows": full_rows, "small": small}


def print_results(results: list[dict[str, Any]], select_one: float, limit: int) -> None:
    base = results[0]
    rows: list[tuple[str, object]] = [("baseline SELECT 1 round trip, ms", select_one * 1000)]
    for r in results:
        size = r["size"]
        rows += [
            (f"{size}: claim (limit {limit}), ms", r["full"] * 1000),
            (f"{size}:   rows claimed", r["full_rows"]),
            (f"{size}:   / SELECT 1", r["full"] / select_one),
            (f"{size}:   / at {base['size']}", r["full"] / base["full"]),
            (f"{size}: claim (limit 100), ms", r["small"] * 1000),
            (f"{size}:   / at {base['size']}", r["small"] / base["small"]),
        ]
    last = results[-1]
    verdict = "met" if last["full"] * 1000 < TARGET_MS else "MISSED"
    rows.append((f"target < {TARGET_MS:.0f} ms at {last['size']}", verdict))
    print_table(rows, "sweep claim query (median)")


def compare_fillfactor(last: dict[str, Any], limit: int, runs: int) -> None:
    """The same claims on the same rows packed full (fillfactor 100, as before migration
    portals/0014): every claimed row then gets a new entry in each of the table's indexes."""
    fillfactor = sql(
        "SELECT coalesce((SELECT option_value FROM pg_options_to_table(reloptions) "
        "WHERE option_name = 'fillfactor'), '100') FROM pg_class WHERE relname = 'portals_token'"
    )[0][0]
    sql("ALTER TABLE portals_token SET (fillfactor = 100)")
    sql("VACUUM FULL portals_token")
    sql("VACUUM ANALYZE portals_token")
    packed = measure(limit, runs)
    sql(f"ALTER TABLE portals_token SET (fillfactor = {int(fillfactor)})")
    sql("VACUUM FULL portals_token")
    print_table(
        [
            (f"{last['size']}: claim, fillfactor {fillfactor}, ms", last["full"] * 1000),
            (f"{last['size']}: claim, fillfactor 100 (packed), ms", packed["full"] * 1000),
            ("  packed / ours", packed["full"] / last["full"]),
        ],
        f"the same claim (limit {limit}) with the table packed full, same run",
    )


def print_plan(limit: int) -> None:
    """EXPLAIN ANALYZE of the exact statements claim_due_tokens() sent. Everything runs in
    transactions that are rolled back, so each plan sees the rows unclaimed."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from portals.tokens.sweep import claim_due_tokens

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        claim_due_tokens(limit=limit)
        transaction.set_rollback(True)
    statements = [
        q["sql"] for q in queries if q["sql"].lstrip().startswith(("SELECT", "UPDATE", "WITH"))
    ]
    used = False
    for statement in statements:
        with transaction.atomic():
            plan = [row[0] for row in sql("EXPLAIN (ANALYZE, BUFFERS) " + statement)]
            transaction.set_rollback(True)
        used = used or any("token_due_idx" in line for line in plan)
        print(f"\n== EXPLAIN ANALYZE at the largest size\n  {statement[:400]}")
        print("\n".join("  " + line for line in plan))
    print(f"\n  index token_due_idx used: {'yes' if used else 'NO'}")


if __name__ == "__main__":
    main()
