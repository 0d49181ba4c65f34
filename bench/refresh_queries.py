"""Database queries per refresh, at 10 and at 10,000 tokens: the count must not grow.

    .venv/bin/python bench/refresh_queries.py [--sizes 10,10000] [--verbose]
        [--keep]

Counts the queries (CaptureQueriesContext) of `portals.tokens.refresh(reference)` and of
`portals.tokens.sweep.refresh_if_due(token_id)` (the Celery task's body) on its paths: due and
refreshed, not due, a transient failure, and the recovery after it. The fake server runs in
this process with no added latency.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from _setup import bench_env, finish, print_table, seed_live_tokens, setup_django

if TYPE_CHECKING:
    from tests.fakes.bitrix import FakeBitrix

# How many tokens each path runs on: every run must give the same count.
REPEATS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,10000", help="comma-separated token counts")
    parser.add_argument("--verbose", action="store_true", help="print every query")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from tests.fakes.bitrix import FakeBitrix

    fake = FakeBitrix().start()
    setup_django(bench_env(fake.base_url))
    try:
        run(args, fake)
    finally:
        fake.stop()
        finish(args.keep)


def run(args: argparse.Namespace, fake: FakeBitrix) -> None:
    from portals.models import Token

    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for size in sizes:
        seed_live_tokens(fake, size - Token.objects.count())
        results[size] = measure_paths(fake, args.verbose)
    rows: list[tuple[str, object]] = []
    constant = True
    for path in results[sizes[0]]:
        counts = [results[size][path]["queries"] for size in sizes]
        constant = constant and len(set(counts)) == 1
        rows.append((path, " / ".join(str(c) for c in counts)))
        commits = [str(results[size][path]["commits"]) for size in sizes]
        rows.append(("  commits", " / ".join(commits)))
        ms = [f"{results[size][path]['ms']:.2f}" for size in sizes]
        rows.append(("  SQL time, ms", " / ".join(ms)))
    title = "queries per call at " + " / ".join(f"{size} tokens" for size in sizes)
    print_table(rows, title)
    print(f"\n  constant number of queries per refresh: {'yes' if constant else 'NO'}")
    if not constant:
        raise SystemExit("the number of queries depends on the number of tokens")


def measure_paths(fake: FakeBitrix, verbose: bool) -> dict[str, dict[str, Any]]:
    """Each path on REPEATS fresh tokens; checks the repeats agree, returns the last."""
    from portals.models import Token
    from portals.tokens import refresh
    from portals.tokens.sweep import refresh_if_due

    fresh = list(Token.objects.filter(version=1).values_list("pk", "reference")[: 2 * REPEATS])
    ids, refs = [pk for pk, _ in fresh[:REPEATS]], [ref for _, ref in fresh[REPEATS:]]
    # name -> (prepare, call) per token; only the call is captured.
    paths: dict[str, list[tuple[Callable[[], object], Callable[[], object]]]] = {
        "tokens.refresh(reference)": [(nothing, lambda r=r: refresh(r)) for r in refs],
        "sweep.refresh_if_due(id): due, refreshed": [
            (nothing, lambda i=i: expect(refresh_if_due(i), "refreshed")) for i in ids
        ],
        "sweep.refresh_if_due(id): not due": [
            (nothing, lambda i=i: expect(refresh_if_due(i), "not-due")) for i in ids
        ],
        # A 503 from the authorization server: recorded, escalation consulted, retried later.
        "sweep.refresh_if_due(id): transient failure": [
            (lambda i=i: fail_next(fake, i), lambda i=i: expect(refresh_if_due(i), "failed"))
            for i in ids
        ],
        # The retry succeeds: the failure is cleared and any incident resolved.
        "sweep.refresh_if_due(id): recovery": [
            (lambda i=i: make_due(i), lambda i=i: expect(refresh_if_due(i), "refreshed"))
            for i in ids
        ],
    }
    results = {}
    for name, calls in paths.items():
        runs = [captured(prepare, call) for prepare, call in calls]
        if len({(r["queries"], r["commits"]) for r in runs}) != 1:
            raise SystemExit(f"{name}: query counts differ between tokens: {runs}")
        results[name] = runs[-1]
        if verbose:
            print(f"\n-- {name}\n" + "\n".join(f"   {q}" for q in runs[-1]["sql"]))
    return results


def captured(prepare: Callable[[], object], call: Callable[[], object]) -> dict[str, Any]:
    """The statements `call` sends (timed) and the commits they cost: one per statement run
    outside a transaction, plus each COMMIT (Django logs BEGIN/COMMIT of atomic blocks)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    spent: list[tuple[float, str, bool]] = []

    def timed(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            in_transaction = context["connection"].in_atomic_block
            spent.append((time.perf_counter() - began, sql, in_transaction))

    prepare()
    with CaptureQueriesContext(connection) as logged, connection.execute_wrapper(timed):
        call()
    commits = sum(1 for q in logged if q["sql"] == "COMMIT")
    commits += sum(1 for _, _, in_transaction in spent if not in_transaction)
    return {
        "queries": len(spent),
        "commits": commits,
        "ms": sum(t for t, _, _ in spent) * 1000,
        "sql": [f"{t * 1000:6.2f} ms  {'   ' if a else 'c  '}{q[:140]}" for t, q, a in spent],
    }


def nothing() -> None:
    pass


def expect(outcome: str, wanted: str) -> None:
    if outcome != wanted:
        raise SystemExit(f"expected {wanted!r}, got {outcome!r}")


def fail_next(fake: FakeBitrix, token_id: int) -> None:
    make_due(token_id)
    fake.fail_next("status", status=503)


def make_due(token_id: int) -> None:
    from django.utils import timezone

    from portals.models import Token

    Token.objects.filter(pk=token_id).update(next_refresh_at=timezone.now() - timedelta(seconds=1))


if __name__ == "__main__":
    main()
