"""Who hears of an incident: is an open incident *heard*?

An incident counts as heard only when a delivery of it was **sent**, or one is pending (queued
or sending) on an enabled channel for less than NOTIFY_HEARD_WITHIN: a channel that covers it
is not enough (its provider may be down for good, or its delivery was never made). An open
incident nobody hears of is the one failure that cannot announce itself, so it is shown where
on-call looks: the admin's banner and lists, the staff home page, `/health/` (`alerts`), the
gauge `b24keeper_incidents_unheard`, and an email to Django's ADMINS (when EMAIL_URL is set),
once per incident. Every question here is one query, however many incidents and channels.

Who may call: notifications (admin, delivery), dashboard, ops.observe.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import mail_admins
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from core.dbclock import DbNow
from notifications.models import Channel, Delivery, Incident

logger = logging.getLogger(__name__)
Kind = Incident.Kind
Status = Delivery.Status
MAIL_BATCH = 50  # incidents named in one email to the admins


def is_heard() -> Q:
    """A condition on Incident: a delivery of it was sent, or one waits on an enabled channel
    for less than NOTIFY_HEARD_WITHIN (by the database's clock)."""
    mine = Delivery.objects.filter(incident=OuterRef("pk"))
    recent = DbNow() - timedelta(seconds=settings.NOTIFY_HEARD_WITHIN)
    pending = mine.filter(
        status__in=[Status.QUEUED, Status.SENDING], channel__enabled=True, created_at__gt=recent
    )
    return Q(Exists(mine.filter(status=Status.SENT))) | Q(Exists(pending))


def with_coverage(incidents: QuerySet) -> QuerySet:
    """The incidents, each with `covered` (True: it is heard, see is_heard())."""
    return incidents.annotate(covered=ExpressionWrapper(is_heard(), output_field=BooleanField()))


def unheard_incidents() -> QuerySet:
    """Open incidents nobody hears of (see is_heard()). One query, for the admin, the staff home
    page, the health endpoint and the metrics alike."""
    return Incident.objects.filter(resolved_at=None).filter(~is_heard())


# The older name, for the callers that ask which open incidents reach nobody.
uncovered_incidents = unheard_incidents


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
    many it named. Once per incident: the mail says what to do, and the banner, `/health/`
    and the gauge keep saying it while it lasts."""
    now = now or timezone.now()
    if not (settings.ADMINS and settings.EMAIL_URL):
        return 0
    candidates = unheard_incidents().filter(uncovered_notified_at=None).order_by("opened_at")
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
    subject = f"{len(named)} open incident(s) reach nobody: no alert of them got through"
    within = int(settings.NOTIFY_HEARD_WITHIN)
    lines = [
        "No alert of these open incidents was sent, and none waits on an enabled channel for "
        f"less than {within} s (NOTIFY_HEARD_WITHIN), so nobody has heard of them:",
        "",
    ]
    for incident in named:
        url = reverse("admin:notifications_incident_change", args=[incident.pk])
        what = incident.error_code or "?"
        lines.append(f"- {incident} — {what} — since {incident.opened_at:%Y-%m-%d %H:%M %Z}")
        lines.append(f"  {site}{url}")
    lines += [
        "",
        "Look at the channels' last errors, and enable (or add) a channel that covers them: "
        f"{site}{reverse('admin:notifications_channel_changelist')}",
    ]
    return subject, "\n".join(lines)
