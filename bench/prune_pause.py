"""The daily prune at 10,000 tokens while refreshes run: the longest pause it causes one.

    .venv/bin/python bench/prune_pause.py [--tokens 10000] [--per-day 580000] [--threads 4]
        [--baseline 15] [--batch 2000] [--keep]

Seeds 10,000 live tokens (pairs the local fake really issued) and two days of refresh
attempts with SQL: one day older than HISTORY_RETENTION_DAYS (30) and yesterday, --per-day
each (10,000 tokens every 25 minutes is about 580,000 a day); then VACUUM ANALYZE.
Then --threads threads refresh tokens one after another through `portals.tokens.refresh()`
against the fake, timing each refresh: --baseline seconds alone, then while
`manage.py prune_history` runs in its own process (as the worker that runs the daily task
would), then 3 s more. Prints refresh latency before and during the prune and the prune's own
figures. The refreshes insert attempt rows into the very table being pruned.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import threading
import time

from _procs import warn_if_busy
from _setup import ROOT, bench_env, finish, percentile, print_table, seed_live_tokens, setup_django

ATTEMPTS_SQL = """
INSERT INTO portals_refreshattempt (token_id, kind, outcome, started_at, finished_at,
    error_code, error_description, http_status, duration_ms, store_retries)
SELECT t.ids[1 + g %% t.n], 'scheduled', 'success',
    %(start)s + interval '1 day' * g / %(per_day)s,
    %(start)s + interval '1 day' * g / %(per_day)s + interval '120 ms', '', '', NULL, 120, 0
FROM generate_series(0, %(per_day)s - 1) AS g,
     (SELECT array_agg(id) AS ids, count(*) AS n FROM portals_token) AS t
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--per-day", type=int, default=580_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds without prune")
    parser.add_argument("--batch", type=int, default=2000, help="prune_history --batch-size")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    from tests.fakes.bitrix import FakeBitrix

    args = parse_args()
    warn_if_busy()
    fake = FakeBitrix().start()
    env = bench_env(fake.base_url, HISTORY_RETENTION_DAYS="30")
    setup_django(env)
    try:
        ids = seed_live_tokens(fake, args.tokens)
        seed_history(args.per_day)
        run(args, env, ids)
    finally:
        fake.stop()
        finish(args.keep)


def seed_history(per_day: int) -> None:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        for days_ago in (32, 1):  # one day to delete, one to keep
            start = today - timedelta(days=days_ago)
            cursor.execute(ATTEMPTS_SQL, {"start": start, "per_day": per_day})
        cursor.execute("VACUUM ANALYZE portals_refreshattempt")


class Refreshers:
    """Threads refreshing tokens back to back; each refresh is timed with its start."""

    def __init__(self, references: list[str], threads: int) -> None:
        self.next = itertools.cycle(references).__next__
        self.lock = threading.Lock()
        self.samples: list[tuple[float, float]] = []  # (started, seconds)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop) for _ in range(threads)]

    def _loop(self) -> None:
        from django.db import connection

        from portals.tokens import refresh

        try:
            while not self.stop.is_set():
                with self.lock:
                    reference = self.next()
                began = time.monotonic()
                refresh(reference)
                with self.lock:
                    self.samples.append((began, time.monotonic() - began))
        finally:
            connection.close()

    def __enter__(self) -> Refreshers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [s * 1000 for began, s in self.samples if start <= began < end]


def run(args: argparse.Namespace, env: dict[str, str], ids: list[int]) -> None:
    from portals.models import RefreshAttempt, Token

    references = list(Token.objects.filter(pk__in=ids).values_list("reference", flat=True))
    before_rows = RefreshAttempt.objects.count()
    with Refreshers(references, args.threads) as load:
        warm = time.monotonic() + 2.0
        time.sleep(args.baseline + 2.0)  # a benchmark's fixed run time, not a wait
        prune_began = time.monotonic()
        pruned = subprocess.run(
            [sys.executable, "manage.py", "prune_history", f"--batch-size={args.batch}"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        prune_ended = time.monotonic()
        time.sleep(3.0)
    alone = load.between(warm, prune_began)
    during = load.between(prune_began, prune_ended)
    print_table(
        [
            ("tokens", len(references)),
            ("attempts before / after", f"{before_rows} / {RefreshAttempt.objects.count()}"),
            ("prune", pruned.stdout.strip()),
            ("prune took, s", prune_ended - prune_began),
            ("refreshes alone / during the prune", f"{len(alone)} / {len(during)}"),
            ("refresh alone: median / p99 / max, ms", _spread(alone)),
            ("refresh during prune: median / p99 / max, ms", _spread(during)),
            ("longest refresh during the prune, ms", max(during, default=float("nan"))),
            ("  minus the longest alone, ms", max(during, default=0) - max(alone, default=0)),
        ],
        f"prune while {args.threads} threads refresh",
    )


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {percentile(values, 0.99):.1f} / {max(values):.1f}"


if __name__ == "__main__":
    main()
