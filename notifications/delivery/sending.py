"""Sending one delivery (the body of the `deliver` task): claim it, decide what goes out, send
it through the channel's backend; notifications/delivery/outcomes.py records what came of it.

The database decides who sends, never hope: a task locks its channel's row, and claims
deliveries with `UPDATE … WHERE status = 'queued'`, so a duplicate or redelivered task finds
nothing to do. Within that lock it decides:

- the channel is disabled: the delivery waits (enabling the channel enqueues it again);
- the channel sent `max_per_hour` messages in the last hour: its repeats (reminders and
  recovery notices) are held until a slot frees, and that backlog then goes out as one
  digest. An incident's first alert and a severity change are never held: they go now;
- the provider allows one message per recipient per interval (UniSender email): what is due
  waits for the interval, then goes out together;
- a storm (more than NOTIFY_STORM_THRESHOLD deliveries on the channel within the window, or
  waiting at once): while new alerts are still arriving (some are inside their hold), wait;
  the task of the newest alert comes last and sends every queued delivery as ONE digest;
- otherwise: only this delivery, alone.
"""

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.backends import (
    BACKENDS,
    ConfigurationError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from notifications.delivery import digests, messages, outcomes, refusals
from notifications.delivery.outcomes import Outcome, backoff, seconds
from notifications.models import FIRST_ALERTS, REPEATS, Channel, Delivery

__all__ = ["Outcome", "backoff", "process_delivery", "send_test"]
logger = logging.getLogger(__name__)
Status = Delivery.Status
HOUR = timedelta(hours=1)
# The token columns are encrypted and not needed for a message: leave them unread.
_UNREAD = ("incident__token__access_token", "incident__token__refresh_token")


@dataclass
class _Claim:
    outcome: Outcome
    ids: list[int] = field(default_factory=list)


def process_delivery(delivery_id: int) -> Outcome:
    """Send the delivery (alone or in a digest), or say when to look again."""
    now = timezone.now()
    row = (
        Delivery.objects.filter(pk=delivery_id)
        .values("status", "next_attempt_at", "event", "channel_id")
        .annotate(kind=F("channel__kind"), destination=F("channel__destination"))
        .first()
    )
    if row is None or row["status"] != Status.QUEUED:
        return Outcome("skipped")  # already sent, claimed by another task, or cancelled
    if row["next_attempt_at"] > now:
        return Outcome("waiting", seconds(row["next_attempt_at"] - now))
    claim = _claim(delivery_id, row, now)
    if not claim.ids:
        return claim.outcome
    return _send(row["channel_id"], claim.ids, delivery_id)


def _claim(delivery_id: int, row: dict[str, Any], now: datetime) -> _Claim:
    channel_id = row["channel_id"]
    # Most tasks of a storm end here, cheaply, without taking a lock.
    if _storm_gathering(channel_id, now):
        return _Claim(Outcome("held for a digest"))
    row["interval"] = _recipient_interval(row["kind"])
    with transaction.atomic():
        channel = _lock(row)
        queued = Delivery.objects.filter(channel_id=channel_id, status=Status.QUEUED)
        pending = list(queued.select_for_update().values("pk", "event", "next_attempt_at"))
        if channel is None or delivery_id not in {p["pk"] for p in pending}:
            return _Claim(Outcome("skipped"))
        if not channel["enabled"]:
            return _Claim(Outcome("held: channel disabled"))
        slot = _free_slot(channel_id, channel["max_per_hour"], now)
        if slot is not None:
            queued.filter(event__in=REPEATS, next_attempt_at__lt=slot).update(next_attempt_at=slot)
            if row["event"] not in FIRST_ALERTS:
                return _Claim(Outcome("rate-limited", seconds(slot - now)))
            pending = [p for p in pending if p["event"] in FIRST_ALERTS]
        ids_or_outcome = _choose(delivery_id, row, pending, now)
        if isinstance(ids_or_outcome, Outcome):
            return _Claim(ids_or_outcome)
        return _take(delivery_id, ids_or_outcome, now)


def _lock(row: dict[str, Any]) -> dict[str, Any] | None:
    """Lock the channel's row; for a provider that spaces sends per recipient, every channel
    of that provider writing to the same recipient, in one order (no deadlock)."""
    mine = Q(pk=row["channel_id"])
    if row["interval"]:
        mine |= Q(kind=row["kind"], destination__iexact=row["destination"])
    locked = Channel.objects.select_for_update().filter(mine).order_by("pk")
    channels = list(locked.values("pk", "enabled", "max_per_hour"))
    return next((c for c in channels if c["pk"] == row["channel_id"]), None)


def _choose(
    delivery_id: int, row: dict[str, Any], pending: Sequence[Mapping[str, Any]], now: datetime
) -> list[int] | Outcome:
    """Which queued deliveries go out with this one, or why none goes now."""
    channel_id = row["channel_id"]
    ids = [p["pk"] for p in pending]
    spaced_until = _recipient_slot(row, now)
    if spaced_until is not None:
        Delivery.objects.filter(pk__in=ids, next_attempt_at__lt=spaced_until).update(
            next_attempt_at=spaced_until
        )
        return Outcome("spaced for the recipient", seconds(spaced_until - now))
    if _is_storm(channel_id, len(pending), now):
        if _storm_gathering(channel_id, now):
            return Outcome("held for a digest")
        return ids
    if row["interval"]:
        # What waited for the recipient's interval goes out together, as one message.
        return [p["pk"] for p in pending if p["next_attempt_at"] <= now or p["pk"] == delivery_id]
    return [delivery_id]


def _take(delivery_id: int, ids: list[int], now: datetime) -> _Claim:
    claimed = Delivery.objects.filter(pk__in=ids, status=Status.QUEUED).update(
        status=Status.SENDING, attempts=F("attempts") + 1, claimed_at=now
    )
    if claimed != len(ids):  # cannot happen under the locks; never send what we lack
        transaction.set_rollback(True)
        return _Claim(Outcome("skipped"))
    # The other deliveries ride in this one's digest; set now so the rate limit counts one
    # message for the whole batch while it is being sent.
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


def _recipient_interval(kind: str) -> float:
    """The provider's minimum seconds between two messages to one recipient, or 0."""
    backend = BACKENDS.get(kind)
    return backend.recipient_interval() if backend else 0.0


def _recipient_slot(row: dict[str, Any], now: datetime) -> datetime | None:
    """None when the provider takes a message for this recipient now, else from when."""
    if not row["interval"]:
        return None
    gap = timedelta(seconds=row["interval"])
    to_recipient = Delivery.objects.filter(
        channel__kind=row["kind"], channel__destination__iexact=row["destination"]
    )
    if to_recipient.filter(status=Status.SENDING).exists():
        return now + gap  # one is on its way right now
    last = to_recipient.filter(status=Status.SENT, sent_at__gt=now - gap).aggregate(
        last=Max("sent_at")
    )["last"]
    return last + gap if last else None


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
        .select_related("incident__token__portal", "incident__token__owner", "incident__channel")
        .defer(*_UNREAD, "incident__channel__credentials")
        .order_by("created_at", "pk")
    )
    try:
        message = messages.single(deliveries[0]) if len(ids) == 1 else digests.digest(deliveries)
        result = channel.backend().send(message)
    except (ConfigurationError, PermanentDeliveryError) as err:
        return outcomes.fail(channel, ids, str(err), (Status.SENDING,))
    except TransientDeliveryError as err:
        return outcomes.retry_later(channel, ids, lead, str(err), err.retry_after)
    except Exception:
        # A bug of ours: the traceback goes to the log; the delivery retries like a blip.
        logger.exception("delivery %s: unexpected error while sending", lead)
        reason = "b24keeper failed to send it (an internal error; see the worker log)."
        return outcomes.retry_later(channel, ids, lead, reason, None)
    return outcomes.mark_sent(channel, ids, lead, result)


# A failed alert disables its channel and waits for a retry; a failed test does neither, so
# the advice written for alerts ("then re-enable this channel", "will be retried") is reworded.
_ALERT_ADVICE = (
    (re.compile(r"re-enable(?: (?:this|the) channel| it)?", re.IGNORECASE),
     "send another test message"),
    (re.compile(r"the delivery will be retried", re.IGNORECASE), "try the test again shortly"),
)  # fmt: skip


def send_test(channel: Channel) -> tuple[bool, str]:
    """Send a test message now, in this process; returns (success, the provider's answer).
    A failure changes nothing but the channel's last error: the channel stays as it was."""
    now = timezone.now()
    row: dict[str, Any] = {"kind": channel.kind, "destination": channel.destination}
    row["interval"] = _recipient_interval(channel.kind)
    spaced_until = _recipient_slot(row, now)
    if spaced_until is not None:  # the provider would refuse it: say so rather than try
        wait = max(int((spaced_until - now).total_seconds()) + 1, 1)
        return False, _(
            "%(provider)s takes one message per recipient every %(interval)s s and one went to "
            "%(destination)s just now; try again in %(wait)d s."
        ) % {
            "provider": channel.get_kind_display(),
            "interval": f"{row['interval']:g}",
            "destination": channel.destination,
            "wait": wait,
        }
    try:
        result: SendResult = channel.backend().send(messages.test_message(channel))
    except (ConfigurationError, PermanentDeliveryError, TransientDeliveryError) as err:
        text = str(err)
        for pattern, replacement in _ALERT_ADVICE:
            text = pattern.sub(replacement, text)
        Channel.objects.filter(pk=channel.pk).update(last_error=text, last_error_at=now)
        if not isinstance(err, ConfigurationError):  # said in the reader's language
            text = refusals.delivery_error_text(err, text)
        if channel.enabled:
            return False, _(
                "The test message was not sent: %(error)s The channel stays enabled."
            ) % {"error": text}
        return False, _("The test message was not sent: %(error)s The channel stays disabled.") % {
            "error": text
        }
    outcomes.record_success(channel, result, now)
    return True, result.detail
