"""The admin pages of django-celery-beat and django-axes, re-registered so that every action
declares a permission (README "Who may do what") and their rows and columns read in the
reader's language (core.thirdparty_labels).

Their actions declare none, so Django offers them to anyone who may view the list: a viewer
could disable "Sweep due tokens" and stop every refresh. Each action here is the library's own,
unchanged, wrapped to declare the model permission it needs; Django then checks
`has_<permission>_permission` before offering or running it. Registered by
core.apps.AdminConfig.ready, after every app's admin module (autodiscover).
"""

import functools
from collections.abc import Callable
from typing import Any

from axes import admin as axes_admin
from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext, gettext_lazy, ngettext
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from core import thirdparty_labels

Action = Callable[[Any, Any, Any], Any]


def requiring(permission: str, action: Action) -> Action:
    """`action` as it is (name, description), declaring that it needs `permission`."""

    @admin.action(permissions=[permission])
    @functools.wraps(action)  # keeps the library's description: the page reads as before
    def guarded(modeladmin: admin.ModelAdmin, request: Any, queryset: Any) -> Any:
        return action(modeladmin, request, queryset)

    return guarded


@admin.display(description=gettext_lazy("Name"), ordering="name")
def shown_name(obj: PeriodicTask) -> str:
    """The task's name as the reader's language says it (the row keeps its English name)."""
    return gettext(obj.name)


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    # The name translated; the "scheduler" column (the schedule's type, an English word that
    # the schedule column beside it already tells) left out.
    list_display = (
        "shown_name",
        *(c for c in beat_admin.PeriodicTaskAdmin.list_display[1:] if c != "scheduler"),
    )
    list_display_links = ("shown_name",)
    shown_name = staticmethod(shown_name)

    # Enabling, disabling or running a periodic task changes what the beat does: the same
    # permission as editing the task.
    enable_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.enable_tasks)
    disable_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.disable_tasks)
    toggle_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.toggle_tasks)
    run_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.run_tasks)


class PeriodicTaskInline(beat_admin.PeriodicTaskInline):
    """The tasks of a schedule, their names translated."""

    fields = ("shown_name", "task", "args", "kwargs")
    readonly_fields = fields
    shown_name = staticmethod(shown_name)


def _with_translated_inline(schedule_admin: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    return type(schedule_admin.__name__, (schedule_admin,), {"inlines": [PeriodicTaskInline]})


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    @admin.display(description=gettext_lazy("Access attempt expiration"))
    def expiration(self, obj: AccessAttempt) -> Any:
        return super().expiration(obj)

    @admin.display(description=gettext_lazy("Status"))
    def status(self, obj: AccessAttempt) -> str:
        left = settings.AXES_FAILURE_LIMIT - obj.failures_since_start
        if left <= 0:
            return gettext("Locked Out")
        return ngettext("%(count)d attempt left", "%(count)d attempts left", left) % {"count": left}

    # The clean-up deletes attempts (and with them lockouts): the permission to delete them.
    @admin.action(
        description=axes_admin.AccessAttemptAdmin.cleanup_expired_attempts.short_description,
        permissions=["delete"],
    )
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The library's action reads what only its login handler puts on a request (the
        # attempt's time): without this it is a server error.
        AxesProxyHandler.update_request(request)
        super().cleanup_expired_attempts(request, queryset)


GUARDED: tuple[tuple[type[Model], type[admin.ModelAdmin]], ...] = (
    (PeriodicTask, PeriodicTaskAdmin),
    (AccessAttempt, AccessAttemptAdmin),
    (ClockedSchedule, _with_translated_inline(beat_admin.ClockedScheduleAdmin)),
    (CrontabSchedule, _with_translated_inline(beat_admin.CrontabScheduleAdmin)),
    (SolarSchedule, _with_translated_inline(beat_admin.SolarScheduleAdmin)),
    (IntervalSchedule, _with_translated_inline(beat_admin.IntervalScheduleAdmin)),
)


def register(site: admin.AdminSite) -> None:
    """Put the guarded pages in place of the libraries' own (where the library registered
    one: django-axes does not with AXES_ENABLE_ADMIN off), and show the libraries' rows in the
    reader's language (core.thirdparty_labels)."""
    thirdparty_labels.install()
    for model, model_admin in GUARDED:
        if site.is_registered(model):
            site.unregister(model)
            site.register(model, model_admin)
