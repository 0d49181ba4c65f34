"""The HTTP sessions of this process: one pooled `requests.Session` per purpose (the Bitrix24
authorization server, the portals' REST API, the notification providers), made anew after a
fork (Celery's prefork pool, gunicorn's workers), so two processes never share a socket. They
never retry by themselves and never hold credentials: a retry after a request reached the
other side can repeat it, so retries are the caller's decision.

The environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE,
CURL_CA_BUNDLE) is read once, when a session is made, not by requests on every request (that
cost about a quarter of a millisecond per Bitrix24 call): a proxy set before the process
starts is honoured; one changed while it runs is not (restart the process)."""

import ipaddress
import os
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

_lock = threading.Lock()
_sessions: dict[str, requests.Session] = {}
_pid = os.getpid()


class _Session(requests.Session):
    """A session that applies the proxies and CA bundle the environment had when it was made."""

    def __init__(self) -> None:
        super().__init__()
        found = urllib.request.getproxies_environment()
        self.no_proxy = found.pop("no", "")
        self.env_proxies = {k: v for k, v in found.items() if k in ("http", "https", "all")}
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.verify = bundle or True
        # requests would read the environment (and ~/.netrc) again on every request; we hold
        # no credentials, and the proxies are applied below from what was read above.
        self.trust_env = False

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:  # requests' own settings dict, with the proxies read once added
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.env_proxies and not bypasses_proxy(str(url), self.no_proxy):
            chosen = dict(merged["proxies"] or {})  # never the session's own dict
            for scheme, proxy in self.env_proxies.items():
                chosen.setdefault(scheme, proxy)
            merged["proxies"] = chosen
        return merged


def bypasses_proxy(url: str, no_proxy: str) -> bool:
    """Whether NO_PROXY's list (`no_proxy`) names the URL's host, as requests judges it: a
    name or domain suffix, `*`, or for an IP address a network in CIDR notation."""
    host = urlsplit(url).hostname
    if not host or not no_proxy:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        for entry in (part.strip() for part in no_proxy.split(",")):
            try:
                if entry and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    # typeshed omits it; the standard library's own NO_PROXY judgement, given the list
    judge = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bool(judge(host, {"no": no_proxy}))


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
            found = _Session()
            adapter = HTTPAdapter(pool_maxsize=pool_size)
            found.mount("https://", adapter)
            found.mount("http://", adapter)
            if user_agent:
                found.headers["User-Agent"] = user_agent
            _sessions[purpose] = found
        return found
