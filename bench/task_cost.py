"""What a Celery task costs here, publishing and running, without any refresh in it.

    .venv/bin/python bench/task_cost.py [--messages 5000] [--concurrency 8] [--keep]

1. **Publishing** N refresh-task messages (ids of no token): one by one through
   `core.publish.send`, each taking a connection from the pool (what the sweep did), and over
   one connection and producer (`core.publish.send_many`, what it does now); wall and CPU per
   message, Redis commands per message.
2. **Running** them through one real worker (threads pool, `-c`, INFO logging, as bin/serve):
   N refresh tasks that find no token (one SELECT, one UPDATE of nothing), then N of Celery's
   own no-op task (`celery.accumulate`): wall time and worker CPU per task. What a refresh
   costs in all is in `refresh_cycle.py`'s CPU breakdown; this is Celery's share of it.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import CeleryWorkers, tree_cpu, warn_if_busy
from _setup import REDIS_URL, bench_env, finish, flush_redis, print_table, setup_django

NO_TOKEN = 10**12  # an id no token has


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's -c (threads)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warn_if_busy()
    env = bench_env("https://oauth.bitrix.info")
    setup_django(env)
    flush_redis()
    try:
        rows = publishing(args.messages)
        rows += running(args, env)
        print_table(rows, f"Celery, {args.messages} messages")
    finally:
        finish(args.keep)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def redis_commands() -> int:
    import redis

    return int(redis.Redis.from_url(REDIS_URL).info()["total_commands_processed"])


def timed(func: Any, n: int) -> tuple[float, float, float]:
    """Wall ms, CPU ms and Redis commands per item of `func()`, which handles n items."""
    wall, cpu, commands = time.perf_counter(), cpu_seconds(), redis_commands()
    func()
    per = 1000 / n
    return (
        (time.perf_counter() - wall) * per,
        (cpu_seconds() - cpu) * per,
        (redis_commands() - commands - 1) / n,
    )


def publishing(n: int) -> list[tuple[str, object]]:
    from core import publish
    from portals.tokens.sweep import REFRESH_TASK

    ids = [(NO_TOKEN + i,) for i in range(n)]
    publish.send(REFRESH_TASK, ids[0], expires=3600)  # a warm pool, as a running sweep has
    flush_redis()

    def one_by_one() -> None:
        for args in ids:
            publish.send(REFRESH_TASK, args, expires=3600)

    single = timed(one_by_one, n)
    flush_redis()
    bulk = timed(lambda: publish.send_many(REFRESH_TASK, ids, expires=3600), n)
    flush_redis()
    return [
        ("publish one by one: wall / CPU ms per message", f"{single[0]:.3f} / {single[1]:.3f}"),
        ("  Redis commands per message", single[2]),
        ("publish over one producer: wall / CPU ms", f"{bulk[0]:.3f} / {bulk[1]:.3f}"),
        ("  Redis commands per message", bulk[2]),
        ("  10,000 messages would take, s", bulk[0] * 10),
    ]


def drained() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    return client.llen("celery") == 0 and client.hlen("unacked") == 0


def run(pid: int, name: str, ids: list[tuple[int]]) -> tuple[float, float]:
    """Publish, then wait until the queue is empty and everything acknowledged: wall (from
    the first message) and worker CPU ms per task."""
    from core import publish

    n = len(ids)
    wall, cpu = time.perf_counter(), tree_cpu(pid)
    publish.send_many(name, ids)
    deadline = time.monotonic() + max(60, n / 20)
    while not drained():
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not drain the queue in time")
        time.sleep(0.05)
    return (time.perf_counter() - wall) * 1000 / n, (tree_cpu(pid) - cpu) * 1000 / n


def running(args: argparse.Namespace, env: dict[str, str]) -> list[tuple[str, object]]:
    from portals.tokens.sweep import REFRESH_TASK

    n = args.messages
    log_dir = Path(tempfile.mkdtemp(prefix="b24keeper-bench-task-"))
    with CeleryWorkers(env, log_dir, "threads", args.concurrency, 1) as workers:
        pid = workers.pids()[0]
        refresh = run(pid, REFRESH_TASK, [(NO_TOKEN + i,) for i in range(n)])
        noop = run(pid, "celery.accumulate", [(i,) for i in range(n)])
    return [
        (f"worker (threads × {args.concurrency}): refresh task, no token", ""),
        ("  wall / worker CPU ms per task", f"{refresh[0]:.3f} / {refresh[1]:.3f}"),
        ("worker: Celery's no-op task", ""),
        ("  wall / worker CPU ms per task", f"{noop[0]:.3f} / {noop[1]:.3f}"),
    ]


if __name__ == "__main__":
    main()
