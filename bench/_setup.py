"""Shared set-up for the benchmarks: environment, a throw-away database, seeding, printing.

Importing this module puts the project root on sys.path (the scripts run as
`python bench/<script>.py`, which puts only bench/ there). Django is set up by `setup_django()`,
after which the scripts import the app's modules inside their functions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.fakes.bitrix import FakeBitrix

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# Overridable, so two benchmarks (or a benchmark and a test run) never share a database.
BENCH_DB = os.environ.get("BENCH_DATABASE", "b24keeper_bench")
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CLIENT_ID = "local.be9c4a1f2d3e50.27182818"
CLIENT_SECRET = "BenchSecret0Qw9Er8Ty7Ui6Op5As4Df3Gh2Jk1LzXcVbNm"


def bench_env(oauth_server: str, **extra: str) -> dict[str, str]:
    """The environment shared by the benchmark process and every process it starts."""
    from cryptography.fernet import Fernet

    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "BITRIX_OAUTH_SERVER": oauth_server,
        "BITRIX_AUTH_SERVERS": oauth_server,
        "BITRIX_ALLOW_HTTP": "true",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def recreate_database() -> None:
    """Drop and re-create the benchmark database, then migrate it (a clean slate per run).
    With BENCH_TEMPLATE (bench/smoke.py sets it), copy that migrated database instead."""
    import psycopg

    template = os.environ.get("BENCH_TEMPLATE")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        if template:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}" TEMPLATE "{template}"')
            return
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ},
        check=True,
    )


def drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def setup_django(env: dict[str, str]) -> None:
    """Export `env`, build the database and set Django up in this process."""
    os.environ.update(env)
    recreate_database()
    import django

    django.setup()
    if os.environ.get("BENCH_TEMPLATE"):
        # A copied database skipped migrate and its system checks: run them here, so a
        # benchmark whose settings the app refuses fails in the smoke too.
        from django.core.management import call_command

        call_command("check", fail_level="ERROR")


def finish(keep: bool) -> None:
    """Leave nothing behind unless asked to (--keep)."""
    from ops.record import metrics

    metrics.flush()  # now, not at exit: the database is about to go
    flush_redis()
    if keep:
        print(f"\nkept database {BENCH_DB} (DATABASE_URL={DATABASE_URL})")
    else:
        drop_database()


# -- seeding ---------------------------------------------------------------------------------


def create_app(fake: FakeBitrix | None = None) -> Any:
    """The app credentials every benchmark token belongs to (registered with the fake)."""
    from portals.models import AppCredentials

    if fake is not None:
        fake.register_app(CLIENT_ID, CLIENT_SECRET, scope="crm,user")
    app, _ = AppCredentials.objects.get_or_create(
        client_id=CLIENT_ID,
        defaults={"name": "Bench app", "client_secret": CLIENT_SECRET, "scope": "crm,user"},
    )
    return app


def seed_live_tokens(
    fake: FakeBitrix, count: int, prefix: str = "p", due_at: datetime | None = None
) -> list[int]:
    """`count` active tokens whose pairs the fake really issued, all due at `due_at` (now).

    bulk_create still goes through EncryptedTextField, so every secret is encrypted as the
    app would store it. Returns the new tokens' ids.
    """
    from portals.models import Portal, Token

    app = create_app(fake)
    due_at = due_at or datetime.now(UTC) - timedelta(seconds=1)
    start = Portal.objects.count()
    bodies, portals = [], []
    for i in range(start, start + count):
        domain = f"{prefix}{i}.bench.bitrix24.com"
        body = fake.issue_tokens(CLIENT_ID, domain)
        bodies.append(body)
        portals.append(Portal(domain=domain, member_id=str(body["member_id"])))
    Portal.objects.bulk_create(portals, batch_size=2000)
    tokens = [
        _token_from_body(portal, app, f"{prefix}{start + i}", body, due_at)
        for i, (portal, body) in enumerate(zip(portals, bodies, strict=True))
    ]
    return [t.pk for t in Token.objects.bulk_create(tokens, batch_size=2000)]


def _token_from_body(portal: Any, app: Any, reference: str, body: dict, due_at: datetime) -> Any:
    from portals.models import Token, TokenStatus

    return Token(
        portal=portal,
        app=app,
        reference=reference,
        status=TokenStatus.ACTIVE,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        expires_at=datetime.fromtimestamp(int(body["expires"]), UTC),
        scope=body["scope"],
        client_endpoint=body["client_endpoint"],
        server_endpoint=body["server_endpoint"],
        user_id=body["user_id"],
        version=1,
        last_refreshed_at=due_at,
        next_refresh_at=due_at,
    )


# -- measuring and printing ------------------------------------------------------------------


def median_seconds(func: Callable[[], object], runs: int, before: Callable[[], object]) -> float:
    """Median wall time of `func` over `runs` runs, calling `before` untimed before each."""
    times = []
    for _ in range(runs):
        before()
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def print_table(rows: Iterable[tuple[str, object]], title: str = "") -> None:
    if title:
        print(f"\n== {title}")
    for name, value in rows:
        if isinstance(value, float):
            value = f"{value:.3f}"
        print(f"  {name:<44} {value}")
