"""Enqueueing Celery tasks by name. Task modules sit on top: they import the code they run,
and nothing imports them; code below them that must enqueue work sends the task's name here
(the name is a contract: periodic-task rows and queued messages carry it across upgrades).

`send_many` enqueues many messages of one task over one connection and producer (the sweep):
each message is still its own task, but the pool is not asked for a connection per message.

`connect_timeout` bounds how long the caller may wait for the broker to accept the message;
with `retry=False` a broker that is away raises at once instead of being retried by kombu.
"""

from collections.abc import Iterable
from typing import Any

from celery import current_app


def send(
    name: str,
    args: tuple[Any, ...] = (),
    *,
    countdown: float | None = None,
    expires: float | None = None,
    connect_timeout: float | None = None,
    retry: bool = True,
) -> None:
    """Enqueue the task registered as `name` with `args` (ids, never a secret)."""
    options: dict[str, Any] = {"args": args, "retry": retry}
    if countdown:
        options["countdown"] = countdown
    if expires is not None:
        options["expires"] = expires
    if connect_timeout is None:
        current_app.send_task(name, **options)
        return
    with current_app.connection_for_write(connect_timeout=connect_timeout) as connection:
        current_app.send_task(name, connection=connection, **options)


def send_many(
    name: str, many_args: Iterable[tuple[Any, ...]], *, expires: float | None = None
) -> int:
    """Enqueue the task `name` once per item of `many_args`, over one connection and producer;
    returns how many were sent. A broker that fails part-way raises after kombu's retries:
    the messages sent before stay sent."""
    sent = 0
    with current_app.producer_or_acquire() as producer:
        for args in many_args:
            current_app.send_task(name, args=args, expires=expires, producer=producer, retry=True)
            sent += 1
    return sent
