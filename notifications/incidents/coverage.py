"""Who hears of an incident: is an open incident covered by at least one enabled channel?

An incident nobody hears of is the one failure that cannot announce itself, so it is shown
where on-call looks: the admin's incident and channel lists, an email to Django's ADMINS (when
EMAIL_URL is set), and, through `uncovered_incidents()`, any page or health check that asks.
Every question here is one query, however many incidents and channels there are.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import mail_admins
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from notifications.models import Channel, Incident

logger = logging.getLogger(__name__)
Kind = Incident.Kind
MAIL_BATCH = 50  # incidents named in one email to the admins


def is_covered() -> Q:
    """A condition on Incident: some enabled channel covers it."""
    enabled = Channel.objects.filter(enabled=True)
    by_token = Channel.tokens.through.objects.filter(
        token_id=OuterRef("token_id"), channel__enabled=True
    )
    by_portal = Channel.portals.through.objects.filter(
        portal_id=OuterRef("token__portal_id"), channel__enabled=True
    )
    everyone = Exists(enabled.filter(covers_all_tokens=True))
    others = Exists(enabled.exclude(pk=OuterRef("channel_id")))
    return (
        Q(Q(kind=Kind.TOKEN), Q(everyone) | Q(Exists(by_token)) | Q(Exists(by_portal)))
        | Q(Q(kind=Kind.OUTAGE), Exists(enabled))
        | Q(Q(kind=Kind.CHANNEL), others)
    )


def with_coverage(incidents: QuerySet) -> QuerySet:
    """The incidents, each with `covered` (True: an enabled channel hears of it)."""
    return incidents.annotate(covered=ExpressionWrapper(is_covered(), output_field=BooleanField()))


def uncovered_incidents() -> QuerySet:
    """Open incidents that no enabled channel covers: nobody is told of them. One query, for
    the admin, the staff home page and the health endpoint alike."""
    return Incident.objects.filter(resolved_at=None).filter(~is_covered())


def covered_by(channel: Channel) -> Q:
    """A condition on Incident: `channel` covers it (enabled or not)."""
    not_itself = ~Q(kind=Kind.CHANNEL, channel=channel)
    if channel.covers_all_tokens:
        return not_itself
    chosen = (
        Q(kind=Kind.OUTAGE)
        | Q(token__in=channel.tokens.values("pk"))
        | Q(token__portal__in=channel.portals.values("pk"))
    )
    return (chosen | Q(kind=Kind.CHANNEL)) & not_itself


def notify_admins(now: datetime | None = None) -> int:
    """Email Django's ADMINS once about each open incident that nobody hears of; returns how
    many it named. An incident heard of again is named again if it is left alone later."""
    now = now or timezone.now()
    heard_again = Incident.objects.filter(resolved_at=None, uncovered_notified_at__isnull=False)
    heard_again.filter(is_covered()).update(uncovered_notified_at=None)
    if not (settings.ADMINS and settings.EMAIL_URL):
        return 0
    candidates = uncovered_incidents().filter(uncovered_notified_at=None).order_by("opened_at")
    ids = list(candidates.values_list("pk", flat=True)[:MAIL_BATCH])
    # Claimed first, so two sweeps at once cannot both send the same news.
    claim = Incident.objects.filter(pk__in=ids, uncovered_notified_at=None)
    if not claim.update(uncovered_notified_at=now):
        return 0
    named = list(
        Incident.objects.filter(pk__in=ids, uncovered_notified_at=now)
        .select_related("token__portal", "channel")
        .defer("token__access_token", "token__refresh_token", "channel__credentials")
    )
    try:
        mail_admins(*_admin_mail(named), fail_silently=False)
    except Exception as err:  # SMTP down: the next sweep tries again
        logger.warning("could not email the admins about %d incident(s): %s", len(named), err)
        Incident.objects.filter(pk__in=ids, uncovered_notified_at=now).update(
            uncovered_notified_at=None
        )
        return 0
    logger.warning("emailed the admins: %d open incident(s) reach nobody", len(named))
    return len(named)


def _admin_mail(named: list[Incident]) -> tuple[str, str]:
    site = settings.SITE_URL
    subject = f"{len(named)} open incident(s) reach nobody: no enabled channel covers them"
    lines = [
        "No enabled notification channel covers these open incidents, so b24keeper tells "
        "nobody about them:",
        "",
    ]
    for incident in named:
        url = reverse("admin:notifications_incident_change", args=[incident.pk])
        what = incident.error_code or "?"
        lines.append(f"- {incident} — {what} — since {incident.opened_at:%Y-%m-%d %H:%M %Z}")
        lines.append(f"  {site}{url}")
    lines += [
        "",
        "Enable a channel (or add one) that covers them: "
        f"{site}{reverse('admin:notifications_channel_changelist')}",
    ]
    return subject, "\n".join(lines)
