"""The one periodic task that drives every refresh: created by a data migration, editable in
the admin's Periodic tasks (interval, enabled)."""

from typing import Any

from config.beat import ensure_periodic_task

SWEEP_TASK = "portals.tasks.sweep_due_tokens"


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
