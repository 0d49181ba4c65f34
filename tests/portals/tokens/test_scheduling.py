"""Keeping tokens fresh with real Celery worker and beat processes on PostgreSQL, each test on
Redis and on RabbitMQ (the `broker` and `celery` fixtures)."""

import os
import signal
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Incident
from portals.models import Token, TokenStatus
from portals.tokens.sweep import claim_due_tokens
from tests.conftest import connect
from tests.processes import child_pids, wait_until

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def make_due(*tokens: Token) -> None:
    Token.objects.filter(pk__in=[t.pk for t in tokens]).update(
        next_refresh_at=timezone.now() - timedelta(seconds=1)
    )


def settled(status: str) -> bool:
    """The killed refresh was taken up again and finished: a new pair, or needs re-auth."""
    token = Token.objects.get()
    finished = token.refresh_started_at is None and (token.version == 2 or status != "active")
    return finished and token.status == status


def versions() -> dict[str, int]:
    return dict(Token.objects.values_list("reference", "version"))


def cycle_done(version: int) -> bool:
    """Every token stored its pair of this cycle AND finished (the next refresh time and the
    sweep's claim are written just after the pair): only then may the test make them due
    again, or a finishing refresh would push the new due time back by 25 minutes."""
    finishing = Token.objects.exclude(claimed_until=None).exists()
    return set(versions().values()) == {version} and not finishing


def test_beat_sweep_and_worker_refresh_once_per_cycle(fake_bitrix, celery, sweep_schedule):
    token = connect(fake_bitrix)
    celery.worker()
    celery.beat()
    cycles = 3
    for cycle in range(1, cycles + 1):
        make_due(token)
        wait_until(lambda c=cycle: cycle_done(c + 1), 30, f"cycle {cycle}")
    wait_until(lambda: "Sending due task" in celery.log("beat"), 5, "beat")
    token.refresh_from_db()
    assert token.version == cycles + 1
    assert fake_bitrix.count(grant_type="refresh_token") == cycles
    assert token.next_refresh_at > timezone.now() + timedelta(minutes=20)  # 25 min, jittered
    assert token.attempts.filter(kind="scheduled", outcome="success").count() == cycles


def test_two_workers_and_two_beats_never_refresh_a_token_twice(fake_bitrix, celery, sweep_schedule):
    tokens = [connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com") for i in range(12)]
    fake_bitrix.latency = 0.05
    celery.worker("w1", concurrency=2, machine=True)  # two machines: own hostnames, VAR_DIRs
    celery.worker("w2", concurrency=2, machine=True)
    celery.beat("beat1")
    celery.beat("beat2")
    for cycle in (1, 2):
        make_due(*tokens)
        wait_until(lambda c=cycle: cycle_done(c + 1), 60, f"cycle {cycle}")
    refreshes = [r for r in fake_bitrix.token_requests if r["grant_type"] == "refresh_token"]
    assert len(refreshes) == 24
    assert all(r["error"] is None for r in refreshes), "a refresh token was reused"
    assert fake_bitrix.max_concurrent_refreshes == 1
    assert set(versions().values()) == {3}


@pytest.mark.parametrize(("rotation", "ends"), [("strict", "needs_reauth"), ("lenient", "active")])
def test_a_worker_killed_mid_refresh_ends_valid_or_needs_reauth(
    fake_bitrix, tmp_path, broker, sweep_schedule, rotation, ends
):
    from tests.processes import CeleryProcesses

    token = connect(fake_bitrix)
    fake_bitrix.rotation = rotation
    fake_bitrix.timeout_sleep = 30
    fake_bitrix.fail_next("hang_after_processing")
    with CeleryProcesses(tmp_path, broker, TOKEN_REFRESH_LEASE="3") as celery:
        worker = celery.worker(concurrency=1)
        celery.beat()
        make_due(token)
        wait_until(lambda: fake_bitrix.count(grant_type="refresh_token") == 1, 30, "refresh")
        for pid in child_pids(worker.pid):
            os.kill(pid, signal.SIGKILL)  # Bitrix rotated; the worker dies before storing
        wait_until(lambda: settled(ends), 60, f"status {ends}")
        assert "Restoring" in celery.log("w1") or "WorkerLostError" in celery.log("w1")
    token.refresh_from_db()
    assert token.refresh_started_at is None
    outcomes = Counter(token.attempts.values_list("outcome", flat=True))
    assert outcomes["interrupted"] == 1
    if ends == "active":
        assert fake_bitrix.access_token_valid(token.access_token)
        assert not Incident.objects.exists()
    else:
        assert Incident.objects.get(token=token).permanent
        assert not Token.objects.due(timezone.now() + timedelta(days=40)).exists()


def test_catch_up_after_beat_was_down_stays_under_the_rate(
    fake_bitrix, tmp_path, broker, sweep_schedule
):
    from tests.processes import CeleryProcesses

    tokens = [connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com") for i in range(20)]
    Token.objects.update(next_refresh_at=timezone.now() - timedelta(minutes=15))
    fake_bitrix.reset_observations()
    with CeleryProcesses(tmp_path, broker, REFRESH_MAX_PER_SWEEP="4") as celery:
        celery.worker(concurrency=2)
        celery.beat()
        wait_until(lambda: set(versions().values()) == {2}, 90, "catch-up")
    times = sorted(r["t"] for r in fake_bitrix.token_requests)
    assert len(times) == len(tokens)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 8, f"{busiest} refreshes within one second"
    assert times[-1] - times[0] >= 3.0  # 20 tokens at 4 per sweep need at least 5 sweeps


def test_a_second_sweep_claims_nothing_the_first_claimed(fake_bitrix):
    tokens = [connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com") for i in range(5)]
    make_due(*tokens)
    first = claim_due_tokens(limit=3)
    second = claim_due_tokens(limit=10)
    assert len(first) == 3 and len(second) == 2
    assert not set(first) & set(second)
    assert claim_due_tokens() == []
    assert Token.objects.filter(status=TokenStatus.ACTIVE).count() == 5


def sweeps_done(celery) -> int:
    return sum(
        "sweep_due_tokens[" in line and "succeeded" in line
        for line in celery.log("w1").splitlines()
    )


def test_failures_through_real_worker_and_beat(fake_bitrix, tmp_path, broker, sweep_schedule):
    """Blips stay quiet; trouble before expiry opens one incident; a permanent error opens one
    at once and stops; recovery and re-connection resolve — all through beat and a worker."""
    from tests.processes import CeleryProcesses

    token = connect(fake_bitrix)
    fast_backoff = {"REFRESH_BACKOFF_BASE_SECONDS": "0.3", "REFRESH_BACKOFF_MAX_SECONDS": "0.5"}
    with CeleryProcesses(tmp_path, broker, **fast_backoff) as celery:
        celery.worker(concurrency=1)
        celery.beat()
        # 3 transient failures, then success: no incident.
        fake_bitrix.fail_next("status", count=3, status=503)
        make_due(token)
        wait_until(lambda: versions()["token"] == 2, 30, "recovery after 3 failures")
        assert not Incident.objects.exists()
        assert token.attempts.filter(outcome="transient_error").count() == 3

        # Transient failures while the access token is about to expire: one incident.
        fake_bitrix.fail_next("status", count=1000, status=502)
        Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=40))
        make_due(token)
        wait_until(lambda: Incident.objects.filter(occurrences__gte=3).exists(), 30, "repeats")
        assert Incident.objects.count() == 1
        fake_bitrix.clear_faults()
        wait_until(lambda: Incident.objects.get().resolved_at is not None, 30, "resolved")

        # A permanent error: one incident at once, and refreshing stops.
        fake_bitrix.set_installed(token.app.client_id, token.portal.domain, False)
        make_due(token)
        wait_until(lambda: Token.objects.get().status == TokenStatus.UNINSTALLED, 30, "stop")
        requests_then = fake_bitrix.count(grant_type="refresh_token")
        make_due(token)
        sweeps_then = sweeps_done(celery)
        wait_until(lambda: sweeps_done(celery) >= sweeps_then + 3, 30, "three more sweeps")
        assert fake_bitrix.count(grant_type="refresh_token") == requests_then
        permanent = Incident.objects.get(resolved_at=None)
        assert permanent.permanent and permanent.occurrences == 1

    # Re-connecting resolves it.
    fake_bitrix.set_installed(token.app.client_id, token.portal.domain, True)
    connect(fake_bitrix)
    permanent.refresh_from_db()
    assert permanent.resolved_at is not None
