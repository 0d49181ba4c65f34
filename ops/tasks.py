"""Celery tasks of operations: thin wrappers."""

from celery import shared_task

from ops import retention


@shared_task(ignore_result=True)
def prune_history() -> int:
    pruned = retention.prune()
    return pruned.attempts + pruned.deliveries
