"""Processes for the refresh-cycle benchmark: Celery workers, the sweeper, and CPU probes.

The CPU probes read /proc, so they only work on Linux; they observe PostgreSQL and Redis from
outside (read-only) to tell where the machine's cores went during a cycle.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _setup import BENCH_DB, REDIS_URL, ROOT

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CeleryWorkers:
    """`count` real `celery worker` processes; stopped (warm shutdown) on exit."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, pool: str, concurrency: int, count: int
    ) -> None:
        self.env, self.log_dir = env, log_dir
        self.pool, self.concurrency, self.count = pool, concurrency, count
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> CeleryWorkers:
        for i in range(self.count):
            self.procs.append(self._start(f"bench{i}"))
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def _start(self, name: str) -> subprocess.Popen:
        celery = str(Path(sys.executable).parent / "celery")
        args = [celery, "-A", "config", "worker", "-n", f"{name}@%h",
                "-c", str(self.concurrency), "--pool", self.pool, "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
        with open(self.log_dir / f"{name}.log", "w") as log:
            return subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def _wait_ready(self, timeout: float = 90) -> None:
        """Every worker answers a broadcast ping only once its consumer is running."""
        from config.celery import app

        deadline = time.monotonic() + timeout
        while len(app.control.ping(timeout=0.5)) < self.count:
            dead = [p.args[5] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready ({dead or 'timeout'}); see {self.log_dir}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


class Sweeper:
    """bench/_sweeper.py in its own process: claims and enqueues, as beat's sweep task would,
    without sharing a GIL with the fake server in this process."""

    def __init__(self, env: dict[str, str], expect: int, interval: float) -> None:
        script = str(Path(__file__).with_name("_sweeper.py"))
        self.proc = subprocess.Popen(
            [sys.executable, script, "--expect", str(expect), "--interval", str(interval)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin and self.proc.stdout
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the sweeper did not start")

    def go(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def report(self, timeout: float) -> dict[str, Any]:
        """The sweeper's last line: every sweep's start, end and count, and its CPU time."""
        out, _ = self.proc.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])


# -- CPU accounting --------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def tree_cpu(pid: int) -> float:
    """CPU seconds of a live process and its live descendants (a prefork pool)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return own + sum(tree_cpu(child) for child in _children(pid))


def postgres_cpu(database: str) -> tuple[float, float, float]:
    """CPU seconds of this database's live backends, of PostgreSQL's shared processes (the
    postmaster, checkpointer, WAL writer, background writer), and of the exited backends the
    postmaster has reaped, of any database (with connections kept, few of them are ours).
    The machine is shared: other databases' live sessions are somebody else's load."""
    ours = shared = reaped = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = _stat(int(entry.name))
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        owner = _session_database(title)
        if owner is None:
            shared += cpu
        elif owner == database:
            ours += cpu
        try:
            if Path(f"/proc/{fields[1]}/comm").read_text().strip() != "postgres":  # postmaster
                reaped += (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        except OSError:
            continue
    return ours, shared, reaped


def _session_database(title: str) -> str | None:
    """The database of a backend or autovacuum worker, from its process title
    ("postgres: 15/main: USER DB HOST(PORT) STATE"); None for a shared process."""
    words = title.split(": ", 2)[-1].split()
    if words[:2] == ["autovacuum", "worker"]:
        return words[2] if len(words) > 2 else None
    if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
        return words[1]
    return None


def system_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def snapshot(worker_pids: list[int]) -> dict[str, float]:
    import redis

    info = redis.Redis.from_url(REDIS_URL).info()
    own = resource.getrusage(resource.RUSAGE_SELF)
    busy, total = system_ticks()
    ours, shared, reaped = postgres_cpu(BENCH_DB)
    return {
        "bench process (fake server, poller)": own.ru_utime + own.ru_stime,
        "celery workers": sum(tree_cpu(pid) for pid in worker_pids),
        "postgresql, this database's sessions": ours,
        "postgresql, shared processes": shared,
        "postgresql, exited backends (any database)": reaped,
        "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        "_busy": busy / CLOCK_TICKS,
        "_total": total / CLOCK_TICKS,
        "_redis_commands": float(info["total_commands_processed"]),
    }


def warn_if_busy(seconds: float | None = None) -> None:
    """The figures only mean something on an otherwise idle machine. Looks for 2 s
    (BENCH_IDLE_CHECK_SECONDS: bench/smoke.py needs no figures and looks for less)."""
    if seconds is None:
        seconds = float(os.environ.get("BENCH_IDLE_CHECK_SECONDS", "2"))
    busy0, total0 = system_ticks()
    time.sleep(seconds)
    busy1, total1 = system_ticks()
    share = (busy1 - busy0) / max(total1 - total0, 1)
    print(f"machine busy before the run: {share:.0%}")
    if share > 0.15:
        print("WARNING: something else is using the CPU; the figures below will be off")
