"""The one periodic task that drives every refresh: created by a data migration, editable in
the admin's Periodic tasks (interval, enabled)."""

from typing import Any

SWEEP_TASK = "portals.tasks.sweep_due_tokens"
SWEEP_NAME = "Sweep due tokens"


def ensure_sweep_schedule(periodic_task_model: Any, interval_model: Any, seconds: int) -> None:
    """Create the sweep's periodic task unless it exists; an edited one is left alone.

    Takes the model classes so the data migration can pass its historical models.
    """
    if periodic_task_model.objects.filter(task=SWEEP_TASK).exists():
        return
    interval, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
    periodic_task_model.objects.create(
        name=SWEEP_NAME,
        task=SWEEP_TASK,
        interval=interval,
        enabled=True,
        description="Finds the tokens that are due and enqueues one refresh task for each. "
        "One task for all portals; change its interval here.",
    )
