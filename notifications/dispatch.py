"""From incidents to deliveries: who hears about what, and when a task is enqueued.

- incident_opened: one "opened" delivery for every enabled channel covering the token (an
  outage: every enabled channel). It waits NOTIFY_HOLD_SECONDS, so a storm can gather.
- incident_resolved: deliveries nobody received yet are cancelled (a recovery notice for an
  alert never seen helps no one); channels that were told get a "resolved" delivery.
- incident_updated (a repeat of an open incident): nothing. One alert per incident.
- the periodic sweep: reminders while an incident stays open, on channels that ask for them,
  and a new task for deliveries whose task was lost.

Each delivery is created at most once (a unique constraint on incident, channel, event and
sequence), and its task carries only the delivery's id, never a credential or a token.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from notifications.incidents import incident_opened, incident_resolved
from notifications.models import Channel, Delivery, Incident

logger = logging.getLogger(__name__)
Event, Status = Delivery.Event, Delivery.Status
# A queued delivery this far past its time has lost its task (a broker restart): re-enqueue.
LOST_AFTER = timedelta(minutes=2)
SWEEP_BATCH = 1000


def connect_receivers() -> None:
    incident_opened.connect(on_incident_opened, weak=False, dispatch_uid="notify_opened")
    incident_resolved.connect(on_incident_resolved, weak=False, dispatch_uid="notify_resolved")


def on_incident_opened(sender: type, incident: Incident, **kwargs: object) -> None:
    channels = list(Channel.objects.covering(incident).values_list("pk", flat=True))
    if not channels:
        logger.warning("incident %s: no enabled channel covers it; nobody is told", incident.pk)
    create_deliveries(incident, channels, Event.OPENED)


def on_incident_resolved(sender: type, incident: Incident, **kwargs: object) -> None:
    Delivery.objects.filter(incident=incident, status=Status.QUEUED).exclude(
        event=Event.RESOLVED
    ).update(status=Status.CANCELLED, error="Not sent: the incident was resolved first.")
    told = (
        Delivery.objects.filter(
            incident=incident,
            event__in=[Event.OPENED, Event.REMINDER],
            status__in=[Status.SENT, Status.SENDING],
            channel__enabled=True,
        )
        .order_by()
        .values_list("channel_id", flat=True)
        .distinct()
    )
    create_deliveries(incident, list(told), Event.RESOLVED)


def create_deliveries(
    incident: Incident, channel_ids: list[int], event: str, sequence: int = 0
) -> list[int]:
    """Create the deliveries (once: repeats are ignored) and enqueue their tasks."""
    if not channel_ids:
        return []
    hold = settings.NOTIFY_HOLD_SECONDS
    now = timezone.now()
    due = now + timedelta(seconds=hold)
    Delivery.objects.bulk_create(
        [
            Delivery(
                incident=incident,
                channel_id=channel_id,
                event=event,
                sequence=sequence,
                created_at=now,
                next_attempt_at=due,
            )
            for channel_id in channel_ids
        ],
        ignore_conflicts=True,
    )
    ids = list(
        Delivery.objects.filter(
            incident=incident,
            event=event,
            sequence=sequence,
            channel_id__in=channel_ids,
            status=Status.QUEUED,
        ).values_list("pk", flat=True)
    )
    enqueue(ids, hold)
    return ids


def enqueue(ids: Iterable[int], countdown: float = 0.0) -> None:
    """One `deliver` task per delivery id, once the rows are committed."""
    from notifications.tasks import deliver

    ids = list(ids)

    def publish() -> None:
        try:
            for delivery_id in ids:
                deliver.apply_async((delivery_id,), countdown=countdown)
        except Exception as err:
            # The rows are stored: the sweep re-enqueues lost deliveries within minutes.
            logger.warning("could not enqueue %d delivery(ies): %s", len(ids), type(err).__name__)

    if ids:
        transaction.on_commit(publish)


def send_reminders(now: datetime | None = None) -> int:
    """Reminders for open incidents, on channels with a reminder interval; returns how many.

    The reminder's sequence is the number of whole intervals since the incident opened, so
    two sweeps in the same interval create the same row, and the second one is ignored.
    """
    now = now or timezone.now()
    created = 0
    for channel in Channel.objects.enabled().filter(remind_every_minutes__gt=0):
        interval = timedelta(minutes=channel.remind_every_minutes)
        mine = Delivery.objects.filter(incident=OuterRef("pk"), channel=channel)
        due = (
            Incident.objects.filter(resolved_at=None, opened_at__lte=now - interval)
            # Remind only of what this channel was told, and not while a message is on its way.
            .filter(Exists(mine.filter(event=Event.OPENED, status=Status.SENT)))
            .exclude(Exists(mine.filter(status__in=[Status.QUEUED, Status.SENDING])))
            .values_list("pk", "opened_at")
        )
        rows = [
            Delivery(
                incident_id=pk,
                channel=channel,
                event=Event.REMINDER,
                sequence=(now - opened_at) // interval,
                created_at=now,
                next_attempt_at=now,
            )
            for pk, opened_at in due
        ]
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
        new = Delivery.objects.filter(
            channel=channel, event=Event.REMINDER, created_at=now, status=Status.QUEUED
        ).values_list("pk", flat=True)
        new = list(new)
        enqueue(new)
        created += len(new)
    return created


def requeue_lost(now: datetime | None = None) -> int:
    """Deliveries whose task vanished: cut off mid-send (a worker died) or never run."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.NOTIFY_SENDING_LEASE_SECONDS)
    stale = Delivery.objects.filter(status=Status.SENDING, claimed_at__lt=now - lease)
    cut_off = list(stale.values_list("pk", flat=True)[:SWEEP_BATCH])
    Delivery.objects.filter(pk__in=cut_off, status=Status.SENDING).update(
        status=Status.QUEUED,
        digest=None,
        next_attempt_at=now,
        error="Sending was cut off (the worker stopped); it is sent again, maybe twice.",
    )
    lost = list(
        Delivery.objects.filter(
            status=Status.QUEUED, channel__enabled=True, next_attempt_at__lt=now - LOST_AFTER
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    enqueue([*cut_off, *lost])
    return len(cut_off) + len(lost)


def sweep() -> int:
    """The periodic task's body: reminders, then lost deliveries."""
    return send_reminders() + requeue_lost()


def enable_channels(channel_ids: Iterable[int]) -> int:
    """Switch channels on again (a person fixed the cause) and send what waited for them."""
    ids = list(channel_ids)
    count = Channel.objects.filter(pk__in=ids).update(
        enabled=True, disabled_reason="", disabled_at=None
    )
    waiting = Delivery.objects.filter(channel_id__in=ids, status=Status.QUEUED)
    enqueue(waiting.values_list("pk", flat=True))
    return count
