"""Celery tasks: thin wrappers that take ids (never a token) and call one service module."""

from celery import shared_task
from django.conf import settings

from ops import heartbeat
from portals import eventbind, sweep


@shared_task(ignore_result=True)
def sweep_due_tokens() -> int:
    heartbeat.sweep_started()  # GET /health/ and /metrics tell from it whether beat runs
    return sweep.sweep()


@shared_task(
    bind=True,
    ignore_result=True,
    acks_late=True,  # a worker that dies mid-refresh leaves the message for another
    reject_on_worker_lost=True,
    # Above the HTTP timeouts (connect + read), so Celery never cuts a live call short.
    soft_time_limit=settings.BITRIX_CONNECT_TIMEOUT + settings.BITRIX_READ_TIMEOUT + 15,
    time_limit=settings.BITRIX_CONNECT_TIMEOUT + settings.BITRIX_READ_TIMEOUT + 30,
    max_retries=3,
)
def refresh_due_token(self, token_id: int) -> str:
    outcome = sweep.refresh_if_due(token_id)
    if outcome == "busy":
        # Another process holds the refresh claim. If it died (a redelivered task after a
        # worker crash), the claim goes stale within TOKEN_REFRESH_LEASE: look again then.
        raise self.retry(countdown=sweep.lease_remaining(token_id) + 1)
    return outcome


# Named explicitly: the data migration's periodic task refers to it by this name.
@shared_task(name="portals.tasks.check_event_bindings", ignore_result=True)
def check_event_bindings() -> int:
    return eventbind.check_all()
