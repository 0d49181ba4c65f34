"""Periodic tasks created by data migrations: one helper, so every app's sweep is made alike."""

from typing import Any


def ensure_periodic_task(
    periodic_task_model: Any,
    interval_model: Any,
    *,
    task: str,
    name: str,
    seconds: int,
    description: str,
) -> None:
    """Create the periodic task unless one for `task` exists; an edited one is left alone.

    Takes the model classes so a data migration can pass its historical models.
    """
    if periodic_task_model.objects.filter(task=task).exists():
        return
    interval, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
    periodic_task_model.objects.create(
        name=name, task=task, interval=interval, enabled=True, description=description
    )
