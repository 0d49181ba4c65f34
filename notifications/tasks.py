"""Celery tasks: thin wrappers that take a delivery id (never a credential or a token) and
call the sending, status or dispatch module."""

from celery import shared_task
from django.conf import settings

from notifications import dispatch, sending, status

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


@shared_task(**_TASK_OPTIONS)
def deliver(self, delivery_id: int) -> str:
    outcome = sending.process_delivery(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.word


@shared_task(**_TASK_OPTIONS)
def check_delivery(self, delivery_id: int) -> str:
    """Ask the provider whether the delivery's message arrived (notifications/status.py)."""
    outcome = status.process_check(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.word


@shared_task(ignore_result=True)
def sweep_notifications() -> int:
    return dispatch.sweep()
