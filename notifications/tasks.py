"""The Celery tasks of notifications: thin wrappers that take a delivery id (never a credential
or a token) and call the sending, delivery-report or dispatch module. Registered under their
names (contracts: queued messages and the sweep's periodic task carry them). Nothing imports
this module: notifications.delivery.dispatch enqueues by name (core.publish)."""

from celery import shared_task
from django.conf import settings

from notifications.beat import SWEEP_TASK
from notifications.delivery import dispatch, reports, sending

# Above one send's worst case (a Telegram migration sends twice), so Celery never cuts a
# live call short.
_SEND_BUDGET = 2 * (settings.NOTIFY_CONNECT_TIMEOUT + settings.NOTIFY_READ_TIMEOUT)
_TASK_OPTIONS = {
    "bind": True,
    "ignore_result": True,
    "acks_late": True,  # a worker that dies mid-send leaves the message for another
    "reject_on_worker_lost": True,
    "max_retries": None,  # the delivery row decides when to stop, not Celery
    "soft_time_limit": _SEND_BUDGET + 15,
    "time_limit": _SEND_BUDGET + 30,
}


@shared_task(name=dispatch.DELIVER_TASK, **_TASK_OPTIONS)
def deliver(self, delivery_id: int) -> str:
    outcome = sending.process_delivery(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.word


@shared_task(name=dispatch.CHECK_TASK, **_TASK_OPTIONS)
def check_delivery(self, delivery_id: int) -> str:
    """Ask the provider whether the delivery's message arrived (notifications.delivery.reports)."""
    outcome = reports.process_check(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.word


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep_notifications() -> int:
    return dispatch.sweep()
