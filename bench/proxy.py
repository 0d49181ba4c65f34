"""The REST proxy (SITE_URL/rest/<token id>/<key>/<method>): what it adds to a call, and how
well it keeps several processes under a portal's shared limit.

    .venv/bin/python bench/proxy.py [--calls 400] [--clients 1,8] [--workers 2] [--threads 8]
        [--seconds 30] [--processes 8] [--rate 2] [--burst 50] [--keep]

gunicorn (threaded workers, as in production; the key checks cached, the portal bucket in
Redis as with REDIS_URL) serves b24keeper; the fake Bitrix24 runs in this process.

1. Overhead: `user.current` straight to the fake (the token in the JSON body, as a library
   holding the token sends it) against the same call through the proxy, `--calls` calls per
   client, 1 and 8 concurrent clients with keep-alive sessions; p50 and p99 per call, and the
   p50 the proxy adds (goal ≤ 2 ms). The portal's limit is out of the way here.
2. The shared limit: `--processes` processes call through the proxy as fast as they are let
   for `--seconds`, the portal allowing `--rate`/s with burst `--burst`. From what the fake
   saw: the sustained rate after the burst as a share of the allowed rate (goal ≥ 95 %), and
   QUERY_LIMIT_EXCEEDED answers from the portal (goal 0); the proxy's own 503s too.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from _setup import (
    CLIENT_ID,
    REDIS_URL,
    ROOT,
    _token_from_body,
    bench_env,
    create_app,
    finish,
    percentile,
    print_table,
    setup_django,
)

CHILD = """
import sys, time, requests
url = sys.argv[1]
session = requests.Session()
print("ready", flush=True)
seconds = float(sys.stdin.readline())
end, calls, errors = time.monotonic() + seconds, 0, {}
while time.monotonic() < end:
    answer = session.post(url, json={}, timeout=30)
    if answer.status_code == 200:
        calls += 1
    else:
        code = answer.json().get("error", answer.status_code)
        errors[code] = errors.get(code, 0) + 1
print(calls, errors, flush=True)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per client (overhead)")
    parser.add_argument("--clients", default="1,8", help="concurrent clients (overhead)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--seconds", type=float, default=30, help="the shared-limit run")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from tests.fakes.bitrix import FakeBitrix

    fake = FakeBitrix().start()
    port = free_port()
    env = bench_env(
        fake.base_url,
        REDIS_URL=REDIS_URL,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SITE_URL=f"http://127.0.0.1:{port}",
    )
    setup_django(env)
    web = None
    try:
        token, key = seed(fake)
        web = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--worker-class", "gthread",
             "--threads", str(args.threads), "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env},
        )  # fmt: skip
        wait_for(f"http://127.0.0.1:{port}/health/")
        hook = f"http://127.0.0.1:{port}/rest/{token.pk}/{key}/"
        overhead(fake, args, token, hook)
        shared(fake, args, token, hook)
    finally:
        if web is not None:
            web.terminate()
            web.wait(15)
        fake.stop()
        finish(args.keep)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code in (200, 503):
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer at {url}")


def seed(fake):
    """One token on the portal localhost:PORT (the fake) and a proxy key for it."""
    from api import keys
    from portals.models import Portal, Token

    app = create_app(fake)
    host = f"localhost:{fake.server_host.rsplit(':', 1)[1]}"
    body = fake.issue_tokens(CLIENT_ID, host)
    fake.access_lifetime = 24 * 3600
    portal = Portal.objects.create(domain=host, member_id=body["member_id"])
    token = _token_from_body(portal, app, "bench", body, datetime.now(UTC) + timedelta(hours=1))
    token.save()
    _, key = keys.create_key("bench", ["bench"], scopes="proxy", rate_per_minute=600000)
    return Token.objects.select_related("portal").get(pk=token.pk), key


def overhead(fake, args: argparse.Namespace, token, hook: str) -> None:
    from portals.models import Portal

    fake.set_rest_limit(1e9, 1e9)
    Portal.objects.filter(pk=token.portal_id).update(rest_rate=1e6, rest_burst=10**6)
    direct = f"{token.client_endpoint}user.current"
    auth = {"auth": token.access_token}
    rows: list[tuple[str, object]] = []
    checks = []
    for clients in [int(c) for c in args.clients.split(",")]:
        straight = timed(direct, auth, clients, args.calls)
        proxied = timed(hook + "user.current", {}, clients, args.calls)
        added = (percentile(proxied, 0.5) - percentile(straight, 0.5)) * 1000
        rows += [
            (f"{clients} client(s): straight to the fake p50 / p99, ms",
             f"{percentile(straight, 0.5) * 1000:.2f} / {percentile(straight, 0.99) * 1000:.2f}"),
            (f"{clients} client(s): through the proxy p50 / p99, ms",
             f"{percentile(proxied, 0.5) * 1000:.2f} / {percentile(proxied, 0.99) * 1000:.2f}"),
            (f"{clients} client(s): added at p50, ms (goal ≤ 2)", f"{added:.2f}"),
        ]  # fmt: skip
        checks.append(len(proxied) == clients * args.calls)
    print_table(rows, f"proxy overhead ({args.calls} calls per client)")
    if not all(checks):
        raise SystemExit("some proxied calls failed")


def timed(url: str, body: dict, clients: int, calls: int) -> list[float]:
    """Per-call seconds of `calls` POSTs by each of `clients` threads (200s only)."""
    import requests

    times: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        for _ in range(min(20, calls)):  # warm the connection and the key cache
            session.post(url, json=body, timeout=30)
        mine = []
        for _ in range(calls):
            start = time.perf_counter()
            answer = session.post(url, json=body, timeout=30)
            if answer.status_code == 200:
                mine.append(time.perf_counter() - start)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def shared(fake, args: argparse.Namespace, token, hook: str) -> None:
    from api.proxy import CREDENTIAL_SECONDS
    from portals.models import Portal

    Portal.objects.filter(pk=token.portal_id).update(rest_rate=args.rate, rest_burst=args.burst)
    # The proxy reads a token's row (its portal's limit with it) once a second per process:
    # let the overhead run's limits go out of its memory first.
    time.sleep(CREDENTIAL_SECONDS + 0.5)
    fake.set_rest_limit(args.rate, args.burst)
    began = fake.now()
    url = hook + "user.current"
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, url], text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(args.processes)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write(f"{args.seconds}\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=args.seconds + 120)[0].strip() for proc in procs]
    calls = [c for c in fake.rest_calls if c.t >= began and c.method == "user.current"]
    accepted = sorted(c.t for c in calls if c.status == 200)
    limited = sum(1 for c in calls if c.error == "QUERY_LIMIT_EXCEEDED")
    steady = [t for t in accepted if t >= accepted[0] + 1.0]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    print_table(
        [
            ("processes × seconds", f"{args.processes} × {args.seconds:g}"),
            ("portal limit (rate / burst)", f"{args.rate:g}/s, {args.burst}"),
            ("calls answered 200", len(accepted)),
            ("QUERY_LIMIT_EXCEEDED answered by the portal (goal 0)", limited),
            ("callers' results (calls, errors)", "; ".join(outputs)),
            ("sustained rate after the burst, /s", f"{steady_rate:.3f}"),
            ("  share of the allowed rate (goal ≥ 95 %)", f"{steady_rate / args.rate:.1%}"),
        ],
        "proxy under the shared limit",
    )
    if limited:
        raise SystemExit("the portal answered QUERY_LIMIT_EXCEEDED")


if __name__ == "__main__":
    main()
