"""Sending one delivery (the body of the `deliver` task): claim it, decide what goes out, send
it through the channel's backend and record the outcome.

The database decides who sends, never hope: a task locks its channel's row, and claims
deliveries with `UPDATE … WHERE status = 'queued'`, so a duplicate or redelivered task finds
nothing to do. Within that lock it decides:

- the channel is disabled: the delivery waits (enabling the channel enqueues it again);
- the channel sent `max_per_hour` messages in the last hour: every queued delivery of the
  channel is held until a slot frees, and that backlog then goes out as one digest;
- a storm (more than NOTIFY_STORM_THRESHOLD deliveries on the channel within the window, or
  waiting at once): while new alerts are still arriving (some are inside their hold), wait;
  the task of the newest alert comes last and sends every queued delivery as ONE digest;
- otherwise: only this delivery, alone.

A transient error re-queues what was claimed with exponential backoff and jitter; a permanent
error or a broken configuration fails it and disables the channel with the reason, which
leaves every other channel alone.
"""

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications import messages
from notifications.backends import (
    ConfigurationError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from notifications.dispatch import enqueue
from notifications.models import Channel, Delivery
from ops import metrics

logger = logging.getLogger(__name__)
Status = Delivery.Status
HOUR = timedelta(hours=1)
# Never ask Celery to wait longer than this: a countdown beyond the broker's visibility
# timeout gets the message redelivered. A longer wait is simply re-checked then.
MAX_COUNTDOWN = 600.0
# The token columns are encrypted and not needed for a message: leave them unread.
_UNREAD = ("incident__token__access_token", "incident__token__refresh_token")


@dataclass(frozen=True)
class Outcome:
    word: str  # what happened, in a word, for the task's result and the log
    retry_in: float | None = None  # run the task again after this many seconds


@dataclass
class _Claim:
    outcome: Outcome
    ids: list[int] = field(default_factory=list)


def _seconds(delta: timedelta) -> float:
    return min(max(delta.total_seconds(), 0.0), MAX_COUNTDOWN)


def process_delivery(delivery_id: int) -> Outcome:
    """Send the delivery (alone or in a digest), or say when to look again."""
    now = timezone.now()
    row = (
        Delivery.objects.filter(pk=delivery_id)
        .values("status", "next_attempt_at", "channel_id")
        .first()
    )
    if row is None or row["status"] != Status.QUEUED:
        return Outcome("skipped")  # already sent, claimed by another task, or cancelled
    if row["next_attempt_at"] > now:
        return Outcome("waiting", _seconds(row["next_attempt_at"] - now))
    claim = _claim(delivery_id, row["channel_id"], now)
    if not claim.ids:
        return claim.outcome
    return _send(row["channel_id"], claim.ids, delivery_id)


def _claim(delivery_id: int, channel_id: int, now: datetime) -> _Claim:
    # Most tasks of a storm end here, cheaply, without taking a lock.
    if _storm_gathering(channel_id, now):
        return _Claim(Outcome("held for a digest"))
    with transaction.atomic():
        channel = (
            Channel.objects.select_for_update()
            .filter(pk=channel_id)
            .values("enabled", "max_per_hour")
            .first()
        )
        queued = Delivery.objects.filter(channel_id=channel_id, status=Status.QUEUED)
        pending = list(queued.select_for_update().values_list("pk", flat=True))
        if channel is None or delivery_id not in pending:
            return _Claim(Outcome("skipped"))
        if not channel["enabled"]:
            return _Claim(Outcome("held: channel disabled"))
        slot = _free_slot(channel_id, channel["max_per_hour"], now)
        if slot is not None:
            queued.filter(next_attempt_at__lt=slot).update(next_attempt_at=slot)
            return _Claim(Outcome("rate-limited", _seconds(slot - now)))
        if _is_storm(channel_id, len(pending), now):
            if _storm_gathering(channel_id, now):
                return _Claim(Outcome("held for a digest"))
            ids = pending
        else:
            ids = [delivery_id]
        claimed = Delivery.objects.filter(pk__in=ids, status=Status.QUEUED).update(
            status=Status.SENDING, attempts=F("attempts") + 1, claimed_at=now
        )
        if claimed != len(ids):  # cannot happen under the locks; never send what we lack
            transaction.set_rollback(True)
            return _Claim(Outcome("skipped"))
        # The other deliveries ride in this one's digest; set now so the rate limit counts
        # one message for the whole batch while it is being sent.
        Delivery.objects.filter(pk__in=ids).exclude(pk=delivery_id).update(digest=delivery_id)
        return _Claim(Outcome("claimed"), ids)


def _free_slot(channel_id: int, limit: int, now: datetime) -> datetime | None:
    """None when the channel may send now, else when its hourly limit lets it send again."""
    if not limit:
        return None
    # One message each: a single delivery or a digest's lead (the folded ones point at it).
    messages_ = Delivery.objects.filter(channel_id=channel_id, digest__isnull=True).filter(
        Q(status=Status.SENT, sent_at__gt=now - HOUR) | Q(status=Status.SENDING)
    )
    times = sorted(sent_at or now for sent_at in messages_.values_list("sent_at", flat=True))
    if len(times) < limit:
        return None
    return times[len(times) - limit] + HOUR


def _is_storm(channel_id: int, waiting: int, now: datetime) -> bool:
    """More than NOTIFY_STORM_THRESHOLD deliveries waiting, or created within the window."""
    threshold = settings.NOTIFY_STORM_THRESHOLD
    if waiting < 2:
        return False
    if waiting > threshold:
        return True
    window = timedelta(seconds=settings.NOTIFY_STORM_WINDOW_SECONDS)
    recent = Delivery.objects.filter(channel_id=channel_id, created_at__gte=now - window)
    return recent.count() > threshold


def _storm_gathering(channel_id: int, now: datetime) -> bool:
    """A storm whose alerts are still arriving: some were never tried and are inside their
    hold. The newest one's task comes last and sends them all, unless the oldest has waited
    NOTIFY_STORM_MAX_WAIT_SECONDS already."""
    queued = Delivery.objects.filter(channel_id=channel_id, status=Status.QUEUED)
    if not queued.filter(attempts=0, next_attempt_at__gt=now).exists():
        return False
    max_wait = timedelta(seconds=settings.NOTIFY_STORM_MAX_WAIT_SECONDS)
    if queued.filter(created_at__lt=now - max_wait).exists():
        return False
    return _is_storm(channel_id, queued.count(), now)


def _send(channel_id: int, ids: list[int], lead: int) -> Outcome:
    # Credentials are decrypted inside the `try` below (a key may be missing), not here.
    channel = Channel.objects.defer("credentials").get(pk=channel_id)
    deliveries = list(
        Delivery.objects.filter(pk__in=ids)
        .select_related("incident__token__portal", "incident__token__owner")
        .defer(*_UNREAD)
        .order_by("created_at", "pk")
    )
    try:
        message = messages.single(deliveries[0]) if len(ids) == 1 else messages.digest(deliveries)
        result = channel.backend().send(message)
    except (ConfigurationError, PermanentDeliveryError) as err:
        return _disable(channel, ids, str(err))
    except TransientDeliveryError as err:
        return _retry_later(channel, ids, lead, str(err), err.retry_after)
    except Exception:
        # A bug of ours: the traceback goes to the log; the delivery retries like a blip.
        logger.exception("delivery %s: unexpected error while sending", lead)
        reason = "b24keeper failed to send it (an internal error; see the worker log)."
        return _retry_later(channel, ids, lead, reason, None)
    return _mark_sent(channel, ids, result)


def _mark_sent(channel: Channel, ids: list[int], result: SendResult) -> Outcome:
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(pk__in=ids, status=Status.SENDING).update(
            status=Status.SENT,
            sent_at=now,
            provider_message_id=result.provider_message_id[:200],
            error="",
        )
        _record_success(channel, result, now)
    metrics.delivery(channel.kind, "sent", len(ids))
    what = f"a digest of {len(ids)} deliveries" if len(ids) > 1 else f"delivery {ids[0]}"
    logger.info("channel %s (%s): sent %s: %s", channel.pk, channel.kind, what, result.detail)
    return Outcome("digest" if len(ids) > 1 else "sent")


def _disable(channel: Channel, ids: list[int], reason: str) -> Outcome:
    """Retrying cannot help: fail what was claimed and switch the channel off, visibly."""
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(pk__in=ids, status=Status.SENDING).update(
            status=Status.FAILED, error=reason
        )
        Channel.objects.filter(pk=channel.pk).update(
            enabled=False,
            disabled_reason=reason,
            disabled_at=now,
            last_error=reason,
            last_error_at=now,
        )
    metrics.delivery(channel.kind, "failed", len(ids))
    logger.error("channel %s (%s) disabled: %s", channel.pk, channel.kind, reason)
    return Outcome("failed")


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: exponential, capped, with jitter so that many
    deliveries failing together do not retry together; never sooner than the provider asked."""
    ceiling = min(
        settings.NOTIFY_RETRY_MAX_SECONDS,
        settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0),
    )
    return max(ceiling / 2 + random.uniform(0, ceiling / 2), retry_after or 0.0)


def _retry_later(
    channel: Channel, ids: list[int], lead: int, reason: str, retry_after: float | None
) -> Outcome:
    now = timezone.now()
    max_attempts = int(settings.NOTIFY_MAX_ATTEMPTS)
    attempts = Delivery.objects.values_list("attempts", flat=True).get(pk=lead)
    delay = backoff(attempts, retry_after)
    with transaction.atomic():
        claimed = Delivery.objects.filter(pk__in=ids, status=Status.SENDING)
        gave_up = claimed.filter(attempts__gte=max_attempts).update(
            status=Status.FAILED, error=f"Gave up after {max_attempts} attempts. {reason}"
        )
        released = list(claimed.values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=released).update(
            status=Status.QUEUED, error=reason, next_attempt_at=now + timedelta(seconds=delay)
        )
        Delivery.objects.filter(pk__in=ids).update(digest=None)
        Channel.objects.filter(pk=channel.pk).update(last_error=reason, last_error_at=now)
        # The lead's task retries itself; the others of a digest need their own task again.
        enqueue([pk for pk in released if pk != lead], delay)
    metrics.delivery(channel.kind, "failed", gave_up)
    metrics.delivery(channel.kind, "retried", len(released))
    logger.warning(
        "channel %s (%s): %d delivery(ies) not sent: %s", channel.pk, channel.kind, len(ids), reason
    )
    if lead in released:
        return Outcome("retry", _seconds(timedelta(seconds=delay)))
    return Outcome("failed")


def send_test(channel: Channel) -> tuple[bool, str]:
    """Send a test message now, in this process; returns (success, the provider's answer)."""
    now = timezone.now()
    try:
        result = channel.backend().send(messages.test_message(channel))
    except (ConfigurationError, PermanentDeliveryError, TransientDeliveryError) as err:
        Channel.objects.filter(pk=channel.pk).update(last_error=str(err), last_error_at=now)
        return False, str(err)
    _record_success(channel, result, now)
    return True, result.detail


def _record_success(channel: Channel, result: SendResult, now: datetime) -> None:
    changes: dict[str, object] = {"last_sent_at": now}
    if result.new_destination:  # a Telegram group became a supergroup: follow it
        changes["destination"] = result.new_destination
    Channel.objects.filter(pk=channel.pk).update(**changes)
