"""The shared REST rate limit: 8 processes against one portal allowing 2/s with burst 50.

    .venv/bin/python bench/rest_limiter.py [--seconds 60] [--processes 8]
        [--rate 2] [--burst 50] [--stores redis,database] [--cost-calls 3000] [--keep]

The fake portal (in this process) keeps the portal's own leaky bucket and answers
QUERY_LIMIT_EXCEEDED when it overflows. For each store of the shared bucket (Redis as with
REDIS_URL, else a PostgreSQL row), `--processes` processes call `user.current` through
portals.rest as fast as they are let, for `--seconds`. Reported from what the fake saw:

- the sustained rate after the burst, as a share of the allowed rate (goal ≥ 95 %);
- all calls against what the bucket allows over the run (burst + rate × duration);
- QUERY_LIMIT_EXCEEDED answers (goal 0) and errors the callers saw.

Then the limiter's own cost: `ratelimit.reserve()` per call on each store (a bucket that never
makes anyone wait), against a whole `Bitrix24.call()` to the local fake (no added latency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
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
    print_table,
    setup_django,
)

CHILD = """
import sys, time
import django
django.setup()
from portals.rest import Bitrix24, RestError
b24 = Bitrix24("bench")
print("ready", flush=True)
seconds = float(sys.stdin.readline())
end, calls, errors = time.monotonic() + seconds, 0, {}
while time.monotonic() < end:
    try:
        b24.call("user.current")
        calls += 1
    except RestError as err:
        errors[err.code] = errors.get(err.code, 0) + 1
print(calls, errors, flush=True)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--stores", default="redis,database")
    parser.add_argument("--cost-calls", type=int, default=3000)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from tests.fakes.bitrix import FakeBitrix

    fake = FakeBitrix().start()
    setup_django(bench_env(fake.base_url))
    try:
        token = seed(fake, args)
        for store in args.stores.split(","):
            share(fake, args, store)
        cost(fake, args, token)
    finally:
        fake.stop()
        finish(args.keep)


def seed(fake, args: argparse.Namespace):
    """One token on the portal localhost:PORT (the fake), issued by the fake."""
    from portals.models import Portal, Token

    app = create_app(fake)
    host = f"localhost:{fake.server_host.rsplit(':', 1)[1]}"
    body = fake.issue_tokens(CLIENT_ID, host)
    portal = Portal.objects.create(
        domain=host, member_id=body["member_id"], rest_rate=args.rate, rest_burst=args.burst
    )
    token = _token_from_body(portal, app, "bench", body, datetime.now(UTC) + timedelta(hours=1))
    token.save()
    return Token.objects.get(pk=token.pk)


def share(fake, args: argparse.Namespace, store: str) -> None:
    fake.set_rest_limit(args.rate, args.burst)  # a fresh, empty bucket on the portal's side
    began = fake.now()
    env = {**os.environ, "REDIS_URL": REDIS_URL if store == "redis" else ""}
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, text=True,
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
    # After the burst (the first second), calls arrive at the bucket's pace.
    steady = [t for t in accepted if t >= accepted[0] + 1.0]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0])
    duration = accepted[-1] - accepted[0]
    allowed = args.burst + args.rate * duration
    print_table(
        [
            ("processes × seconds", f"{args.processes} × {args.seconds:g}"),
            ("portal limit (rate / burst)", f"{args.rate:g}/s, {args.burst}"),
            ("calls answered 200", len(accepted)),
            ("QUERY_LIMIT_EXCEEDED answered by the portal", limited),
            ("callers' results (calls, errors)", "; ".join(outputs)),
            ("sustained rate after the burst, /s", steady_rate),
            ("  share of the allowed rate", f"{steady_rate / args.rate:.1%}"),
            ("all calls / (burst + rate × duration)", f"{len(accepted) / allowed:.1%}"),
            ("the portal bucket's fullest", f"{fake.bucket(fake_host(fake)).max_level:.2f}"),
        ],
        f"shared limit, store: {store}",
    )


def fake_host(fake) -> str:
    return f"localhost:{fake.server_host.rsplit(':', 1)[1]}"


def cost(fake, args: argparse.Namespace, token) -> None:
    """µs per reserve() on each store, and per whole call to the local fake."""
    from django.conf import settings

    from portals.bitrix import ratelimit
    from portals.models import Portal
    from portals.rest import Bitrix24

    stores = {
        "in-process": ratelimit.LocalStore(),
        "PostgreSQL row": ratelimit.DatabaseStore(),
        "Redis": ratelimit.RedisStore(REDIS_URL),
    }
    rows = []
    for name, store in stores.items():
        rows.append((f"reserve() on {name}, µs", per_call(
            lambda s=store: s.reserve("bench:cost", 1e9, 1e9, 60), args.cost_calls)))  # fmt: skip
    fake.set_rest_limit(1e9, 1e9)
    Portal.objects.filter(pk=token.portal_id).update(rest_rate=1e9, rest_burst=10**9)
    settings.REDIS_URL = REDIS_URL
    b24 = Bitrix24("bench")
    rows.append(("Bitrix24.call() to the local fake (Redis), µs",
                 per_call(lambda: b24.call("user.current"), args.cost_calls)))  # fmt: skip
    print_table(rows, "the limiter's own cost (median per call)")


def per_call(func, calls: int) -> float:
    for _ in range(100):
        func()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


if __name__ == "__main__":
    main()
