"""Pairs waiting in a process's memory (portals.tokens.pairs.held_pairs), told across processes.

A process holds a pair because it cannot reach the database, so it cannot say so there: each
worker answers the Celery remote-control command `b24keeper_held_pairs` (`register()`, called
by config.celery at worker start) over the broker instead, and
`everywhere()` asks them all and adds this process's own. Web processes other than the asking
one are not asked (they hear no remote control).

Under the prefork pool the command is answered by the worker's main process, not by its pool
children: pairs held in a child are not reported, though the child retries them itself
(config.celery starts its retry thread at `worker_process_init`); bin/serve and deploy/ run
workers with `--pool threads`.

Who may call: config.celery (`register()` at worker start); the token admin page (`for_token`) and
ops.observe.health (`everywhere`).
"""

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from celery import current_app
from celery.worker.control import inspect_command
from kombu import Connection

from core import publish
from portals.tokens.pairs import HeldPair, held_pairs

log = logging.getLogger(__name__)
COMMAND = "b24keeper_held_pairs"
# The token page asks on each view: it must not wait long on workers that do not answer.
PAGE_TIMEOUT = 0.8


def register() -> None:
    """Make this worker answer COMMAND (at worker start; registering twice is harmless)."""
    inspect_command(name=COMMAND)(_answer)


def _answer(state: Any, **kwargs: Any) -> list[dict[str, object]]:
    """The pairs this worker process holds in memory (never the pair itself)."""
    return [pair.as_reply() for pair in held_pairs()]


def everywhere(conn: Connection, timeout: float) -> list[HeldPair]:
    """The pairs held by this process and by every worker answering within `timeout` s on
    `conn` (a connection bounded by the caller)."""
    held = held_pairs()
    replies = current_app.control.broadcast(COMMAND, reply=True, timeout=timeout, connection=conn)
    for reply in replies or []:
        for items in reply.values():
            if isinstance(items, list):  # a worker without the command answers {"error": ...}
                held.extend(HeldPair.from_reply(item) for item in items)
    return held


def for_token(token_id: int) -> list[HeldPair]:
    """The pairs of `token_id` held here or by a worker; asked within about PAGE_TIMEOUT s. A
    broker that is away leaves only this process's own."""
    try:
        with _bounded(PAGE_TIMEOUT) as conn:
            held = everywhere(conn, PAGE_TIMEOUT)
    except Exception as err:  # the broker is away: what this process knows is all there is
        log.warning("could not ask the workers for pairs held in memory: %s", type(err).__name__)
        held = held_pairs()
    return [pair for pair in held if pair.token_id == token_id]


@contextlib.contextmanager
def _bounded(limit: float) -> Iterator[Connection]:
    with publish.connection(limit) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=limit)
        yield conn
