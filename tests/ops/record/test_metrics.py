"""Counters added up in the process and flushed: no statement per event, written at an
interval and at shutdown, global and never decreasing; a SIGKILL loses at most one interval.
Real processes on the test database (tests/settings.py writes at once; these turn the buffer
on with METRICS_FLUSH_SECONDS)."""

import json
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from ops.models import Counter
from ops.record import metrics
from portals.models import Token
from portals.tokens import sweep
from tests.conftest import connect
from tests.processes import ROOT, CeleryProcesses, child_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
LABELS = json.dumps({"outcome": "success"})

COUNT_THEN_WAIT = """
import sys
from django.db import connection
from django.test.utils import CaptureQueriesContext
from ops.record import metrics

for line in sys.stdin:
    n = int(line)
    if n < 0:
        sys.exit(0)  # a normal exit: atexit flushes
    with CaptureQueriesContext(connection) as queries:
        for _ in range(n):
            metrics.rest_call("success")
    print(f"counted {n} with {len(queries)} queries", flush=True)
"""


def start_counting(flush_seconds: str) -> subprocess.Popen:
    """A Python process that counts REST calls when told on stdin (a negative number: exit)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup()\n" + COUNT_THEN_WAIT],
        cwd=ROOT,
        env=child_env(METRICS_FLUSH_SECONDS=flush_seconds),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rest_calls() -> float:
    row = Counter.objects.filter(name=metrics.REST_CALLS_TOTAL, labels=LABELS).first()
    return row.value if row else 0.0


def say(proc, n: int) -> str:
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_counts_cost_no_statement_and_are_written_at_exit():
    proc = start_counting("3600")
    try:
        assert say(proc, 500) == "counted 500 with 0 queries", proc.stderr.read()
        assert rest_calls() == 0  # not written yet: the interval is an hour
        proc.stdin.write("-1\n")
        proc.stdin.flush()
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert rest_calls() == 500


def test_written_every_interval_and_a_sigkill_loses_at_most_one():
    proc = start_counting("0.2")
    try:
        assert say(proc, 100) == "counted 100 with 0 queries"
        wait_until(lambda: rest_calls() == 100, 10, "the interval's flush")
        assert say(proc, 40) == "counted 40 with 0 queries"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert 100 <= rest_calls() <= 140  # never below what was flushed; at most one interval lost
    # Another process adds to the same total: global, never decreasing.
    metrics.rest_call("success")
    assert rest_calls() >= 101


@pytest.mark.celery
def test_a_prefork_pool_process_writes_its_counts_at_warm_shutdown(
    fake_bitrix, tmp_path, broker_url
):
    token = connect(fake_bitrix)
    Token.objects.filter(pk=token.pk).update(next_refresh_at=timezone.now() - timedelta(seconds=1))
    with CeleryProcesses(tmp_path, broker_url, METRICS_FLUSH_SECONDS="3600") as celery:
        worker = celery.worker()
        from core import publish

        publish.send(sweep.REFRESH_TASK, (token.pk,))
        wait_until(lambda: Token.objects.get(pk=token.pk).version == 2, 30, "the refresh")
        wait_until(lambda: "succeeded" in celery.log("w1"), 10, "the task to end")
        total = Counter.objects.filter(name=metrics.REFRESH_TOTAL)
        assert not total.exists()  # counted in the pool process, not written yet
        worker.send_signal(signal.SIGTERM)  # a warm shutdown, as systemctl stop
        worker.wait(30)
        refreshes = total.get(labels=json.dumps({"outcome": "success"}))
        assert refreshes.value == 1
