"""Opening, updating and resolving incidents: the one entry point for escalations.

Who raises: portals.escalation (the refresh service decides *when* to escalate).
Who delivers: receivers of the signals below (the notifications dispatcher), connected in
NotificationsConfig.ready(). Signals are sent after the transaction commits, so a receiver
always sees the stored incident and a rolled-back failure alerts nobody.

    incident_opened(sender=Incident, incident=...)    # once per episode
    incident_updated(sender=Incident, incident=...)   # a repeat within the episode
    incident_resolved(sender=Incident, incident=...)  # the episode is over
"""

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from notifications.models import Incident

if TYPE_CHECKING:
    from portals.models import Token

incident_opened = Signal()
incident_updated = Signal()
incident_resolved = Signal()


def _send_on_commit(signal: Signal, incident: Incident) -> None:
    transaction.on_commit(lambda: signal.send(sender=Incident, incident=incident))


def open_incident(token: "Token", *, code: str, message: str, permanent: bool) -> Incident:
    """Open the token's incident, or count a repeat on the one already open."""
    open_now = Incident.objects.filter(token=token, kind=Incident.Kind.TOKEN, resolved_at=None)
    updated = open_now.update(
        occurrences=F("occurrences") + 1,
        last_seen_at=timezone.now(),
        error_code=code[:100],
        message=message,
        permanent=permanent,
    )
    if updated:
        incident = open_now.get()
        _send_on_commit(incident_updated, incident)
        return incident
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                token=token, error_code=code[:100], message=message, permanent=permanent
            )
    except IntegrityError:
        # A concurrent failure of the same token opened it first: count ours as a repeat.
        return open_incident(token, code=code, message=message, permanent=permanent)
    _send_on_commit(incident_opened, incident)
    return incident


def resolve_for_token(token: "Token") -> int:
    """Close the token's open incident, if any (a refresh succeeded or it was re-connected)."""
    incidents = list(Incident.objects.filter(token=token, resolved_at=None))
    for incident in incidents:
        incident.resolved_at = timezone.now()
        incident.save(update_fields=["resolved_at"])
        _send_on_commit(incident_resolved, incident)
    return len(incidents)


def open_outage(*, code: str, message: str, affected: int) -> Incident:
    """One incident for a provider-wide outage, instead of one per token."""
    outage = Incident.objects.filter(kind=Incident.Kind.OUTAGE, resolved_at=None).first()
    if outage:
        Incident.objects.filter(pk=outage.pk).update(
            occurrences=F("occurrences") + 1, affected_tokens=affected, last_seen_at=timezone.now()
        )
        return outage
    try:
        with transaction.atomic():
            outage = Incident.objects.create(
                kind=Incident.Kind.OUTAGE,
                error_code=code[:100],
                message=message,
                affected_tokens=affected,
            )
    except IntegrityError:
        return Incident.objects.get(kind=Incident.Kind.OUTAGE, resolved_at=None)
    _send_on_commit(incident_opened, outage)
    return outage


def resolve_outage() -> bool:
    outage = Incident.objects.filter(kind=Incident.Kind.OUTAGE, resolved_at=None).first()
    if not outage:
        return False
    outage.resolved_at = timezone.now()
    outage.save(update_fields=["resolved_at"])
    _send_on_commit(incident_resolved, outage)
    return True
