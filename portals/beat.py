"""The periodic tasks of portals, created by data migrations and editable in the admin's
Periodic tasks (interval, enabled): the sweep that drives every refresh, and the daily check of
the uninstall handlers (portals.connect.eventbind)."""

from typing import Any

from core.beat import ensure_periodic_task

SWEEP_TASK = "portals.tasks.sweep_due_tokens"
EVENT_BINDING_TASK = "portals.tasks.check_event_bindings"
DAY = 24 * 3600


def ensure_sweep_schedule(periodic_task_model: Any, interval_model: Any, seconds: int) -> None:
    ensure_periodic_task(
        periodic_task_model,
        interval_model,
        task=SWEEP_TASK,
        name="Sweep due tokens",
        seconds=seconds,
        description="Finds the tokens that are due and enqueues one refresh task for each. "
        "One task for all portals; change its interval here.",
    )


def ensure_event_binding_check(periodic_task_model: Any, interval_model: Any) -> None:
    ensure_periodic_task(
        periodic_task_model,
        interval_model,
        task=EVENT_BINDING_TASK,
        name="Check uninstall handlers (daily)",
        seconds=DAY,
        description="Asks each connected portal (event.get) whether b24keeper's ONAPPUNINSTALL "
        "and ONAPPUPDATE handlers are still bound, and binds them again if not: Bitrix24 drops "
        "them when the app is updated.",
    )
