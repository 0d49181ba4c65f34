"""What happens to deliveries after a send, or after the provider reported on a message it
had accepted: sent, retried later, or failed with the channel switched off.

- Sent: the deliveries are "sent"; where the provider reports a final status, the lead's
  status is asked until NOTIFY_STATUS_CHECK_SECONDS have passed (notifications/delivery/reports.py).
- Transient (the provider is down, rate-limits, or could not deliver for a passing reason):
  while its incident is open, an alert (first alert, severity change or reminder) is tried
  again for as long as it takes, at a capped interval, and the channel shows "failing since".
  Only what no longer matters to an open incident (a recovery notice) gives up after
  NOTIFY_MAX_ATTEMPTS.
- Permanent (a wrong key, a blocked bot, an address that bounced): the deliveries fail with
  the reason and the channel is switched off; every other channel hears of it once, and
  enabling the channel again sends what waited (notifications/delivery/dispatch.py).
"""

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from notifications.backends import SendResult
from notifications.delivery import dispatch
from notifications.models import Channel, Delivery
from ops.record import metrics

logger = logging.getLogger(__name__)
Status, Event = Delivery.Status, Delivery.Event
# Never ask Celery to wait longer than this: a countdown beyond the broker's visibility
# timeout gets the message redelivered. A longer wait is simply re-checked then.
MAX_COUNTDOWN = 600.0
# Retried without a limit while their incident is open: each still tells a person something.
_ALERTS = (Event.OPENED, Event.CHANGED, Event.REMINDER)


@dataclass(frozen=True)
class Outcome:
    word: str  # what happened, in a word, for the task's result and the log
    retry_in: float | None = None  # run the task again after this many seconds


def seconds(delta: timedelta) -> float:
    return min(max(delta.total_seconds(), 0.0), MAX_COUNTDOWN)


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: exponential, capped, with jitter so that many
    deliveries failing together do not retry together; never sooner than the provider asked."""
    ceiling = min(
        settings.NOTIFY_RETRY_MAX_SECONDS,
        settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0),
    )
    return max(ceiling / 2 + random.uniform(0, ceiling / 2), retry_after or 0.0)


def mark_sent(channel: Channel, ids: list[int], lead: int, result: SendResult) -> Outcome:
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(pk__in=ids, status=Status.SENDING).update(
            status=Status.SENT,
            sent_at=now,
            provider_message_id=result.provider_message_id[:200],
            error=result.delayed,
        )
        if channel.backend_class().checks_delivery and result.provider_message_id:
            schedule_check(lead, now)
        record_success(channel, result, now)
    metrics.delivery(channel.kind, "sent", len(ids))
    what = f"a digest of {len(ids)} deliveries" if len(ids) > 1 else f"delivery {ids[0]}"
    logger.info("channel %s (%s): sent %s: %s", channel.pk, channel.kind, what, result.detail)
    return Outcome("digest" if len(ids) > 1 else "sent")


def schedule_check(lead: int, now: datetime) -> None:
    """Ask the provider what became of the message, for a bounded time after sending."""
    first = float(settings.NOTIFY_STATUS_CHECK_FIRST_SECONDS)
    Delivery.objects.filter(pk=lead).update(
        check_until=now + timedelta(seconds=settings.NOTIFY_STATUS_CHECK_SECONDS),
        next_check_at=now + timedelta(seconds=first),
    )
    dispatch.enqueue_checks([lead], first)


def record_success(channel: Channel, result: SendResult, now: datetime) -> None:
    changes: dict[str, object] = {"last_sent_at": now, "failing_since": None}
    if result.new_destination:  # a Telegram group became a supergroup: follow it
        changes["destination"] = result.new_destination
    if result.delayed:
        changes |= {"last_error": result.delayed, "last_error_at": now}
    Channel.objects.filter(pk=channel.pk).update(**changes)


def fail(channel: Channel, ids: list[int], reason: str, statuses: tuple[str, ...]) -> Outcome:
    """Retrying cannot help: fail the deliveries and switch the channel off, visibly."""
    with transaction.atomic():
        failed = Delivery.objects.filter(pk__in=ids, status__in=statuses).update(
            status=Status.FAILED, error=reason, next_check_at=None
        )
        dispatch.switch_off(channel.pk, reason)
    metrics.delivery(channel.kind, "failed", failed)
    logger.error("channel %s (%s) disabled: %s", channel.pk, channel.kind, reason)
    return Outcome("failed")


def _give_up(claimed: QuerySet, reason: str) -> int:
    """What no longer needs retrying: an alert whose incident is over meanwhile; a recovery
    notice (or any delivery of a closed incident) after NOTIFY_MAX_ATTEMPTS. Returns how many
    failed."""
    over = Q(incident__resolved_at__isnull=False)
    claimed.filter(over, event__in=_ALERTS).update(
        status=Status.CANCELLED, error="Not sent: the incident was resolved first."
    )
    max_attempts = int(settings.NOTIFY_MAX_ATTEMPTS)
    return (
        claimed.exclude(event__in=_ALERTS, incident__resolved_at__isnull=True)
        .filter(attempts__gte=max_attempts)
        .update(status=Status.FAILED, error=f"Gave up after {max_attempts} attempts. {reason}")
    )


def retry_later(
    channel: Channel,
    ids: list[int],
    lead: int,
    reason: str,
    retry_after: float | None,
    statuses: tuple[str, ...] = (Status.SENDING,),
) -> Outcome:
    """Queue the deliveries again after a backoff; the lead's task retries itself when it is
    the sending task (`statuses` = sending), every other delivery gets a task."""
    now = timezone.now()
    attempts = Delivery.objects.values_list("attempts", flat=True).get(pk=lead)
    delay = backoff(attempts, retry_after)
    with transaction.atomic():
        claimed = Delivery.objects.filter(pk__in=ids, status__in=statuses)
        gave_up = _give_up(claimed, reason)
        released = list(claimed.values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=released).update(
            status=Status.QUEUED,
            error=reason,
            next_attempt_at=now + timedelta(seconds=delay),
            sent_at=None,
            next_check_at=None,
        )
        Delivery.objects.filter(pk__in=ids).update(digest=None)
        Channel.objects.filter(pk=channel.pk).update(
            last_error=reason,
            last_error_at=now,
            failing_since=Coalesce(F("failing_since"), Value(now)),
        )
        retries_itself = Status.SENDING in statuses
        dispatch.enqueue([pk for pk in released if pk != lead or not retries_itself], delay)
    metrics.delivery(channel.kind, "failed", gave_up)
    metrics.delivery(channel.kind, "retried", len(released))
    what = (channel.pk, channel.kind, len(ids), reason)
    logger.warning("channel %s (%s): %d delivery(ies) not sent: %s", *what)
    if retries_itself and lead in released:
        return Outcome("retry", seconds(timedelta(seconds=delay)))
    return Outcome("failed" if lead not in released else "requeued")
