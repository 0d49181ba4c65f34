"""What the notifications admin pages show: status badges, short texts, why a delivery still
waits, and the banner for open incidents that reach nobody."""

from datetime import datetime

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _

from core.display import EMPTY, when
from notifications.incidents import coverage
from notifications.models import Delivery

RED, ORANGE, GREEN, GREY, BLUE = "#dc3545", "#fd7e14", "#198754", "#6c757d", "#0d6efd"
DELIVERY_COLOURS: dict[str, str] = {
    Delivery.Status.QUEUED: BLUE,
    Delivery.Status.SENDING: ORANGE,
    Delivery.Status.SENT: GREEN,
    Delivery.Status.FAILED: RED,
    Delivery.Status.CANCELLED: GREY,
}
# Encrypted columns nobody reads on these pages: decrypting them costs time per row.
TOKEN_SECRETS = ("access_token", "refresh_token")


def badge(colour: str, text: str, title: str = "") -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px" title="{}">'
        "{}</span>",
        colour,
        title,
        text,
    )


def short(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


class WarnsUncovered(admin.ModelAdmin):
    """A list page that says, above the list, when open incidents reach nobody."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        if request.method == "GET":
            warn_uncovered(request)
        return super().changelist_view(request, extra_context)


def warn_uncovered(request: HttpRequest) -> None:
    """The banner of the channel and incident lists: open incidents that reach nobody."""
    count = coverage.uncovered_incidents().count()
    if not count:
        return
    url = reverse("admin:notifications_incident_changelist") + "?state=uncovered"
    messages.error(
        request,
        format_html(
            _(
                "{} open incident(s) reach nobody: no alert of them was sent, and none is on its "
                "way on an enabled channel. Look at the channels' last errors, or enable or add "
                'a channel that covers them. <a href="{}">Show them</a>'
            ),
            count,
            url,
        ),
    )


def delivery_status(obj: Delivery) -> str:
    if obj.status == Delivery.Status.SENT and obj.delivered_at:
        return badge(GREEN, _("Delivered"), _("The provider confirmed that it arrived."))
    if obj.status == Delivery.Status.SENT and obj.next_check_at:
        return badge(
            GREEN, _("Sent (checking)"), _("Waiting for the provider to confirm it arrived.")
        )
    shown = badge(DELIVERY_COLOURS[obj.status], obj.get_status_display(), obj.error)
    if obj.status != Delivery.Status.QUEUED:
        return shown
    reason, detail = queue_reason(obj)
    return format_html(
        '{}<div class="help queue-reason" title="{}">{}</div>', shown, detail, reason
    )


def queue_reason(obj: Delivery) -> tuple[str, str]:
    """Why a queued delivery has not gone out yet, in words, and the setting behind it."""
    now = timezone.now()
    if not obj.channel.enabled:
        return _("waits until the channel is enabled"), ""
    if obj.next_attempt_at <= now:
        return _("due now: a worker sends it in a moment"), ""
    if obj.attempts:
        text = _("retry at %(when)s after %(attempts)d failed attempt(s)")
        return text % {"when": when(obj.next_attempt_at), "attempts": obj.attempts}, ""
    text = _(
        "held until %(when)s: alerts arriving within %(hold)g s go out together as one message"
    )
    until = timezone.localtime(obj.next_attempt_at).strftime("%H:%M:%S")
    detail = _("NOTIFY_HOLD_SECONDS, or the channel's hourly limit (at most per hour)")
    return text % {"when": until, "hold": settings.NOTIFY_HOLD_SECONDS}, detail


def delivery_event(obj: Delivery) -> str:
    event = str(obj.get_event_display())
    return f"{event} #{obj.sequence}" if obj.event == Delivery.Event.REMINDER else event


def stacked_when(moment: datetime | None) -> str:
    """A date and time that may wrap between the two, never inside either (a narrow column
    on a laptop broke "2026-11-29" in the middle)."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    return format_html(
        '<span class="when"><span>{}</span> <span>{}</span></span>',
        formats.date_format(local, "Y-m-d"),
        formats.date_format(local, "H:i"),
    )
