"""The daily prune of old history, as a periodic task created by a data migration and
editable in the admin's Periodic tasks."""

from typing import Any

from core.beat import ensure_periodic_task

PRUNE_TASK = "ops.tasks.prune_history"
DAY = 24 * 3600


def ensure_prune_schedule(periodic_task_model: Any, interval_model: Any) -> None:
    ensure_periodic_task(
        periodic_task_model,
        interval_model,
        task=PRUNE_TASK,
        name="Prune old history (daily)",
        seconds=DAY,
        description="Deletes refresh attempts and deliveries older than "
        "HISTORY_RETENTION_DAYS, in small batches. Keeps each token's latest attempt and "
        "everything about open incidents.",
    )
