"""When failures become incidents: blips stay quiet, real trouble opens one incident."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.incidents import lifecycle
from notifications.models import Incident
from portals.models import Token, TokenStatus
from tests.conftest import CLIENT_ID, connect, run_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def signals():
    seen: list[tuple[str, Incident]] = []
    receivers = {
        "opened": lifecycle.incident_opened,
        "updated": lifecycle.incident_updated,
        "resolved": lifecycle.incident_resolved,
    }
    handlers = {}
    for name, signal in receivers.items():
        handlers[name] = lambda sender, incident, n=name, **kw: seen.append((n, incident))
        signal.connect(handlers[name], weak=False)
    yield seen
    for name, signal in receivers.items():
        signal.disconnect(handlers[name])


def test_three_transient_failures_then_success_open_no_incident(
    fake_bitrix, token, django_capture_on_commit_callbacks, signals
):
    fake_bitrix.fail_next("status", count=3, status=503)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [run_due(token) for _ in range(4)]
    assert outcomes == ["failed", "failed", "failed", "refreshed"]
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.failure_count == 0
    assert not Incident.objects.exists() and signals == []


def test_a_failing_token_shows_the_count_the_error_and_the_next_attempt(fake_bitrix, token):
    fake_bitrix.fail_next("status", count=2, status=500)
    run_due(token)
    run_due(token)
    token.refresh_from_db()
    assert token.status == TokenStatus.REFRESH_FAILING
    assert token.failure_count == 2
    assert "INTERNAL_SERVER_ERROR" in token.last_error
    backoff = token.next_refresh_at - timezone.now()
    assert timedelta(seconds=25) < backoff <= timedelta(seconds=60)  # second backoff step


def test_transient_failures_until_expiry_open_one_incident(
    fake_bitrix, token, django_capture_on_commit_callbacks, signals
):
    fake_bitrix.fail_next("status", count=6, status=502)
    with django_capture_on_commit_callbacks(execute=True):
        run_due(token, expires_in=timedelta(minutes=30))  # far from expiry: quiet
        assert not Incident.objects.exists()
        for _ in range(5):
            run_due(token, expires_in=timedelta(seconds=40))  # consumers about to fail
    incident = Incident.objects.get()
    assert incident.is_open and not incident.permanent
    assert incident.occurrences == 5 and incident.error_code == "INTERNAL_SERVER_ERROR"
    assert [name for name, _ in signals] == ["opened"] + ["updated"] * 4
    with django_capture_on_commit_callbacks(execute=True):
        run_due(token)  # Bitrix is back
    incident.refresh_from_db()
    assert incident.resolved_at is not None
    assert signals[-1][0] == "resolved"


def test_a_permanent_failure_opens_one_incident_at_once_and_stops(
    fake_bitrix, token, django_capture_on_commit_callbacks, signals
):
    fake_bitrix.set_installed(CLIENT_ID, token.portal.domain, False)
    with django_capture_on_commit_callbacks(execute=True):
        assert run_due(token, expires_in=timedelta(minutes=50)) == "failed"
        assert run_due(token) == "skipped"  # refreshing has stopped
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED
    incident = Incident.objects.get()
    assert incident.permanent and incident.error_code == "NOT_INSTALLED"
    assert "Install the application on the portal again" in incident.message
    assert [name for name, _ in signals] == ["opened"]
    assert fake_bitrix.count(grant_type="refresh_token") == 1
    assert not Token.objects.due(timezone.now() + timedelta(days=60)).exists()


def test_reconnecting_resolves_the_incident(fake_bitrix, token, django_capture_on_commit_callbacks):
    fake_bitrix.revoke_chain(token.refresh_token)
    with django_capture_on_commit_callbacks(execute=True):
        run_due(token)
    token.refresh_from_db()
    assert token.status == TokenStatus.NEEDS_REAUTH
    assert Incident.objects.get().is_open
    connect(fake_bitrix)
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE
    assert Incident.objects.get().resolved_at is not None


def test_a_provider_wide_outage_opens_one_incident_not_one_per_token(fake_bitrix, settings):
    settings.OUTAGE_MIN_TOKENS = 5
    tokens = [connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com") for i in range(10)]
    fake_bitrix.fail_next("status", count=10, status=503)
    for token in tokens:
        run_due(token, expires_in=timedelta(seconds=40))
    outage = Incident.objects.get(kind=Incident.Kind.OUTAGE)
    assert outage.is_open and outage.affected_tokens >= 5
    assert Incident.objects.filter(kind=Incident.Kind.TOKEN).count() < 5
    for token in tokens:
        run_due(token)
    outage.refresh_from_db()
    assert outage.resolved_at is not None
    assert not Incident.objects.filter(resolved_at=None).exists()
