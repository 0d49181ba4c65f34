"""From incidents to deliveries: who hears about what, and when a task is enqueued.

- incident_opened: one "opened" delivery for every channel covering the token, enabled or not
  (an outage: every channel; a channel b24keeper switched off: every other channel). A
  disabled channel's deliveries wait, and enabling it sends them. Each waits
  NOTIFY_HOLD_SECONDS, so a storm can gather.
- incident_updated: a repeat sends nothing, unless it changed what a person must do
  (`severity_changed`): then every covering channel gets a new "changed" alert, except where
  an alert of the incident still waits (it tells the new state when it goes).
- incident_resolved: deliveries nobody received yet are cancelled (a recovery notice for an
  alert never seen helps no one); channels that were told get a "resolved" delivery. A
  switched-off channel that is on again ends its incident quietly.
- a channel added, enabled or given more tokens (`channel_saved`, `enable_channels`): the
  "opened" alert of every open incident it covers and has none of (`catch_up`).
- the periodic sweep: the same catch-up for every enabled channel (an incident whose
  deliveries were never made gets them), reminders while an incident stays open, new tasks
  for deliveries and status checks whose task was lost, channels switched on in their form,
  and an email to Django's ADMINS about open incidents nobody hears of.

Each delivery is created at most once (a unique constraint on incident, channel, event and
sequence), and its task carries only the delivery's id, never a credential or a token.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from core import publish
from notifications.incidents import coverage, lifecycle
from notifications.incidents.lifecycle import incident_opened, incident_resolved, incident_updated
from notifications.models import FIRST_ALERTS, Channel, Delivery, Incident

logger = logging.getLogger(__name__)
Event, Status = Delivery.Event, Delivery.Status
# A queued delivery this far past its time has lost its task (a broker restart): re-enqueue.
LOST_AFTER = timedelta(minutes=2)
# The tasks' registered names (contracts: queued messages carry them across upgrades).
DELIVER_TASK = "notifications.tasks.deliver"
CHECK_TASK = "notifications.tasks.check_delivery"
SWEEP_BATCH = 1000


def connect_receivers() -> None:
    incident_opened.connect(on_incident_opened, weak=False, dispatch_uid="notify_opened")
    incident_updated.connect(on_incident_updated, weak=False, dispatch_uid="notify_updated")
    incident_resolved.connect(on_incident_resolved, weak=False, dispatch_uid="notify_resolved")


def on_incident_opened(sender: type, incident: Incident, **kwargs: object) -> None:
    channels = list(Channel.objects.concerned(incident).values_list("pk", "enabled"))
    if not any(enabled for _, enabled in channels):
        logger.warning("incident %s: no enabled channel covers it; nobody is told", incident.pk)
    create_deliveries(incident, [pk for pk, _ in channels], Event.OPENED)


def on_incident_updated(
    sender: type, incident: Incident, severity_changed: bool = False, **kwargs: object
) -> None:
    if not severity_changed:
        return
    waiting = Delivery.objects.filter(incident=incident, status=Status.QUEUED)
    waiting.filter(event=Event.REMINDER).update(
        status=Status.CANCELLED, error="Not sent: the alert about the change replaces it."
    )
    told_soon = set(waiting.filter(event__in=FIRST_ALERTS).values_list("channel_id", flat=True))
    channels = Channel.objects.concerned(incident).values_list("pk", flat=True)
    create_deliveries(
        incident, [pk for pk in channels if pk not in told_soon], Event.CHANGED, incident.changes
    )


def on_incident_resolved(sender: type, incident: Incident, **kwargs: object) -> None:
    Delivery.objects.filter(incident=incident, status=Status.QUEUED).exclude(
        event=Event.RESOLVED
    ).update(status=Status.CANCELLED, error="Not sent: the incident was resolved first.")
    if incident.kind == Incident.Kind.CHANNEL:
        return  # whoever enabled the channel knows; one notice was enough
    if not kwargs.get("recovered", True):
        return  # staff disabled the token: "it refreshes again" would be untrue
    told = (
        Delivery.objects.filter(
            incident=incident,
            event__in=[Event.OPENED, Event.CHANGED, Event.REMINDER],
            status__in=[Status.SENT, Status.SENDING],
        )
        .order_by()
        .values_list("channel_id", flat=True)
        .distinct()
    )
    create_deliveries(incident, list(told), Event.RESOLVED)


def create_deliveries(
    incident: Incident, channel_ids: list[int], event: str, sequence: int = 0
) -> list[int]:
    """Create the deliveries (once: repeats are ignored) and enqueue the tasks of those on
    enabled channels; the others wait for their channel to be enabled."""
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
            channel__enabled=True,
            status=Status.QUEUED,
        ).values_list("pk", flat=True)
    )
    enqueue(ids, hold)
    return ids


def enqueue(ids: Iterable[int], countdown: float = 0.0) -> None:
    """One `deliver` task per delivery id, once the rows are committed."""
    _publish(DELIVER_TASK, list(ids), countdown)


def enqueue_checks(ids: Iterable[int], countdown: float = 0.0) -> None:
    """One `check_delivery` task per delivery id, once the rows are committed."""
    _publish(CHECK_TASK, list(ids), countdown)


def _publish(task: str, ids: list[int], countdown: float) -> None:
    # After the commit, by this process's publisher thread: the caller (maybe a refresh that
    # resolved an incident) never waits on the broker. What is not published is lost work the
    # sweep re-enqueues (requeue_lost) from the rows.
    for delivery_id in ids:
        publish.send_after_commit(task, (delivery_id,), countdown=countdown)


def send_reminders(now: datetime | None = None) -> int:
    """Reminders of open incidents, on channels with a reminder interval; returns how many.

    A channel is reminded of each open incident it covers after a whole interval in which
    nothing about it went out there, whether or not the first alert got through; never while
    a message about it is on its way. The sequence is the number of whole intervals since the
    incident opened: two sweeps in one interval make the same row, the second is ignored."""
    now = now or timezone.now()
    created = 0
    for channel in Channel.objects.enabled().filter(remind_every_minutes__gt=0):
        interval = timedelta(minutes=channel.remind_every_minutes)
        mine = Delivery.objects.filter(incident=OuterRef("pk"), channel=channel)
        due = (
            Incident.objects.filter(resolved_at=None, opened_at__lte=now - interval)
            .exclude(kind=Incident.Kind.CHANNEL)  # one notice of a switched-off channel
            .filter(coverage.covered_by(channel))
            .exclude(Exists(mine.filter(status__in=[Status.QUEUED, Status.SENDING])))
            .exclude(Exists(mine.filter(sent_at__gt=now - interval)))
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
        made = Delivery.objects.filter(
            channel=channel, event=Event.REMINDER, created_at=now, status=Status.QUEUED
        )
        new = list(made.values_list("pk", flat=True))
        enqueue(new)
        created += len(new)
    return created


def requeue_lost(now: datetime | None = None) -> int:
    """Deliveries whose task vanished: cut off mid-send (a worker died) or never run; and
    status checks whose task vanished the same way."""
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
    checks = list(
        Delivery.objects.filter(status=Status.SENT, next_check_at__lt=now - LOST_AFTER)
        .order_by("next_check_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    enqueue_checks(checks)
    return len(cut_off) + len(lost) + len(checks)


def sweep() -> int:
    """The periodic task's body: reminders, lost work, channels switched on in their form,
    and the admins' email about incidents nobody hears of."""
    switched_on = Channel.objects.enabled().filter(
        Q(disabled_at__isnull=False) | Q(pk__in=_open_channel_incidents())
    )
    enable_channels(switched_on.values_list("pk", flat=True))
    done = catch_up(Channel.objects.enabled().values_list("pk", flat=True))
    done += send_reminders() + requeue_lost()
    coverage.notify_admins()
    return done


def catch_up(channel_ids: Iterable[int]) -> int:
    """The "opened" alert of every open incident an enabled channel covers and has no alert of
    yet: a channel added or enabled (or given more tokens) hears what is already open, and an
    incident whose deliveries were never made (a worker killed between the two) gets them.
    Returns how many deliveries it created."""
    created = 0
    for channel in Channel.objects.enabled().filter(pk__in=list(channel_ids)).defer("credentials"):
        told = Delivery.objects.filter(
            incident=OuterRef("pk"), channel=channel, event__in=FIRST_ALERTS
        )
        missing = (
            Incident.objects.filter(resolved_at=None)
            .filter(coverage.covered_by(channel))
            .exclude(Exists(told))
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for incident in Incident.objects.filter(pk__in=list(missing)):
            created += len(create_deliveries(incident, [channel.pk], Event.OPENED))
    return created


def channel_saved(channel_id: int) -> int:
    """A channel was added or changed in its form (its tokens and portals saved): if it is
    enabled, it hears at once of every open incident it covers."""
    return catch_up([channel_id])


def _open_channel_incidents() -> QuerySet:
    return Incident.objects.filter(kind=Incident.Kind.CHANNEL, resolved_at=None).values(
        "channel_id"
    )


def switch_off(channel_id: int, reason: str) -> None:
    """A permanent provider error: the channel is off until a person enables it, and every
    other channel hears of it once (a channel incident)."""
    now = timezone.now()
    Channel.objects.filter(pk=channel_id).update(
        enabled=False,
        disabled_reason=reason,
        disabled_at=now,
        last_error=reason,
        last_error_at=now,
    )
    channel = Channel.objects.defer("credentials").get(pk=channel_id)
    lifecycle.open_channel_incident(channel, reason)


def enable_channels(channel_ids: Iterable[int]) -> int:
    """Switch channels on again (a person fixed the cause) and send what waited for them:
    what queued up while they were off, and the alert of every incident still open that
    failed there."""
    ids = list(channel_ids)
    if not ids:
        return 0
    count = Channel.objects.filter(pk__in=ids).update(
        enabled=True, disabled_reason="", disabled_at=None, failing_since=None
    )
    lifecycle.resolve_for_channels(ids)
    newer = Delivery.objects.filter(
        incident=OuterRef("incident"),
        channel=OuterRef("channel"),
        event__in=FIRST_ALERTS,
        created_at__gt=OuterRef("created_at"),
    )
    failed = Delivery.objects.filter(
        channel_id__in=ids,
        status=Status.FAILED,
        event__in=FIRST_ALERTS,
        incident__resolved_at=None,
    ).exclude(Exists(newer))
    again = list(failed.values_list("pk", flat=True))
    Delivery.objects.filter(pk__in=again).update(
        status=Status.QUEUED, next_attempt_at=timezone.now(), digest=None
    )
    waiting = Delivery.objects.filter(channel_id__in=ids, status=Status.QUEUED)
    enqueue(waiting.values_list("pk", flat=True))
    catch_up(ids)
    return count


def disable_channels(channel_ids: Iterable[int]) -> int:
    """Switch channels off by hand: their alerts wait until they are enabled again."""
    return Channel.objects.filter(pk__in=list(channel_ids)).update(enabled=False)
