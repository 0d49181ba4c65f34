"""One full refresh cycle: N due tokens, W real Celery workers, a fake server with latency.

    .venv/bin/python bench/refresh_cycle.py [--tokens 10000] [--latency 0.1]
        [--workers 2] [--concurrency 32] [--pool threads|prefork] [--settings MODULE] [--keep]

Compares the cycle (first sweep -> last token stored) with the ideal N × latency / concurrency
and with a baseline measured in the same run: the real OAuth client in a thread pool of the
same total concurrency against the same fake, without database or broker. See bench/README.md.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _procs import CeleryWorkers, Sweeper, snapshot, warn_if_busy
from _setup import (
    CLIENT_ID,
    CLIENT_SECRET,
    bench_env,
    finish,
    flush_redis,
    percentile,
    print_table,
    seed_live_tokens,
    setup_django,
)

if TYPE_CHECKING:
    from tests.fakes.bitrix import FakeBitrix


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="-c of each worker")
    parser.add_argument("--pool", choices=["threads", "prefork"], default="threads")
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument(
        "--per-sweep", type=int, default=0, help="REFRESH_MAX_PER_SWEEP (default: --tokens)"
    )
    parser.add_argument(
        "--settings",
        default="config.settings",
        help="DJANGO_SETTINGS_MODULE of the workers and sweeper, e.g. config.settings",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warn_if_busy()
    from tests.fakes.bitrix import FakeBitrix

    fake = FakeBitrix().start()
    fake.latency = args.latency
    per_sweep = args.per_sweep or args.tokens
    # One sweep may enqueue every token; a slow configuration must not see tasks expire.
    env = bench_env(
        fake.base_url, REFRESH_MAX_PER_SWEEP=str(per_sweep), REFRESH_TASK_EXPIRES="3600"
    )
    setup_django(env)
    flush_redis()
    try:
        run(args, fake, {**env, "DJANGO_SETTINGS_MODULE": args.settings})
    finally:
        fake.stop()
        finish(args.keep)


def run(args: argparse.Namespace, fake: FakeBitrix, env: dict[str, str]) -> None:
    n, concurrency = args.tokens, args.workers * args.concurrency
    ideal = n * args.latency / concurrency
    began = time.perf_counter()
    seed_live_tokens(fake, n)
    print(f"seeded {n} due tokens in {time.perf_counter() - began:.1f} s")
    baseline = measure_baseline(fake, n, concurrency)
    print(f"baseline: {baseline:.2f} s")
    fake.reset_observations()
    log_dir = Path(tempfile.mkdtemp(prefix="b24keeper-bench-"))
    with CeleryWorkers(env, log_dir, args.pool, args.concurrency, args.workers) as workers:
        cycle = measure_cycle(n, workers.pids(), env, args, timeout=max(120.0, 20 * ideal))
    print_table(
        [
            ("tokens (N)", n),
            ("latency, s", args.latency),
            ("pool", f"{args.pool}, {args.workers} workers × {args.concurrency}"),
            ("concurrency", concurrency),
            ("ideal = N × latency / concurrency, s", ideal),
            ("baseline (thread pool, no DB/broker), s", baseline),
            ("cycle (first sweep → last token stored), s", cycle["seconds"]),
            ("cycle / ideal", cycle["seconds"] / ideal),
            ("cycle / baseline", cycle["seconds"] / baseline),
            ("baseline / ideal", baseline / ideal),
            ("target cycle / ideal ≤ 1.5", "met" if cycle["seconds"] <= 1.5 * ideal else "MISSED"),
        ],
        "refresh cycle",
    )
    print_profile(cycle, n, concurrency, args.latency)
    full = sum(p.read_text().count("Connection pool is full") for p in log_dir.glob("*.log"))
    print(f"\nworker logs: {log_dir} ({full} urllib3 'connection pool is full' warnings)")
    check(fake, n)


def measure_baseline(fake: FakeBitrix, n: int, concurrency: int) -> float:
    """The real client, `concurrency` threads, N fresh pairs (not the seeded ones: refreshing
    those would rotate them away from the database)."""
    from portals.bitrix.oauth import BitrixOAuthClient

    # The shared session's pool holds 10 connections: more threads than that make urllib3
    # warn on every request (counted for the workers in the profile instead).
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    pairs = [fake.issue_tokens(CLIENT_ID, f"b{i}.baseline.bitrix24.com") for i in range(n)]
    client = BitrixOAuthClient(server=fake.base_url)

    def refresh(pair: dict[str, Any]) -> object:
        return client.refresh(CLIENT_ID, CLIENT_SECRET, str(pair["refresh_token"]))

    fake.reset_observations()
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(refresh, pairs))
    seconds = time.perf_counter() - began
    if fake.count("refresh_token", ok_only=True) != n:
        raise SystemExit("baseline: some refreshes failed")
    return seconds


def measure_cycle(
    n: int, worker_pids: list[int], env: dict[str, str], args: argparse.Namespace, timeout: float
) -> dict[str, Any]:
    from django.db.models import Max

    from portals.models import Token

    sweeper = Sweeper(env, expect=n, interval=args.sweep_interval)
    before, db_before = snapshot(worker_pids), db_counters()
    sweeper.go()
    wait_for_cycle(n, timeout)
    after, db_after = snapshot(worker_pids), db_counters()
    report = sweeper.report(timeout=60)
    last = Token.objects.aggregate(last=Max("last_refreshed_at"))["last"]
    start = report["sweeps"][0]["start"]
    cpu = {k: after[k] - before[k] for k in before}
    cpu["sweeper process"] = report["cpu"]
    db = {k: db_after[k] - db_before[k] for k in db_before}
    return {"seconds": last.timestamp() - start, "start": start, "sweeps": report["sweeps"],
            "cpu": cpu, "db": db}  # fmt: skip


def wait_for_cycle(n: int, timeout: float) -> None:
    """Until every token is refreshed or has failed; prints progress every 5 seconds."""
    from portals.models import Token

    deadline, shown = time.monotonic() + timeout, time.monotonic()
    while True:
        done = Token.objects.filter(version__gte=2).count()
        failed = Token.objects.filter(failure_count__gt=0).count()
        if done + failed >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {done} refreshed, {failed} failed of {n}")
        if time.monotonic() - shown > 5:
            print(f"  … {done}/{n} refreshed, {failed} failed")
            shown = time.monotonic()
        time.sleep(0.25)


def db_counters() -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        sessions, commits = cursor.fetchone()
    return {"sessions": float(sessions), "commits": float(commits)}


def print_profile(cycle: dict[str, Any], n: int, concurrency: int, latency: float) -> None:
    """Where the time went: the sweep, the HTTP calls as the workers saw them, and CPU."""
    from portals.models import RefreshAttempt

    start, seconds, sweeps = cycle["start"], cycle["seconds"], cycle["sweeps"]
    rows = RefreshAttempt.objects.filter(kind="scheduled").values_list("finished_at", "duration_ms")
    done = sorted(f.timestamp() - start for f, _ in rows)
    http = [float(ms) for _, ms in rows]
    slot_ms = seconds * concurrency / n * 1000
    print_table(
        [
            ("sweeps / enqueued", f"{len(sweeps)} / {sum(s['count'] for s in sweeps)}"),
            ("enqueue took (first sweep start → last end), s", sweeps[-1]["end"] - start),
            ("first token stored at, s", done[0] if done else float("nan")),
            ("25% / 50% / 75% stored at, s", spread(done, (0.25, 0.5, 0.75), "{:.1f}")),
            ("refreshes per second (N / cycle)", n / seconds),
            ("ideal refreshes per second", concurrency / latency),
            ("HTTP call seen by worker p50 / p95 / max, ms", spread(http, (0.5, 0.95, 1.0))),
            ("worker slot time per refresh, ms", slot_ms),
            ("  of which outside the HTTP call, ms", slot_ms - sum(http) / max(len(http), 1)),
            ("PostgreSQL sessions opened per refresh", cycle["db"]["sessions"] / n),
            ("PostgreSQL commits per refresh", cycle["db"]["commits"] / n),
            ("Redis commands per refresh", cycle["cpu"].pop("_redis_commands") / n),
        ],
        "where the time went",
    )
    print_cpu(cycle["cpu"], n, seconds)


def spread(values: list[float], shares: tuple[float, ...], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(percentile(values, share)) for share in shares)


def print_cpu(cpu: dict[str, float], n: int, seconds: float) -> None:
    busy, total = cpu.pop("_busy"), cpu.pop("_total")
    cores = total / seconds if seconds else 0
    rows = [(f"{name}, CPU ms per refresh", value * 1000 / n) for name, value in cpu.items()]
    # Kernel work no process is charged for, and any other load on the machine.
    rows.append(("everything else, CPU ms per refresh", (busy - sum(cpu.values())) * 1000 / n))
    rows.append(("machine busy (all cores), %", 100 * busy / total if total else 0.0))
    rows.append(("cores", round(cores)))
    print_table(rows, "CPU during the cycle")


def check(fake: FakeBitrix, n: int) -> None:
    """Nothing failed: every request granted, no refresh token reused, every row rotated."""
    from portals.models import RefreshAttempt, Token

    refreshes = [r for r in fake.token_requests if r["grant_type"] == "refresh_token"]
    # The audit row commits just after its pair (the cycle ends on the last pair): give the
    # last refreshes' rows a few seconds, never more.
    deadline = time.monotonic() + 10
    while RefreshAttempt.objects.count() < n and time.monotonic() < deadline:
        time.sleep(0.1)
    successes = RefreshAttempt.objects.filter(outcome="success").count()
    problems = {
        "fake saw N refresh requests": len(refreshes) == n,
        "every request granted": fake.count("refresh_token", ok_only=True) == n,
        "no error (invalid_grant etc.)": not any(r["error"] for r in refreshes),
        "never two refreshes of one chain at once": fake.max_concurrent_refreshes <= 1,
        "every token at version 2": Token.objects.filter(version=2).count() == n,
        "every token active": Token.objects.filter(status="active").count() == n,
        "N successful attempts, nothing else": successes == RefreshAttempt.objects.count() == n,
    }
    print_table([(name, "ok" if ok else "FAILED") for name, ok in problems.items()], "checks")
    if not all(problems.values()):
        raise SystemExit("some checks failed")


if __name__ == "__main__":
    print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    main()
