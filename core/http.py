"""The HTTP sessions of this process: one pooled `requests.Session` per purpose (the Bitrix24
authorization server, the portals' REST API, the notification providers), made anew after a
fork (Celery's prefork pool, gunicorn's workers), so two processes never share a socket. They
never retry by themselves and never hold credentials: a retry after a request reached the
other side can repeat it, so retries are the caller's decision."""

import os
import threading

import requests
from requests.adapters import HTTPAdapter

_lock = threading.Lock()
_sessions: dict[str, requests.Session] = {}
_pid = os.getpid()


def session(purpose: str, *, pool_size: int = 10, user_agent: str = "") -> requests.Session:
    """The session for `purpose` in this process: keep-alive connections, `pool_size` per host
    (at least a worker's concurrency)."""
    global _pid
    with _lock:
        if _pid != os.getpid():  # forked: the parent's sockets are not ours
            _sessions.clear()
            _pid = os.getpid()
        found = _sessions.get(purpose)
        if found is None:
            found = requests.Session()
            adapter = HTTPAdapter(pool_maxsize=pool_size)
            found.mount("https://", adapter)
            found.mount("http://", adapter)
            if user_agent:
                found.headers["User-Agent"] = user_agent
            _sessions[purpose] = found
        return found
