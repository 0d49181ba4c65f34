"""Opening, updating and resolving incidents: the one entry point for escalations.

Who raises: portals.escalation (the refresh service decides *when* to escalate), and the
dispatcher itself when a permanent provider error switches a channel off.
Who delivers: receivers of the signals below (the notifications dispatcher), connected in
NotificationsConfig.ready(). `incident_opened` is sent inside the transaction that stores the
incident, so its deliveries are stored with it or not at all (a database drop or a killed
worker between the two cannot leave an incident without deliveries); the receivers only
write rows, and tasks are published after the commit. The other signals are sent after the
commit. Either way a rolled-back failure alerts nobody.

    incident_opened(sender=Incident, incident=...)    # once per episode
    incident_updated(sender=Incident, incident=..., severity_changed=...)
        # a repeat within the episode; severity_changed=True when it turned into a failure a
        # person must act on (transient -> permanent, or another permanent error), which
        # alerts every channel anew
    incident_resolved(sender=Incident, incident=...)  # the episode is over
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from notifications.models import Incident

if TYPE_CHECKING:
    from notifications.models import Channel
    from portals.models import Token

incident_opened = Signal()
incident_updated = Signal()
incident_resolved = Signal()


def _send_on_commit(signal: Signal, incident: Incident, **kwargs: object) -> None:
    transaction.on_commit(lambda: signal.send(sender=Incident, incident=incident, **kwargs))


def needs_new_alert(incident: Incident, code: str, permanent: bool) -> bool:
    """A repeat that changes what a person must do: it became permanent, or it is another
    permanent error (invalid_grant, then PAYMENT_REQUIRED). A permanent incident turning
    transient again sends nothing: the person was told already to act."""
    if not permanent:
        return False
    return not incident.permanent or code.lower() != incident.error_code.lower()


def open_incident(token: "Token", *, code: str, message: str, permanent: bool) -> Incident | None:
    """Open the token's incident, or count a repeat on the one already open; None when a
    newer pair was stored since the failure (the token moved on: nothing to open)."""
    with transaction.atomic():
        # The token's row, locked at the version that failed: a pair stored meanwhile moved
        # the version (nothing to open), and a pair stored after this waits for our commit and
        # then sees the incident it must resolve (portals.tokens.state.finish_success). The
        # lock also makes "what it was" and "what it is now" one step for two failures at once.
        if not _still_at(token):
            return None
        incident = (
            Incident.objects.select_for_update()
            .filter(token=token, kind=Incident.Kind.TOKEN, resolved_at=None)
            .first()
        )
        if incident is not None:
            changed = needs_new_alert(incident, code, permanent)
            Incident.objects.filter(pk=incident.pk).update(
                occurrences=F("occurrences") + 1,
                last_seen_at=timezone.now(),
                error_code=code[:100],
                message=message,
                permanent=permanent,
                changes=F("changes") + int(changed),
            )
            incident.refresh_from_db()
            _send_on_commit(incident_updated, incident, severity_changed=changed)
            return incident
        created = _create(token=token, error_code=code[:100], message=message, permanent=permanent)
    if created is None:
        # A concurrent failure of the same token opened it first: count ours as a repeat.
        return open_incident(token, code=code, message=message, permanent=permanent)
    return created


def _create(**fields: object) -> Incident | None:
    """Store an incident and, in the same transaction, its deliveries (incident_opened's
    receivers); None when one is open already (a unique constraint)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                incident = Incident.objects.create(**fields)
        except IntegrityError:
            return None
        incident_opened.send(sender=Incident, incident=incident)
    return incident


def _still_at(token: "Token") -> bool:
    from portals.models import Token

    rows = Token.objects.select_for_update().filter(pk=token.pk, version=token.version)
    return bool(list(rows.values_list("pk", flat=True)))


def resolve_for_token(token: "Token", *, recovered: bool = True) -> int:
    """Close the token's open incident, if any: it refreshes again (a refresh succeeded, it
    was re-connected or enabled), or, with recovered=False, staff switched it off on purpose
    (no recovery notice then: it does not refresh again)."""
    incidents = list(Incident.objects.filter(token=token, resolved_at=None))
    for incident in incidents:
        incident.resolved_at = timezone.now()
        incident.save(update_fields=["resolved_at"])
        _send_on_commit(incident_resolved, incident, recovered=recovered)
    return len(incidents)


def open_outage(*, code: str, message: str, affected: int) -> Incident:
    """One incident for a provider-wide outage, instead of one per token."""
    outage = Incident.objects.filter(kind=Incident.Kind.OUTAGE, resolved_at=None).first()
    if outage:
        Incident.objects.filter(pk=outage.pk).update(
            occurrences=F("occurrences") + 1, affected_tokens=affected, last_seen_at=timezone.now()
        )
        return outage
    outage = _create(
        kind=Incident.Kind.OUTAGE, error_code=code[:100], message=message, affected_tokens=affected
    )
    return outage or Incident.objects.get(kind=Incident.Kind.OUTAGE, resolved_at=None)


def open_channel_incident(channel: "Channel", reason: str) -> Incident | None:
    """A permanent provider error switched `channel` off: every other channel hears of it
    once. None when its incident is open already."""
    return _create(
        kind=Incident.Kind.CHANNEL,
        channel=channel,
        error_code="channel_disabled",
        message=reason,
        permanent=True,
        affected_tokens=0,
    )


def resolve_for_channels(channel_ids: Iterable[int]) -> int:
    """The channels are on again: their incidents are over (queued notices are cancelled)."""
    incidents = list(
        Incident.objects.filter(
            kind=Incident.Kind.CHANNEL, channel_id__in=list(channel_ids), resolved_at=None
        )
    )
    for incident in incidents:
        incident.resolved_at = timezone.now()
        incident.save(update_fields=["resolved_at"])
        _send_on_commit(incident_resolved, incident)
    return len(incidents)


def resolve_outage() -> bool:
    outage = Incident.objects.filter(kind=Incident.Kind.OUTAGE, resolved_at=None).first()
    if not outage:
        return False
    outage.resolved_at = timezone.now()
    outage.save(update_fields=["resolved_at"])
    _send_on_commit(incident_resolved, outage)
    return True
