"""The journal loop: a living process retries its machine's journal in the background, so a
pair the database could not take (an outage longer than TOKEN_STORE_RETRY) is applied as soon
as the database is back, without waiting for a restart or for this machine to refresh that
token again. Each entry is retried until it is stored or proved stale (the version fence,
portals.tokens.pairs.restore_pair); a needs-re-authorization status another machine set
meanwhile yields to the stored pair, as a replay at start does. Pairs whose journal entry
could not be written (a full disk) wait in the refreshing process's memory
(portals.tokens.pairs.retry_held), and each process's own thread retries those.

One loop per machine: every process (web after fork, from config/wsgi.py; workers at
worker_ready, from config/celery.py) starts a thread, and only the thread holding the lock on
VAR_DIR/journal (`.loop.lock`, flock) replays; if its process ends, another takes over.

Who may call: config (process start) only, through `start()`.
"""

import contextlib
import fcntl
import logging
import os
import threading
import time
from typing import IO

from django.conf import settings
from django.db import DatabaseError, connection

from portals.tokens import journal, pairs

log = logging.getLogger(__name__)
LOCK_NAME = ".loop.lock"
_started = {"pid": 0}
_guard = threading.Lock()


def start() -> None:
    """Start this process's journal thread (once per process; again in a forked child)."""
    with _guard:
        if _started["pid"] == os.getpid():
            return
        _started["pid"] = os.getpid()
    threading.Thread(target=_run, name="b24k-journal", daemon=True).start()


def _run() -> None:
    lock: IO[str] | None = None
    while True:
        try:
            lock = lock or _take_lock()
            replay_pending(journal_too=lock is not None)
        except Exception as err:  # the database is away, a disk error: the next round retries
            log.warning("journal loop: %s; retried in %g s", type(err).__name__,
                        settings.TOKEN_JOURNAL_RETRY)  # fmt: skip
            with contextlib.suppress(DatabaseError):
                connection.close()
        time.sleep(settings.TOKEN_JOURNAL_RETRY)


def replay_pending(*, journal_too: bool = True) -> int:
    """One round: the pairs held in this process's memory (their journal entry could not be
    written), then, for the lock holder, what the machine's journal holds; each is stored or
    discarded as stale. Returns how many were stored."""
    restored = pairs.retry_held() if pairs.held_in_memory() else 0
    # An entry younger than that may belong to a refresh still storing its own pair (it retries
    # for TOKEN_STORE_RETRY): replaying it then would store the same pair twice over and record
    # the refresh as rotated elsewhere. Past it, its refresh has given up (or died).
    settled = settings.TOKEN_STORE_RETRY + min(settings.TOKEN_STORE_RETRY, 10.0)
    if journal_too and any(True for _ in journal.entries(settled_for=settled)):
        restored += pairs.replay_journal(settled_for=settled)
    if restored:
        log.warning("journal loop: restored %d token pair(s)", restored)
    return restored


def _take_lock() -> IO[str] | None:
    """The machine's loop lock, or None while another process holds it."""
    handle = open(journal.folder() / LOCK_NAME, "a")  # noqa: SIM115  held while we live
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
