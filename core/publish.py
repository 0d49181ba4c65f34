"""Enqueueing Celery tasks by name, never hanging the caller on a broker that is away or silent.

Task modules sit on top: they import the code they run, and nothing imports them; code below
them that must enqueue work sends the task's name here (the name is a contract: periodic-task
rows and queued messages carry it across upgrades).

- `send()` publishes now, on a connection with connect and socket timeouts (BROKER_TIMEOUT)
  for Redis and AMQP alike, so a broker that accepts connections and never answers raises
  instead of hanging. `producer()` gives one such connection and producer for many sends (the
  sweep: a catch-up enqueues thousands); `send_many()` sends one task's many messages on it.
- `send_after_commit()` is for code on the token path (a refresh that resolves an incident):
  once the transaction commits, the message is handed to this process's publisher thread, and
  the caller goes on at once. Whatever the publisher cannot send is logged and left to the
  periodic sweeps, which re-enqueue work whose rows show it was never run.

Who may call: any room that enqueues a task by name (portals.tokens.sweep, notifications,
portals.connect).
"""

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu import Connection, Producer

log = logging.getLogger(__name__)


def timeouts(seconds: float) -> dict[str, float]:
    """Transport options bounding every wait on the broker: redis-py's socket timeouts and
    py-amqp's read/write timeouts (each transport ignores the other's names)."""
    return {
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "read_timeout": seconds,
        "write_timeout": seconds,
    }


@contextmanager
def connection(limit: float | None = None) -> Iterator[Connection]:
    """A connection for writing, every wait on it bounded by `limit` (BROKER_TIMEOUT)."""
    limit = limit or settings.BROKER_TIMEOUT
    with current_app.connection_for_write(
        connect_timeout=limit, transport_options=timeouts(limit)
    ) as conn:
        yield conn


def send(
    name: str,
    args: tuple[Any, ...] = (),
    *,
    countdown: float | None = None,
    expires: float | None = None,
    retry: bool = True,
    connect_timeout: float | None = None,
    conn: Connection | None = None,
    producer: Producer | None = None,
) -> None:
    """Enqueue the task registered as `name` with `args` (ids, never a secret). With
    retry=False a broker that is away raises at once instead of being retried by kombu;
    `connect_timeout` shortens BROKER_TIMEOUT for this send."""
    options: dict[str, Any] = {"args": args, "retry": retry}
    if countdown:
        options["countdown"] = countdown
    if expires is not None:
        options["expires"] = expires
    if producer is not None:
        current_app.send_task(name, producer=producer, **options)
        return
    if conn is not None:
        current_app.send_task(name, connection=conn, **options)
        return
    with connection(connect_timeout) as fresh:
        current_app.send_task(name, connection=fresh, **options)


@contextmanager
def producer(limit: float | None = None) -> Iterator[Producer]:
    """One bounded connection and one producer for many sends: Celery would otherwise make a
    producer per message."""
    with connection(limit) as conn:
        yield current_app.amqp.Producer(conn, auto_declare=False)


def send_many(
    name: str, many_args: Iterable[tuple[Any, ...]], *, expires: float | None = None
) -> int:
    """Enqueue the task `name` once per item of `many_args` over one producer; returns how
    many were sent. A broker that fails part-way raises: the messages sent before stay sent."""
    sent = 0
    with producer() as shared:
        for args in many_args:
            send(name, args, expires=expires, producer=shared)
            sent += 1
    return sent


def send_after_commit(name: str, args: tuple[Any, ...] = (), *, countdown: float = 0.0) -> None:
    """Enqueue after the current transaction commits, in the background: the caller never
    waits on the broker. Lost on a broker failure; the sweeps find the work again."""
    transaction.on_commit(lambda: _publisher.put((name, args, countdown)))


class _Publisher:
    """One thread per process that sends what committed transactions handed over."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...], float]] = queue.SimpleQueue()
        self._pid = 0
        self._lock = threading.Lock()
        self._pending = 0
        self._drained = threading.Condition(self._lock)

    def put(self, item: tuple[str, tuple[Any, ...], float]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
                self._queue, self._pending, self._pid = queue.SimpleQueue(), 0, os.getpid()
                threading.Thread(target=self._run, name="b24k-publisher", daemon=True).start()
            self._pending += 1
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            name, args, countdown = self._queue.get()
            try:
                send(name, args, countdown=countdown, retry=False)
            except Exception as err:  # the rows are stored: a sweep re-enqueues lost work
                log.warning("could not enqueue %s: %s (a sweep sends it later)",
                            name, type(err).__name__)  # fmt: skip
            finally:
                with self._lock:
                    self._pending -= 1
                    self._drained.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for what was handed over; True when all was sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and self._pid == os.getpid():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(left)
        return True


_publisher = _Publisher()


@atexit.register
def _flush_at_exit() -> None:
    # A short-lived process (a command, a script) gives its last messages a bounded chance.
    _publisher.flush(2 * settings.BROKER_TIMEOUT)
