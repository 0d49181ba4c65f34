"""The admin pages of django-celery-beat and django-axes, re-registered so that every action
declares a permission (README "Who may do what").

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
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask

Action = Callable[[Any, Any, Any], Any]


def requiring(permission: str, action: Action) -> Action:
    """`action` as it is (name, description), declaring that it needs `permission`."""

    @admin.action(permissions=[permission])
    @functools.wraps(action)  # keeps the library's description: the page reads as before
    def guarded(modeladmin: admin.ModelAdmin, request: Any, queryset: Any) -> Any:
        return action(modeladmin, request, queryset)

    return guarded


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    # Enabling, disabling or running a periodic task changes what the beat does: the same
    # permission as editing the task.
    enable_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.enable_tasks)
    disable_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.disable_tasks)
    toggle_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.toggle_tasks)
    run_tasks = requiring("change", beat_admin.PeriodicTaskAdmin.run_tasks)


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
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
)


def register(site: admin.AdminSite) -> None:
    """Put the guarded pages in place of the libraries' own (where the library registered
    one: django-axes does not with AXES_ENABLE_ADMIN off)."""
    for model, model_admin in GUARDED:
        if site.is_registered(model):
            site.unregister(model)
            site.register(model, model_admin)
