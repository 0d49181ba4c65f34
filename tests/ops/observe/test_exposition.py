"""GET /metrics: Prometheus text that parses, moves with refreshes and deliveries, is global
across processes, never goes down, and is readable only with METRICS_TOKEN or the view
permission."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from notifications.delivery.sending import process_delivery
from notifications.incidents import lifecycle
from notifications.models import Delivery
from ops.observe import retention
from ops.record import metrics
from ops.record.heartbeat import sweep_started
from portals.models import Token, TokenStatus
from tests.conftest import run_due
from tests.notifications_helpers import make_channel, make_tokens

pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
BEARER = "metrics-bearer-3f9c1e"


@pytest.fixture
def scrape(client, settings):
    """GET /metrics with the bearer; returns {sample name + labels: value}."""
    settings.METRICS_TOKEN = BEARER

    def scrape_(path: str = "/metrics") -> dict[tuple[str, frozenset], float]:
        response = client.get(path, headers={"Authorization": f"Bearer {BEARER}"})
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain; version=")
        samples = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    return scrape_


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_it_answers_on_metrics_and_metrics_slash_with_every_contract_name(scrape):
    for path in ("/metrics", "/metrics/"):
        names = {name for name, _ in scrape(path)}
        assert {
            "b24keeper_tokens",
            "b24keeper_refresh_total",
            "b24keeper_refresh_duration_seconds_bucket",
            "b24keeper_refresh_duration_seconds_sum",
            "b24keeper_refresh_duration_seconds_count",
            "b24keeper_sweep_last_run_timestamp_seconds",
            "b24keeper_incidents_open",
        } <= names


def test_it_refuses_callers_without_the_bearer_or_the_view_permission(client, settings):
    settings.METRICS_TOKEN = BEARER
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": BEARER}).status_code == 401
    staff = get_user_model().objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get("/metrics").status_code == 403  # is_staff alone is not enough
    staff.user_permissions.add(Permission.objects.get(codename="view_token"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    assert client.get("/metrics").status_code == 200


def test_without_metrics_token_no_bearer_is_accepted(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401


def test_refresh_counters_and_the_duration_histogram_move_with_refreshes(
    fake_bitrix, token, scrape
):
    before = scrape()
    assert value(before, "b24keeper_refresh_total", outcome="success") == 0  # connect is no refresh
    assert value(before, "b24keeper_tokens", status="active") == 1
    assert run_due(token) == "refreshed"
    fake_bitrix.fail_next("status", status=503)
    assert run_due(token) == "failed"
    transient_code = Token.objects.get().last_error_code
    fake_bitrix.set_installed(token.app.client_id, token.portal.domain, False)
    assert run_due(token) == "failed"
    permanent_code = Token.objects.get().last_error_code
    after = scrape()
    assert value(after, "b24keeper_refresh_total", outcome="success") == 1
    assert value(after, "b24keeper_refresh_total", outcome="transient_error") == 1
    assert value(after, "b24keeper_refresh_total", outcome="permanent_error") == 1
    assert value(after, "b24keeper_refresh_failures_total", code=transient_code) == 1
    assert value(after, "b24keeper_refresh_failures_total", code=permanent_code) == 1
    assert transient_code != permanent_code
    assert value(after, "b24keeper_refresh_duration_seconds_count") == 3
    assert value(after, "b24keeper_refresh_duration_seconds_bucket", le="+Inf") == 3
    assert 0 < value(after, "b24keeper_refresh_duration_seconds_sum") < 3
    assert value(after, "b24keeper_tokens", status="active") == 0
    assert value(after, "b24keeper_tokens", status=TokenStatus.UNINSTALLED) == 1
    assert value(after, "b24keeper_incidents_open") == 1


def test_deliveries_total_counts_sent_and_failed_by_provider(
    fakes, broker_url, notify, scrape, django_capture_on_commit_callbacks
):
    [token] = make_tokens(1)
    make_channel("telegram")
    make_channel("twilio")
    fakes.twilio.fail_next("invalid_to")  # a permanent error: that delivery fails
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.open_incident(token, code="invalid_grant", message="m", permanent=True)
    Delivery.objects.update(next_attempt_at=Delivery.objects.first().created_at)
    for delivery in Delivery.objects.all():
        process_delivery(delivery.pk)
    samples = scrape()
    assert value(samples, "b24keeper_deliveries_total", provider="telegram", status="sent") == 1
    assert value(samples, "b24keeper_deliveries_total", provider="twilio", status="failed") == 1


def test_counters_never_go_down_when_history_is_pruned(fake_bitrix, token, scrape, settings):
    for _ in range(3):
        run_due(token)
    before = value(scrape(), "b24keeper_refresh_total", outcome="success")
    token.attempts.update(started_at=token.attempts.first().started_at.replace(year=2020))
    settings.HISTORY_RETENTION_DAYS = 1
    assert retention.prune().attempts == 3  # the code exchange and two refreshes; the latest stays
    assert value(scrape(), "b24keeper_refresh_total", outcome="success") == before == 3


def test_the_sweep_timestamp_is_when_the_sweep_last_started(scrape):
    assert value(scrape(), "b24keeper_sweep_last_run_timestamp_seconds") == 0
    sweep_started()
    stamp = value(scrape(), "b24keeper_sweep_last_run_timestamp_seconds")
    from time import time

    assert time() - 5 < stamp <= time()


@pytest.mark.django_db(transaction=True)
def test_counting_from_many_connections_at_once_loses_nothing():
    """Every increment is one atomic upsert: eight threads (eight database sessions, as eight
    worker processes would be) counting the same series at once add up exactly."""

    def count_many() -> None:
        try:
            for _ in range(100):
                metrics.rest_call("success")
                metrics.observe(metrics.REFRESH_DURATION, 0.2)
        finally:
            connection.close()

    threads = [threading.Thread(target=count_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    from ops.models import Counter

    rows = dict(Counter.objects.values_list("name", "value"))
    assert rows[metrics.REST_CALLS_TOTAL] == 800
    assert rows[f"{metrics.REFRESH_DURATION}_count"] == 800
    assert rows[f"{metrics.REFRESH_DURATION}_sum"] == pytest.approx(160)
