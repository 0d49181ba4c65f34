"""Bounded history: old refresh attempts and deliveries go, in batches; each token's latest
attempt, the attempts behind an open incident and the deliveries of open incidents stay."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as global_apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications.models import Channel, Delivery, Incident
from ops.beat import DAY, PRUNE_TASK
from ops.observe import retention
from ops.tasks import prune_history
from portals.models import RefreshAttempt, Token
from tests.notifications_helpers import make_channel, make_tokens

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def attempts(token: Token, *days_ago: float) -> None:
    RefreshAttempt.objects.bulk_create(
        RefreshAttempt(
            token=token,
            kind="scheduled",
            outcome="success",
            started_at=NOW - timedelta(days=days),
            finished_at=NOW - timedelta(days=days),
        )
        for days in days_ago
    )


def ages(token: Token) -> list[int]:
    started = token.attempts.order_by("started_at").values_list("started_at", flat=True)
    return [(NOW - s).days for s in started]


def test_it_deletes_old_attempts_and_keeps_each_tokens_latest(settings):
    settings.HISTORY_RETENTION_DAYS = 30
    busy, idle = make_tokens(2)
    attempts(busy, 40, 35, 31, 29, 1)
    attempts(idle, 60, 50, 45)  # nothing recent: its latest stays, however old
    assert retention.prune(NOW).attempts == 5
    assert ages(busy) == [29, 1]
    assert ages(idle) == [45]


def test_it_keeps_every_attempt_of_a_token_whose_incident_is_open():
    failing, recovered = make_tokens(2)
    attempts(failing, 90, 60, 40, 2)
    attempts(recovered, 90, 60, 40, 2)
    Incident.objects.create(token=failing, message="open")
    Incident.objects.create(token=recovered, message="over", resolved_at=NOW)
    retention.prune(NOW)
    assert ages(failing) == [90, 60, 40, 2]
    assert ages(recovered) == [2]


def test_it_deletes_old_deliveries_of_resolved_incidents_only():
    token, other = make_tokens(2)
    channel = make_channel("telegram")
    resolved = Incident.objects.create(token=token, message="over", resolved_at=NOW)
    still_open = Incident.objects.create(token=other, message="open")

    def delivery(incident: Incident, days: int, event: str = "opened") -> Delivery:
        created = NOW - timedelta(days=days)
        return Delivery.objects.create(
            incident=incident, channel=channel, event=event, status="sent", created_at=created
        )

    old = delivery(resolved, 40)
    recent = delivery(resolved, 3, "resolved")
    kept_open = delivery(still_open, 40)
    # An old digest lead whose folded delivery is recent: the lead goes, the link clears.
    recent.digest = old
    recent.save()
    assert retention.prune(NOW).deliveries == 1
    assert set(Delivery.objects.values_list("pk", flat=True)) == {recent.pk, kept_open.pk}
    recent.refresh_from_db()
    assert recent.digest is None
    assert Channel.objects.filter(pk=channel.pk).exists()


def test_small_batches_delete_the_same_rows():
    tokens = make_tokens(3)
    for token in tokens:
        attempts(token, 50, 45, 40, 35, 10)
    result = retention.prune(NOW, batch=2)
    assert result.attempts == 12
    assert result.batches >= 6
    assert [ages(t) for t in tokens] == [[10]] * 3


def test_the_walk_stops_at_the_first_range_with_nothing_old():
    [token] = make_tokens(1)
    attempts(token, *([1] * 50))
    result = retention.prune(NOW, batch=10)
    assert (result.attempts, result.batches) == (0, 0)


def test_the_daily_task_is_created_by_the_prune_migration_and_prunes():
    PeriodicTask.objects.filter(task=PRUNE_TASK).delete()
    migration = importlib.import_module("ops.migrations.0002_prune_history_daily")
    migration.create_prune_task(global_apps, None)
    migration.create_prune_task(global_apps, None)  # idempotent
    task = PeriodicTask.objects.get(task=PRUNE_TASK)
    assert task.enabled
    assert task.interval.schedule.run_every.total_seconds() == DAY
    [token] = make_tokens(1)
    attempts(token, 100, 90)
    assert prune_history() == 1
