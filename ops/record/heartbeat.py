"""Heartbeats: when the sweep last started, and when each worker last finished a task.

The health check and the metrics read them. A worker writes its heartbeat at most every
WORKER_BEAT_EVERY seconds per process, so a busy worker costs one small UPDATE a few times a
minute, not one per task.
"""

import logging
import time
from datetime import datetime

from django.db import DatabaseError, connection
from django.utils import timezone

from ops.models import Heartbeat

log = logging.getLogger(__name__)
SWEEP = "sweep"
WORKER_PREFIX = "worker:"
WORKER_BEAT_EVERY = 15.0
_last_worker_beat: dict[str, float] = {}


def touch(name: str, at: datetime | None = None) -> None:
    """Record that `name` happened now (one upsert). Never raises: a heartbeat that cannot be
    written shows up as a stale heartbeat, which is the point."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ops_heartbeat (name, at) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET at = excluded.at",
                [name, at or timezone.now()],
            )
    except DatabaseError as err:
        log.warning("heartbeat %s not recorded (%s)", name, type(err).__name__)


def sweep_started() -> None:
    touch(SWEEP)


def worker_finished_task(hostname: str) -> None:
    """Called after every task in a worker; writes at most every WORKER_BEAT_EVERY seconds."""
    now = time.monotonic()
    if now - _last_worker_beat.get(hostname, -WORKER_BEAT_EVERY) < WORKER_BEAT_EVERY:
        return
    _last_worker_beat[hostname] = now
    touch(WORKER_PREFIX + hostname)


def last(name: str) -> datetime | None:
    return Heartbeat.objects.filter(name=name).values_list("at", flat=True).first()


def workers() -> dict[str, datetime]:
    """Each worker's last finished task, by worker name (e.g. w1@host)."""
    rows = Heartbeat.objects.filter(name__startswith=WORKER_PREFIX).values_list("name", "at")
    return {name.removeprefix(WORKER_PREFIX): at for name, at in rows}
