"""The notifications sweep (reminders, lost tasks) as one periodic task: created by a data
migration, editable in the admin's Periodic tasks (interval, enabled)."""

from typing import Any

from core.beat import ensure_periodic_task

SWEEP_TASK = "notifications.tasks.sweep_notifications"


def ensure_sweep_schedule(periodic_task_model: Any, interval_model: Any, seconds: int) -> None:
    ensure_periodic_task(
        periodic_task_model,
        interval_model,
        task=SWEEP_TASK,
        name="Notification reminders and lost deliveries",
        seconds=seconds,
        description="Sends reminders of open incidents (on channels with a reminder interval) "
        "and re-enqueues deliveries whose task was lost.",
    )
