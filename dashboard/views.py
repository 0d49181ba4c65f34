"""The staff home page (`/`): what needs attention, in a constant number of queries however
many tokens there are, refreshing itself every minute.

For users with the view permission on tokens; anonymous users go to the login page.
"""

from typing import Any

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django_celery_beat.models import PeriodicTask

from core.display import ago
from dashboard import chart
from notifications.delivery import refusals
from notifications.incidents.coverage import uncovered_incidents
from notifications.models import Delivery, Incident
from portals.beat import SWEEP_TASK
from portals.models import REFRESHABLE_STATUSES, RefreshAttempt, Token, TokenStatus

VIEW = "portals.view_token"
LISTED = 10  # rows in each "soonest" list
SECRETS = ("access_token", "refresh_token", "application_token")
FAILED = (
    RefreshAttempt.Outcome.TRANSIENT_ERROR,
    RefreshAttempt.Outcome.PERMANENT_ERROR,
    RefreshAttempt.Outcome.INTERRUPTED,
    RefreshAttempt.Outcome.CONFIG_ERROR,
)
REFRESHED = (RefreshAttempt.Outcome.SUCCESS, RefreshAttempt.Outcome.RESTORED)
# How often the page reloads itself, in seconds.
REFRESH_EVERY = 60


@login_required(login_url="admin:login")
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW):
        raise PermissionDenied(_("The home page needs the permission to view tokens."))
    context = {
        **admin.site.each_context(request),
        "title": _("Status"),
        "refresh_every": REFRESH_EVERY,
        "statuses": _status_counts(),
        **_incidents(),
        **_tokens(),
        **_deliveries(),
        "last_sweep": _last_sweep(),
        "chart": _chart(),
    }
    return render(request, "dashboard/home.html", context)


def _status_counts() -> list[dict[str, Any]]:
    counts = dict(Token.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return [
        {"value": value, "label": label, "count": counts.get(value, 0)}
        for value, label in TokenStatus.choices
        if counts.get(value) or value in REFRESHABLE_STATUSES
    ]


def _incidents() -> dict[str, Any]:
    open_ = Incident.objects.filter(resolved_at=None)
    listed = list(
        open_.select_related("token__portal")
        .defer(*(f"token__{name}" for name in SECRETS))
        .order_by("-opened_at")[:LISTED]
    )
    uncovered = uncovered_incidents().count()
    return {"open_incidents": listed, "open_count": open_.count(), "uncovered": uncovered}


def _tokens() -> dict[str, Any]:
    rows = Token.objects.select_related("portal").defer(*SECRETS)
    expiring = rows.filter(status__in=REFRESHABLE_STATUSES).exclude(expires_at=None)
    failing = rows.exclude(status__in=(TokenStatus.ACTIVE, TokenStatus.DISABLED)).exclude(
        failing_since=None
    )
    return {
        "expiring": list(expiring.order_by("expires_at")[:LISTED]),
        "failing": list(failing.order_by("failing_since")[:LISTED]),
    }


def _deliveries() -> dict[str, Any]:
    failed = Delivery.objects.filter(status=Delivery.Status.FAILED)
    listed = failed.select_related("channel", "incident__token__portal").defer(
        "channel__credentials", *(f"incident__token__{name}" for name in SECRETS)
    )
    shown = list(listed.order_by("-updated_at")[:LISTED])
    for delivery in shown:  # the provider's refusal, said in the reader's language
        delivery.error = refusals.stored_text(delivery.error)
    return {
        "failed_deliveries": shown,
        "failed_count": failed.count(),
    }


def _last_sweep() -> str:
    """When beat last started the refresh sweep; else the latest scheduled refresh."""
    moment = (
        PeriodicTask.objects.filter(task=SWEEP_TASK).values_list("last_run_at", flat=True).first()
    )
    if moment is None:
        scheduled = RefreshAttempt.objects.filter(kind=RefreshAttempt.Kind.SCHEDULED)
        moment = scheduled.order_by("-started_at").values_list("started_at", flat=True).first()
    return ago(moment) if moment else _("never")


def _chart() -> chart.Chart:
    rows = (
        RefreshAttempt.objects.filter(started_at__gte=chart.start_of_window())
        .annotate(hour=TruncHour("started_at"))
        .values("hour")
        .annotate(
            ok=Count("pk", filter=Q(outcome__in=REFRESHED)),
            bad=Count("pk", filter=Q(outcome__in=FAILED)),
        )
        .values_list("hour", "ok", "bad")
        .order_by("hour")
    )
    return chart.hourly(rows)
