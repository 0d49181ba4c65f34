"""The sweeper process of bench/refresh_cycle.py (not run by hand).

Calls portals.tokens.sweep.sweep() every --interval seconds, the way beat's sweep task would, until
it has enqueued --expect tokens. Prints "ready", waits for a line on stdin, then prints one
JSON line: each sweep's start, end and count, and this process's CPU seconds while sweeping.
"""

import argparse
import json
import resource
import sys
import time

import _setup  # noqa: F401  (puts the project root on sys.path)
import django


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args()
    django.setup()
    from portals.tokens.sweep import sweep

    print("ready", flush=True)
    sys.stdin.readline()
    cpu_before, sweeps, total = cpu_seconds(), [], 0
    deadline = time.monotonic() + args.deadline
    while total < args.expect and time.monotonic() < deadline:
        began = time.time()
        count = sweep()
        sweeps.append({"start": began, "end": time.time(), "count": count})
        total += count
        if total < args.expect:
            time.sleep(args.interval)
    print(json.dumps({"sweeps": sweeps, "cpu": cpu_seconds() - cpu_before}), flush=True)


if __name__ == "__main__":
    main()
