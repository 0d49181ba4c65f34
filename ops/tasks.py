"""The Celery task of operations: the daily prune, a thin wrapper registered under its name
(the data migration's periodic task refers to it). Nothing imports this module."""

from celery import shared_task

from ops.beat import PRUNE_TASK
from ops.observe import retention


@shared_task(name=PRUNE_TASK, ignore_result=True)
def prune_history() -> int:
    pruned = retention.prune()
    return pruned.attempts + pruned.deliveries
