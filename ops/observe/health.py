"""GET /health/: is the service working, and if not, which part is not?

Five checks, each in its own thread with a deadline, so the endpoint answers within
HEALTH_CHECK_TIMEOUT (+ a little) even when a dependency hangs instead of refusing:

- database: a query answers;
- broker: a connection to CELERY_BROKER_URL opens and answers;
- beat: the refresh sweep last *started* within three of its intervals. Beat enqueues it and
  a worker runs it, so when this fails, `workers` tells which of the two is down;
- workers: a worker finished a task within a minute, or answers a ping;
- encryption: one stored secret of each table decrypts with ENCRYPTION_KEYS;
- alerts: every open incident is covered by an enabled notification channel;
- pairs: no process holds a new pair in memory (portals.tokens.held: this process and the
  workers; other web processes are not asked).

A check that hangs is not started again while it still runs: the next request waits on the
same attempt, so a dead dependency costs one stuck thread, not one per probe.

Status: *down* (HTTP 503) when the database or the encryption check fails: this service can
then serve no token. *degraded* (HTTP 200) when only the broker, beat, workers, alerts or
pairs fail: stored tokens still work (for up to an hour) but nothing refreshes, an alert
reaches nobody, or a pair waits in one process's memory.
*ok* (HTTP 200) otherwise.
"""

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url

from encryption import probe
from notifications.incidents.coverage import unheard_incidents
from ops.record import heartbeat
from portals.beat import SWEEP_TASK
from portals.tokens import held

CRITICAL = ("database", "encryption")
WORKER_RECENT = timedelta(minutes=1)
_CREDENTIALS = re.compile(r"://[^/@\s]+@")


class CheckFailed(Exception):
    """The check ran and found a problem; its text says which."""


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str
    seconds: float


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "a query answered"


def check_broker() -> str:
    with _broker_connection():
        return f"connected to {maybe_sanitize_url(current_app.conf.broker_url)}"


@contextlib.contextmanager
def _broker_connection() -> Iterator[Connection]:
    """A connection to the broker that has answered, opened without Celery's retries."""
    timeout = settings.HEALTH_CHECK_TIMEOUT
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    with current_app.connection_for_write(
        connect_timeout=timeout, transport_options=options
    ) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        client: Any = getattr(conn.default_channel, "client", None)
        if client is not None and hasattr(client, "ping"):  # Redis connects lazily: ask it
            client.ping()
        yield conn


def check_beat() -> str:
    interval = _sweep_interval()
    started = heartbeat.last(heartbeat.SWEEP)
    if started is None:
        raise CheckFailed("the sweep never started: is beat running, and a worker (see workers)?")
    age = (timezone.now() - started).total_seconds()
    if age > 3 * interval:
        raise CheckFailed(
            f"the sweep last started {age:.0f} s ago but should start every {interval:.0f} s: "
            "beat is down, or no worker takes tasks (see workers)"
        )
    return f"the sweep started {age:.0f} s ago (every {interval:.0f} s)"


def _sweep_interval() -> float:
    task = PeriodicTask.objects.select_related("interval").filter(task=SWEEP_TASK).first()
    if task is None or not task.enabled:
        raise CheckFailed(
            "the sweep's periodic task is missing or disabled (admin: Periodic tasks)"
        )
    if task.interval is None:
        return float(settings.SWEEP_INTERVAL_SECONDS)
    return task.interval.schedule.run_every.total_seconds()


def check_workers() -> str:
    """A worker that finished a task within a minute is up (busy or not); otherwise the
    workers are asked, and one with a free slot is up. All slots busy and no task finished
    within a minute: their threads hang (a ping alone is answered by a hung worker too).
    Heartbeats are written at most every 15 s, so this may lag by up to a minute."""
    recent = {
        name: (timezone.now() - at).total_seconds()
        for name, at in heartbeat.workers().items()
        if timezone.now() - at < WORKER_RECENT
    }
    if recent:
        return "finished a task within a minute (may lag by up to 60 s): " + ", ".join(
            f"{name} ({age:.0f} s ago)" for name, age in sorted(recent.items())
        )
    slots = _free_slots()
    if not slots:
        raise CheckFailed("no worker finished a task within a minute or answered")
    if not any(free for free, _ in slots.values()):
        busy = ", ".join(
            f"{name} ({total} of {total})" for name, (_, total) in sorted(slots.items())
        )
        raise CheckFailed(
            "every worker's slots are busy and none finished a task within a minute (hung?): "
            + busy
        )
    return "answered with free slots: " + ", ".join(
        f"{name} ({free} of {total} free)" for name, (free, total) in sorted(slots.items())
    )


def _free_slots() -> dict[str, tuple[int, int]]:
    """Each answering worker's (free, total) pool slots: its running tasks against its pool.
    Both questions are asked at once (each waits out its timeout for every worker's answer)."""
    with ThreadPoolExecutor(2) as pool:
        active_f, stats_f = pool.submit(_inspect, "active"), pool.submit(_inspect, "stats")
        active, stats = active_f.result(), stats_f.result()
    slots = {}
    for name, info in stats.items():
        total = int(info.get("pool", {}).get("max-concurrency", 1))
        # No answer about its running tasks: no slot is known to be free.
        running = len(active[name]) if name in active else total
        slots[name] = (max(0, total - running), total)
    return slots


def _inspect(command: str) -> dict[str, Any]:
    try:
        with _broker_connection() as conn:
            timeout = settings.HEALTH_CHECK_TIMEOUT * 0.5
            inspect = current_app.control.inspect(timeout=timeout, connection=conn)
            return getattr(inspect, command)() or {}
    finally:
        connections.close_all()  # this thread's own database connection, if any


def check_pairs() -> str:
    """A pair held in a process's memory (neither stored nor journaled) is lost if that process
    stops. Asked: this process and the workers (other web processes hear no remote control)."""
    try:
        with _broker_connection() as conn:
            pairs = held.everywhere(conn, settings.HEALTH_CHECK_TIMEOUT * 0.5)
    except Exception as err:  # the broker check reports the broker itself
        if pairs := held.held_pairs():
            raise _held(pairs) from None
        return f"none held in this process; the workers could not be asked ({type(err).__name__})"
    if pairs:
        raise _held(pairs)
    return "none held (this process and the workers that answered)"


def _held(pairs: list[held.HeldPair]) -> CheckFailed:
    where = ", ".join(
        f"token {pair.reference!r} on {pair.host} (process {pair.pid}) since "
        f"{pair.since:%Y-%m-%d %H:%M:%S} UTC"
        for pair in pairs
    )
    return CheckFailed(
        f"a new pair waits in memory: {where}; it is stored once that process reaches the "
        "database: do not stop that process"
    )


def check_encryption() -> str:
    connection.ensure_connection()  # unreadable_tables() skips an unreachable database
    if unreadable := probe.unreadable_tables():
        raise CheckFailed(
            f"stored secrets of {', '.join(unreadable)} do not decrypt with ENCRYPTION_KEYS: "
            "put back the key they were written with"
        )
    return "a stored secret of each table decrypts"


def check_alerts() -> str:
    if count := unheard_incidents().count():
        raise CheckFailed(
            f"{count} open incident(s) unheard: no alert of them was sent, and none waits on an "
            f"enabled channel for less than {settings.NOTIFY_HEARD_WITHIN:g} s"
        )
    return "every open incident was heard (an alert sent, or waiting on an enabled channel)"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "beat": check_beat,
    "workers": check_workers,
    "encryption": check_encryption,
    # Beyond the five of the contract: an alert that reaches nobody (issue: every alert
    # reaches a person) shows where on-call looks.
    "alerts": check_alerts,
    # A pair only one process's memory holds (issue 16): that process must not be stopped.
    "pairs": check_pairs,
}


class _Run:
    """One check running in its own thread."""

    def __init__(self, check: Callable[[], str]) -> None:
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: Result | None = None
        self.thread = threading.Thread(target=self._run, args=(check,), daemon=True)
        self.thread.start()

    def _run(self, check: Callable[[], str]) -> None:
        try:
            ok, detail = True, check()
        except CheckFailed as failure:
            ok, detail = False, str(failure)
        except Exception as err:  # any error of a dependency is what this check reports
            ok, detail = False, f"{type(err).__name__}: {_CREDENTIALS.sub('://***@', str(err))}"
        finally:
            connections.close_all()  # this thread's own database connection
        self.result = Result(ok, detail[:500], round(time.monotonic() - self.started, 3))
        self.done.set()


_runs: dict[str, _Run] = {}
_lock = threading.Lock()


def _start(name: str) -> _Run:
    with _lock:
        run = _runs.get(name)
        if run is None or run.done.is_set():
            run = _runs[name] = _Run(CHECKS[name])
        return run


def run_checks(timeout: float | None = None) -> dict[str, Result]:
    """Every check's result, within `timeout` seconds (HEALTH_CHECK_TIMEOUT) in all."""
    timeout = timeout or settings.HEALTH_CHECK_TIMEOUT
    deadline = time.monotonic() + timeout
    runs = {name: _start(name) for name in CHECKS}
    results = {}
    for name, run in runs.items():
        if run.done.wait(max(0.0, deadline - time.monotonic())) and run.result is not None:
            results[name] = run.result
        else:
            waited = time.monotonic() - run.started
            detail = f"no answer within {timeout:g} s (waiting for {waited:.1f} s)"
            results[name] = Result(False, detail, round(waited, 3))
    return results


def overall(results: dict[str, Result]) -> str:
    if any(not results[name].ok for name in CRITICAL):
        return "down"
    return "ok" if all(result.ok for result in results.values()) else "degraded"
