"""Every benchmark at a tiny size, so none of them rots: each must run to its end and pass its
own checks (exit 0). No timing is asserted: on a tiny size and a shared machine the figures
mean nothing.

    .venv/bin/python bench/smoke.py [NAME ...]     # all of them, or the ones named

CI runs the same table through pytest (`tests/bench/test_smoke.py`, one test per script), so a
benchmark that crashes fails CI. The scripts run one after the other in the database
`BENCH_DATABASE` (default `b24keeper_bench_smoke`) and the Redis db `BENCH_REDIS_URL` (default
db 14), as when run by hand; each copies a database migrated once at the start
(`BENCH_TEMPLATE`) instead of migrating its own, which would take most of the time.
A new benchmark gets a row in SMOKE (tests/bench/test_smoke.py fails on a script without one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# script → its arguments at a tiny size (seconds, not minutes; the slowest first)
SMOKE: dict[str, list[str]] = {
    "soak.py": ["--tokens", "4", "--minutes", "0.1", "--kill-min", "2", "--kill-max", "3",
                "--latency", "0.05"],
    "refresh_cycle.py": ["--tokens", "60", "--latency", "0.01", "--workers", "1",
                         "--concurrency", "4", "--sweep-interval", "0.5"],
    "token_access.py": ["--calls", "10", "--http", "10", "--workers", "1", "--clients", "2"],
    "rest_limiter.py": ["--seconds", "2", "--processes", "2", "--rate", "10", "--burst", "5",
                        "--cost-calls", "20"],
    "prune_pause.py": ["--tokens", "20", "--per-day", "200", "--threads", "2",
                       "--baseline", "0.5", "--batch", "100"],
    "metrics_scrape.py": ["--tokens", "50", "--days", "2", "--per-day", "200", "--runs", "3"],
    "task_cost.py": ["--messages", "50", "--concurrency", "2"],
    "sweep_query.py": ["--sizes", "200,400", "--runs", "2", "--limit", "20"],
    "refresh_queries.py": ["--sizes", "8,20"],
    "proxy.py": ["--calls", "20", "--clients", "1,2", "--workers", "1", "--threads", "4",
                 "--seconds", "2", "--processes", "2", "--rate", "10", "--burst", "5"],
}  # fmt: skip


def scripts() -> list[str]:
    """Every benchmark script (the helpers start with an underscore)."""
    return sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def command(name: str) -> list[str]:
    return [sys.executable, str(BENCH / name), *SMOKE[name]]


def bench_database() -> str:
    return os.environ.get("BENCH_DATABASE", "b24keeper_bench_smoke")


@contextmanager
def template_database() -> Iterator[str]:
    """A database migrated once, that every script copies (CREATE DATABASE … TEMPLATE)."""
    import psycopg
    from cryptography.fernet import Fernet

    name = f"{bench_database()}_template"
    admin = "postgres://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "bench-smoke-secret-key",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "CELERY_BROKER_URL": "memory://",
        "DEBUG": "false",
    }
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=BENCH.parent,
            env=env,
            check=True,
        )
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def smoke_env(template: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "BENCH_DATABASE": bench_database(),
        "BENCH_TEMPLATE": template,
        "BENCH_IDLE_CHECK_SECONDS": "0.2",  # the figures mean nothing here anyway
    }


def run(name: str, template: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one benchmark at its tiny size; its output is returned, never printed here."""
    return subprocess.run(
        command(name),
        cwd=BENCH.parent,
        env=smoke_env(template),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def main(names: list[str]) -> int:
    failed = []
    with template_database() as template:
        for name in names or list(SMOKE):
            began = time.monotonic()
            result = run(name, template)
            took = time.monotonic() - began
            print(f"{name:<22} {'ok' if result.returncode == 0 else 'FAILED'}  {took:5.1f} s")
            if result.returncode:
                failed.append(name)
                print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
    missing = sorted(set(scripts()) - set(SMOKE) - {"smoke.py"})
    if missing:
        print(f"no tiny size for: {', '.join(missing)} (add them to SMOKE)")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
