"""Soak: N tokens kept alive by a real worker and beat on Redis, under strict rotation, while
the worker is SIGKILLed at random and a consumer calls get_access_token() throughout.

    .venv/bin/python bench/soak.py [--tokens 40] [--minutes 5] [--kill-min 5] [--kill-max 20]
                                   [--latency 0.3] [--keep] [--faults]

Prints what a trust review asks: refreshes, kills, refresh-token reuse (invalid_grant at the
fake), journal restores, tokens *silently broken* (active in the database but dead at Bitrix:
must be 0) and tokens *lost* (needs re-authorization: a kill landed between Bitrix's rotation
and the journal write), and what the consumer saw. Exits non-zero if anything is silently
broken. Tokens are made due directly (several times a minute each), not through the policy
fields.

--faults (bench/_faults.py): besides the kills, the worker's and beat's links to PostgreSQL and
the broker are cut or black-holed at random for random spans; alerts go to a fake Telegram.
The verdict adds double refreshes (two refreshes of one chain at once), lost tokens nobody
heard of, and incidents left open on active tokens; each must be 0.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import _faults
from _setup import ROOT, bench_env, finish, flush_redis, print_table, seed_live_tokens, setup_django

from tests.fakes.bitrix import FakeBitrix
from tests.fakes.provider_telegram import FakeTelegram

CELERY = str(Path(sys.executable).parent / "celery")


class Worker:
    """One `celery worker` in its own process group, so a kill takes its pool with it."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.starts = env, log_dir, 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.starts += 1
        args = [CELERY, "-A", "config", "worker", "-n", f"soak{self.starts}@%h", "-c", "4",
                "--pool", "prefork", "--loglevel", "INFO", "--without-gossip",
                "--without-mingle"]  # fmt: skip
        log = open(self.log_dir / f"worker{self.starts}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


def start_beat(env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    args = [CELERY, "-A", "config", "beat", "--loglevel", "INFO", "--max-interval", "1",
            "--pidfile=", "-S", "django_celery_beat.schedulers:DatabaseScheduler"]  # fmt: skip
    log = open(log_dir / "beat.log", "w")  # noqa: SIM115
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def sweep_every_second() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from portals.beat import SWEEP_TASK

    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(task=SWEEP_TASK).update(interval=every_second)


def make_due(ids: list[int], stop: threading.Event, share: float) -> None:
    """Every second, a share of the tokens becomes due: frequent refreshes, without policy."""
    from django.db import connection
    from django.utils import timezone

    from portals.models import Token

    while not stop.wait(1.0):
        chosen = random.sample(ids, max(1, int(len(ids) * share)))
        Token.objects.filter(pk__in=chosen).update(next_refresh_at=timezone.now())
    connection.close()


def consume(references: list[str], stop: threading.Event, seen: Counter) -> None:
    from django.db import connection

    from portals.tokens import get_access_token

    while not stop.is_set():
        try:
            # Mostly served from the database; now and then a refresh on demand, racing the
            # worker's scheduled ones.
            get_access_token(random.choice(references), min_ttl=random.choice([300] * 9 + [3590]))
            seen["token served"] += 1
        except Exception as err:  # counted by type: that is the report
            seen[type(err).__name__] += 1
        stop.wait(0.05)
    connection.close()


def killer(worker: Worker, stop: threading.Event, low: float, high: float, kills: list) -> None:
    while not stop.wait(random.uniform(low, high)):
        worker.kill()
        kills.append(time.monotonic())
        worker.start()


def settle(fake: FakeBitrix, seconds: float) -> None:
    """Let in-flight work finish and dead claims expire (TOKEN_REFRESH_LEASE is short here)."""
    from portals.models import Token

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Token.objects.exclude(refresh_started_at=None).exists():
            return
        time.sleep(1)


def verdict(fake: FakeBitrix) -> dict[str, int]:
    from portals.models import RefreshAttempt, Token, TokenStatus

    broken = lost = healthy = 0
    for token in Token.objects.select_related("portal", "app"):
        alive = fake.current_refresh_token(token.portal.member_id, token.app.client_id)
        if token.status == TokenStatus.ACTIVE and token.refresh_token != alive:
            broken += 1
        elif token.status == TokenStatus.NEEDS_REAUTH:
            lost += 1
        else:
            healthy += 1
    requests = fake.token_requests
    return {
        "refreshes granted by Bitrix": fake.count(grant_type="refresh_token", ok_only=True),
        "refresh-token reuse (invalid_grant)": sum(r["error"] == "invalid_grant" for r in requests),
        "pairs restored from a journal": RefreshAttempt.objects.filter(outcome="restored").count(),
        "interrupted refreshes detected": RefreshAttempt.objects.filter(
            outcome="interrupted"
        ).count(),
        "tokens healthy": healthy,
        "tokens silently broken (must be 0)": broken,
        "tokens lost (needs re-authorization)": lost,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--kill-min", type=float, default=5)
    parser.add_argument("--kill-max", type=float, default=20)
    parser.add_argument("--latency", type=float, default=0.3, help="the fake's, in seconds")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--faults", action="store_true", help="cut links at random too")
    parser.add_argument("--fault-min", type=float, default=5)
    parser.add_argument("--fault-max", type=float, default=20)
    parser.add_argument("--fault-span", type=float, default=15, help="longest outage, seconds")
    args = parser.parse_args()

    fake = FakeBitrix().start()
    fake.rotation = "strict"
    fake.latency = args.latency  # refreshes in flight for longer: kills land mid-call
    var_dir = Path(tempfile.mkdtemp(prefix="b24keeper-soak-"))
    env = bench_env(
        fake.base_url, VAR_DIR=str(var_dir), TOKEN_REFRESH_LEASE="10", LOG_LEVEL="INFO",
        BITRIX_OAUTH_DEADLINE="8",  # under the short lease (system check b24keeper.E017)
        REFRESH_BACKOFF_BASE_SECONDS="1", REFRESH_BACKOFF_MAX_SECONDS="5",
    )  # fmt: skip
    telegram = links = None
    if args.faults:
        telegram = FakeTelegram().start()
        env.update(TELEGRAM_API_URL=telegram.base_url, NOTIFY_HOLD_SECONDS="1",
                   TOKEN_JOURNAL_RETRY="2", BROKER_TIMEOUT="3")  # fmt: skip
    setup_django(env)
    flush_redis()
    ids = seed_live_tokens(fake, args.tokens, prefix="soak")
    references = [f"soak{i}" for i in range(args.tokens)]
    sweep_every_second()
    remote_env = env
    if args.faults:
        _faults.add_channel()
        links = _faults.Links(env["DATABASE_URL"], env["CELERY_BROKER_URL"])
        remote_env = {**env, "DATABASE_URL": links.database_url,
                      "CELERY_BROKER_URL": links.broker_url}  # fmt: skip

    stop, kills, seen = threading.Event(), [], Counter()
    worker = Worker(remote_env, var_dir)
    worker.start()
    beat = start_beat(remote_env, var_dir)
    threads = [
        threading.Thread(target=make_due, args=(ids, stop, 0.1)),
        threading.Thread(target=consume, args=(references, stop, seen)),
        threading.Thread(target=killer, args=(worker, stop, args.kill_min, args.kill_max, kills)),
    ]
    if links is not None:
        chaos = (stop, args.fault_min, args.fault_max, args.fault_span)
        threads.append(threading.Thread(target=links.chaos, args=chaos))
    for thread in threads:
        thread.start()
    print(f"soaking {args.tokens} tokens for {args.minutes} min; logs in {var_dir}")
    time.sleep(args.minutes * 60)
    stop.set()
    for thread in threads:
        thread.join(60)
    if links is not None:
        links.heal()
    settle(fake, 60)
    figures = {"worker kills (SIGKILL, whole pool)": len(kills), **verdict(fake)}
    if links is not None:
        figures.update(sorted(links.faults.items()))
        figures["double refresh (max concurrent refreshes of one chain)"] = (
            fake.max_concurrent_refreshes
        )
        figures.update(_faults.heard_verdict(settle_seconds=90))
    worker.stop()
    beat.terminate()
    beat.wait(30)

    print_table(figures.items(), "soak")
    print_table(sorted(seen.items()), "what the consumer saw (get_access_token calls)")
    fake.stop()
    if telegram is not None and links is not None:
        telegram.stop()
        links.close()
    finish(args.keep)
    failed = figures["tokens silently broken (must be 0)"] or any(
        figures.get(name, 0)
        for name in ("lost tokens nobody heard of (must be 0)",
                     "incidents open on active tokens (must be 0)")
    ) or figures.get("double refresh (max concurrent refreshes of one chain)", 1) > 1  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
