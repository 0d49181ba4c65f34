"""The Celery tasks of refreshing: thin wrappers that take ids (never a token) and call the
sweep: the sweep itself, a batch of due tokens (what the sweep enqueues), and one token (a busy
token's retry, and messages queued before batches). Each is registered under a name of the
form `portals.tasks.…` (from before the rooms): periodic-task rows and queued messages carry
those names across an upgrade. Nothing imports this module; the sweep enqueues by name
(core.publish), and CELERY_IMPORTS loads it in workers."""

from celery import shared_task
from django.conf import settings

from ops.record import heartbeat
from portals.tokens import sweep


@shared_task(name=sweep.SWEEP_TASK, ignore_result=True)
def sweep_due_tokens() -> int:
    heartbeat.sweep_started()  # GET /health/ and /metrics tell from it whether beat runs
    return sweep.sweep()


@shared_task(
    name=sweep.REFRESH_TASK,
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


@shared_task(
    name=sweep.REFRESH_BATCH_TASK,
    ignore_result=True,
    acks_late=True,  # a worker that dies mid-batch leaves the message: the rest is redone
    reject_on_worker_lost=True,
    # Each refresh is bounded by the HTTP timeouts; the batch by its tokens' sum of them.
    soft_time_limit=settings.REFRESH_BATCH_SIZE
    * (settings.BITRIX_CONNECT_TIMEOUT + settings.BITRIX_READ_TIMEOUT + 15),
    time_limit=settings.REFRESH_BATCH_SIZE
    * (settings.BITRIX_CONNECT_TIMEOUT + settings.BITRIX_READ_TIMEOUT + 15)
    + 15,
)
def refresh_due_tokens(token_ids: list[int]) -> dict[str, int]:
    # Already refreshed ones (a redelivered batch) are no longer due and are skipped.
    return sweep.refresh_batch(token_ids)
