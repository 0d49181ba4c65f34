"""A warm token, read three ways: get_access_token(), the token API, and their baselines.

    .venv/bin/python bench/token_access.py [--calls 3000] [--http 2000]
        [--workers 2] [--clients 4] [--limiter redis|database] [--keep]

One token whose pair the fake issued (an hour to live, so nothing refreshes). Measured in the
same run, each after a warm-up:

- in this process: get_access_token(ref) against a raw ORM read of the same row (the model,
  decrypting as it does); then, through Django's test client (the whole middleware stack, no
  network), the token API against Django's simplest JSON view and against a JSON view that
  answers from the same raw ORM read (bench/_web_urls.py);
- over HTTP: the same three URLs served by gunicorn (`--workers` sync workers, as in
  production), `--clients` client threads with keep-alive sessions.

Throughput is calls / wall time; p50 and p99 are per call. The API key's rate limit lives in
Redis (`--limiter redis`, as production with REDIS_URL) or in PostgreSQL (`database`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from _setup import (
    REDIS_URL,
    ROOT,
    bench_env,
    finish,
    percentile,
    print_table,
    seed_live_tokens,
    setup_django,
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# BENCH_PORT, or one the system says is free: two runs (or a test run) never share it.
PORT = int(os.environ.get("BENCH_PORT") or _free_port())
ROUNDS = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="in-process calls per case")
    parser.add_argument("--http", type=int, default=2000, help="HTTP requests per case")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads")
    parser.add_argument("--limiter", choices=["redis", "database"], default="redis")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from tests.fakes.bitrix import FakeBitrix

    fake = FakeBitrix().start()
    redis_url = REDIS_URL if args.limiter == "redis" else ""
    env = bench_env(
        fake.base_url,
        DJANGO_SETTINGS_MODULE="_web_settings",
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
        REDIS_URL=redis_url,
        ALLOWED_HOSTS="127.0.0.1,testserver",
    )
    setup_django(env)
    try:
        run(args, fake, env)
    finally:
        fake.stop()
        finish(args.keep)


def run(args: argparse.Namespace, fake, env: dict[str, str]) -> None:
    from api import keys

    seed_live_tokens(fake, 1, due_at=datetime.now(UTC) + timedelta(hours=1))
    _, key = keys.create_key("bench", ["p0"], rate_per_minute=600000)
    results = {**in_process(args.calls, key), **over_http(args, env, key)}
    rows: list[tuple[str, object]] = []
    for name, times in results.items():
        rows.append((name, describe(times)))
    print_table(rows, f"warm token, limiter in {args.limiter} (calls/s, p50 ms, p99 ms)")
    ratios = [("get_access_token / ORM read", "get_access_token", "ORM read of the row")]
    for how in ("test client", "HTTP"):
        for base in ("simplest JSON", "ORM JSON"):
            ratios.append((f"API / {base} view ({how})", f"API ({how})", f"{base} ({how})"))
    print_table(
        [(label, ratio(results[a], results[b])) for label, a, b in ratios],
        "ratios, p50 time (and throughput baseline/ours); goal ≤ 1.5",
    )


def describe(times: tuple[float, list[float]]) -> str:
    wall, each = times
    return (
        f"{len(each) / wall:8.0f} /s   p50 {statistics.median(each) * 1000:6.3f}   "
        f"p99 {percentile(each, 0.99) * 1000:6.3f}"
    )


def ratio(ours: tuple[float, list[float]], base: tuple[float, list[float]]) -> str:
    p50 = statistics.median(ours[1]) / statistics.median(base[1])
    throughput = (len(base[1]) / base[0]) / (len(ours[1]) / ours[0])
    return f"{p50:5.2f} ×   (throughput {throughput:5.2f} ×)"


def interleaved(cases: dict[str, Callable[[], object]], calls: int) -> dict:
    """Time every case `calls` times, in ROUNDS rounds that take turns, so that a change in
    the machine's load touches every case alike. Returns {name: (wall, [per call])}."""
    for func in cases.values():  # warm-up: connections, caches, imports
        for _ in range(min(200, calls)):
            func()
    walls = dict.fromkeys(cases, 0.0)
    each: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, func in cases.items():
            began = time.perf_counter()
            for _ in range(calls // ROUNDS):
                start = time.perf_counter()
                func()
                each[name].append(time.perf_counter() - start)
            walls[name] += time.perf_counter() - began
    return {name: (walls[name], each[name]) for name in cases}


def in_process(calls: int, key: str) -> dict[str, tuple[float, list[float]]]:
    from django.test import Client

    from portals.models import Token
    from portals.tokens import get_access_token, get_token
    from portals.tokens.load import load

    def orm_read() -> str:
        return Token.objects.select_related("portal").get(reference="p0").access_token

    from api import keys

    client = Client()
    auth = {"Authorization": f"Bearer {key}"}
    api_key = keys.authenticate(f"Bearer {key}")
    assert api_key is not None

    def api() -> None:
        assert client.get("/api/tokens/p0/", headers=auth).status_code == 200

    return interleaved(
        {
            "ORM read of the row": orm_read,
            "get_access_token": lambda: get_access_token("p0"),
            # What get_access_token read before: the app too, and all three secrets decrypted.
            "  full load (refresh token, secret)": lambda: load(reference="p0"),
            "simplest JSON (test client)": lambda: client.get("/bench/json/"),
            "ORM JSON (test client)": lambda: client.get("/bench/orm/p0/"),
            "API (test client)": api,
            # Where the API's time goes, part by part:
            "  API part: key and access check": lambda: keys.authenticate(f"Bearer {key}"),
            "  API part: the key's rate limit": lambda: keys.throttle(api_key),
            "  API part: get_token": lambda: get_token("p0"),
        },
        calls,
    )


def over_http(args: argparse.Namespace, env: dict[str, str], key: str) -> dict:
    gunicorn = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{PORT}",
         "--workers", str(args.workers), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env},
    )  # fmt: skip
    try:
        wait_for_port()
        base = f"http://127.0.0.1:{PORT}"
        auth = {"Authorization": f"Bearer {key}"}
        cases = {
            "simplest JSON (HTTP)": (f"{base}/bench/json/", {}),
            "ORM JSON (HTTP)": (f"{base}/bench/orm/p0/", {}),
            "API (HTTP)": (f"{base}/api/tokens/p0/", auth),
        }
        results: dict[str, tuple[float, list[float]]] = {name: (0.0, []) for name in cases}
        for _ in range(ROUNDS):  # taking turns, as in-process
            for name, (url, headers) in cases.items():
                wall, each = load(url, headers, args.http // ROUNDS, args.clients)
                results[name] = (results[name][0] + wall, results[name][1] + each)
        return results
    finally:
        gunicorn.terminate()
        gunicorn.wait(15)


def wait_for_port() -> None:
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{PORT}/bench/json/", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    sys.exit("gunicorn did not start")


def load(url: str, headers: dict[str, str], requests_: int, clients: int) -> tuple[float, list]:
    """`requests_` requests from `clients` threads, each with its own session."""
    import requests

    per_client = max(1, requests_ // clients)
    each: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client() -> None:
        session = requests.Session()
        mine = []
        for _ in range(10):  # warm-up, before the clock starts
            session.get(url, headers=headers)
        ready.wait()
        for _ in range(per_client):
            start = time.perf_counter()
            response = session.get(url, headers=headers)
            mine.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
        with lock:
            each.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, each


if __name__ == "__main__":
    main()
