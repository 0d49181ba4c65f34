"""One row of every model the admin shows, the four staff roles, and a snapshot of every admin
table: what the admin permission tests (tests/roles/test_admin_actions.py,
tests/roles/test_role_matrix.py) walk through. A model registered later without a row here
fails `build` by name."""

from datetime import timedelta

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Model
from django.test import Client
from django.utils import timezone

from api import keys
from core.roles import OPERATORS, VIEWERS
from portals.models import Token
from tests.notifications_helpers import make_channel

ROLES = ("anonymous", "viewer", "operator", "superuser")
# Where a view's rows come from (besides the admin's own models).
EXTRA_MODELS = ("portals.PendingPair", "portals.ConnectState")


def login(role: str) -> Client:
    """A browser of `role`: nobody, a member of one of the two groups, or a superuser."""
    client = Client()
    if role == "anonymous":
        return client
    user = get_user_model().objects.create_user(
        f"{role}-user", password=f"pw-{role}-123", is_staff=True
    )
    if role == "superuser":
        user.is_superuser = True
        user.save()
    else:
        user.groups.add(Group.objects.get(name={"viewer": VIEWERS, "operator": OPERATORS}[role]))
    client.force_login(user)
    return client


def build(token: Token) -> dict[str, Model]:
    """One row of each registered model (the token's own rows come from a real connect)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from notifications.models import Delivery, Incident
    from portals.beat import SWEEP_TASK, ensure_sweep_schedule

    ensure_sweep_schedule(PeriodicTask, IntervalSchedule, 60)
    channel = make_channel("telegram")
    incident = Incident.objects.create(token=token, message="refresh failed", error_code="x")
    visit = {"user_agent": "test", "ip_address": "127.0.0.1", "username": "someone"}
    api_key, _key = keys.create_key("billing", [token.reference])
    rows: dict[str, Model] = {
        "auth.group": Group.objects.get(name=VIEWERS),
        "auth.user": get_user_model().objects.create_user("colleague", is_staff=True),
        "django_celery_beat.periodictask": PeriodicTask.objects.get(task=SWEEP_TASK),
        "django_celery_beat.intervalschedule": IntervalSchedule.objects.first(),
        "django_celery_beat.crontabschedule": CrontabSchedule.objects.create(minute="5"),
        "django_celery_beat.solarschedule": SolarSchedule.objects.create(
            event="sunrise", latitude=55.75, longitude=37.62
        ),
        "django_celery_beat.clockedschedule": ClockedSchedule.objects.create(
            clocked_time=timezone.now() + timedelta(days=1)
        ),
        "axes.accessattempt": AccessAttempt.objects.create(
            **visit, http_accept="*/*", path_info="/admin/login/", failures_since_start=1
        ),
        "axes.accesslog": AccessLog.objects.create(**visit, path_info="/admin/login/"),
        "axes.accessfailurelog": AccessFailureLog.objects.create(
            **visit, path_info="/admin/login/"
        ),
        "portals.portal": token.portal,
        "portals.appcredentials": token.app,
        "portals.token": token,
        "portals.refreshattempt": token.attempts.first(),
        "notifications.channel": channel,
        "notifications.incident": incident,
        "notifications.delivery": Delivery.objects.create(
            incident=incident, channel=channel, event=Delivery.Event.OPENED
        ),
        "api.apikey": api_key,
    }
    missing = {m._meta.label_lower for m in admin.site._registry} - set(rows)
    assert not missing, f"tests/admin_world.py: add a row for {sorted(missing)}"
    assert all(row is not None for row in rows.values()), rows
    return rows


def snapshot() -> dict[str, list[dict]]:
    """Every row of every admin table (and of the connect flows' own), to compare."""
    labels = [m._meta.label for m in admin.site._registry] + list(EXTRA_MODELS)
    return {label: list(apps.get_model(label).objects.order_by("pk").values()) for label in labels}


def changed(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> list[str]:
    """The tables whose rows differ, for a readable assertion."""
    return [label for label in before if before[label] != after[label]]
