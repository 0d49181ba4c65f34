"""Admin for channels, deliveries and incidents: where staff see who was told what, and why a
channel went quiet. Credentials are masked; deliveries and incidents are read-only."""

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from encryption import crypto
from notifications import dispatch, sending
from notifications.admin_views import ChannelViewsMixin
from notifications.backends import BACKENDS, ConfigurationError
from notifications.forms import ChannelForm, credential_input
from notifications.models import Channel, Delivery, Incident
from portals.display import EMPTY, when

RED, ORANGE, GREEN, GREY, BLUE = "#dc3545", "#fd7e14", "#198754", "#6c757d", "#0d6efd"
DELIVERY_COLOURS = {
    Delivery.Status.QUEUED: BLUE,
    Delivery.Status.SENDING: ORANGE,
    Delivery.Status.SENT: GREEN,
    Delivery.Status.FAILED: RED,
    Delivery.Status.CANCELLED: GREY,
}
# Encrypted columns nobody reads on these pages: decrypting them costs time per row.
TOKEN_SECRETS = ("access_token", "refresh_token")
# The channel form's inputs that carry a secret credential: hidden on error pages.
SECRET_INPUTS = tuple(
    credential_input(kind, credential.name)
    for kind, backend in BACKENDS.items()
    for credential in backend.credential_fields
    if credential.secret
)


def badge(colour: str, text: str, title: str = "") -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px" title="{}">'
        "{}</span>",
        colour,
        title,
        text,
    )


def _short(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


@admin.register(Channel)
class ChannelAdmin(ChannelViewsMixin, admin.ModelAdmin):
    form = ChannelForm
    list_display = [
        "name",
        "kind",
        "destination",
        "state",
        "coverage",
        "max_per_hour",
        "remind_every_minutes",
        "last_sent_at",
        "last_error_short",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "destination"]
    autocomplete_fields = ["portals", "tokens"]
    actions = ["send_test_message", "enable", "disable"]
    _health = ["last_sent_at", "last_error", "last_error_at", "disabled_reason", "disabled_at"]
    readonly_fields = ["state", "stored_credentials", *_health, "created_at", "updated_at"]

    class Media:
        # On the add form, show only the chosen provider's credential fields.
        js = ["notifications/channel_form.js"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .defer("credentials")
            .annotate(
                portal_count=Count("portals", distinct=True),
                token_count=Count("tokens", distinct=True),
            )
        )

    @method_decorator(sensitive_post_parameters(*SECRET_INPUTS))
    @method_decorator(sensitive_variables())
    def changeform_view(self, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(*args, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        # Another provider needs other credentials: make a new channel instead.
        return [*self.readonly_fields, "kind"] if obj else list(self.readonly_fields)

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> list:
        top = ["name", "kind", "destination", "enabled"] + (["state"] if obj else [])
        fieldsets: list = [(None, {"fields": top})]
        for kind, backend in BACKENDS.items():
            if obj and obj.kind != kind:
                continue
            names = [credential_input(kind, c.name) for c in backend.credential_fields]
            title = _("%(provider)s credentials") % {"provider": backend.label}
            description = (
                None if obj else _("Only for a %(provider)s channel.") % {"provider": backend.label}
            )
            fields = ["stored_credentials", *names] if obj else names
            classes = [f"provider-credentials provider-{kind}"]
            fieldsets.append(
                (title, {"fields": fields, "description": description, "classes": classes})
            )
        fieldsets += [
            (_("Which tokens"), {"fields": ["covers_all_tokens", "portals", "tokens"]}),
            (_("Limits and reminders"), {"fields": ["max_per_hour", "remind_every_minutes"]}),
        ]
        if obj:
            fieldsets += [
                (_("Health"), {"fields": self._health}),
                (_("History"), {"fields": ["created_at", "updated_at"]}),
            ]
        return fieldsets

    @admin.display(description=gettext_lazy("state"), ordering="enabled")
    def state(self, obj: Channel) -> str:
        if obj.enabled:
            return badge(GREEN, _("enabled"))
        if obj.disabled_reason:
            return badge(RED, _("disabled by an error"), obj.disabled_reason)
        return badge(GREY, _("disabled"))

    @admin.display(description=gettext_lazy("covers"))
    def coverage(self, obj: Channel) -> str:
        if obj.covers_all_tokens:
            return _("all tokens")
        portals, tokens = getattr(obj, "portal_count", 0), getattr(obj, "token_count", 0)
        return _("%(portals)d portal(s), %(tokens)d token(s)") % {
            "portals": portals,
            "tokens": tokens,
        }

    @admin.display(description=gettext_lazy("last error"))
    def last_error_short(self, obj: Channel) -> str:
        return _short(obj.disabled_reason or obj.last_error) or EMPTY

    @admin.display(description=gettext_lazy("stored credentials"))
    def stored_credentials(self, obj: Channel) -> str:
        try:
            stored = obj.get_credentials()
        except ConfigurationError as err:
            return str(err)
        shown = [
            f"{c.label}: {crypto.mask(value) if c.secret else value or EMPTY}"
            for c in BACKENDS[obj.kind].credential_fields
            for value in [stored.get(c.name)]
        ]
        return "; ".join(shown)

    def has_send_test_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.send_test_message")

    def has_toggle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.toggle_channel")

    @admin.action(description=gettext_lazy("Send test message"), permissions=["send_test"])
    def send_test_message(self, request: HttpRequest, queryset: QuerySet) -> None:
        for channel in queryset:
            ok, answer = sending.send_test(channel)
            level = messages.SUCCESS if ok else messages.ERROR
            self.message_user(request, f"“{channel.name}”: {answer}", level)

    @admin.action(
        description=gettext_lazy("Enable (clears the error; sends what waited)"),
        permissions=["toggle"],
    )
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = dispatch.enable_channels(queryset.values_list("pk", flat=True))
        text = _("%(count)d channel(s) enabled.") % {"count": count}
        self.message_user(request, text, messages.SUCCESS)

    @admin.action(
        description=gettext_lazy("Disable (alerts wait until enabled)"), permissions=["toggle"]
    )
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.update(enabled=False)
        text = _("%(count)d channel(s) disabled.") % {"count": count}
        self.message_user(request, text, messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by b24keeper itself: staff look, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def delivery_status(obj: Delivery) -> str:
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


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "incident_link",
        "channel_name",
        "event_display",
        "status_display",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "message_id",
        "digest_link",
        "error_short",
    ]
    list_filter = ["status", "channel", "event"]
    list_select_related = ["incident__token", "channel"]
    search_fields = ["provider_message_id", "incident__token__reference"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        secrets = [f"incident__token__{name}" for name in TOKEN_SECRETS]
        return super().get_queryset(request).defer("channel__credentials", *secrets)

    @admin.display(description=gettext_lazy("incident"), ordering="incident")
    def incident_link(self, obj: Delivery) -> str:
        url = reverse("admin:notifications_incident_change", args=[obj.incident_id])
        incident = obj.incident
        subject = incident.token.reference if incident.token_id else _("all portals")
        return format_html('<a href="{}" title="{}">{}</a>', url, incident, subject)

    @admin.display(description=gettext_lazy("channel"), ordering="channel__name")
    def channel_name(self, obj: Delivery) -> str:
        return format_html('<span title="{}">{}</span>', obj.channel, obj.channel.name)

    @admin.display(description=gettext_lazy("message id"))
    def message_id(self, obj: Delivery) -> str:
        # Provider ids run to 34 characters; the start tells them apart, the title has it all.
        shown = _short(obj.provider_message_id, 12) or EMPTY
        return format_html('<span title="{}">{}</span>', obj.provider_message_id, shown)

    @admin.display(description=gettext_lazy("event"), ordering="event")
    def event_display(self, obj: Delivery) -> str:
        return delivery_event(obj)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_display(self, obj: Delivery) -> str:
        return delivery_status(obj)

    @admin.display(description=gettext_lazy("in digest"))
    def digest_link(self, obj: Delivery) -> str:
        if not obj.digest_id:
            return EMPTY
        url = reverse("admin:notifications_delivery_change", args=[obj.digest_id])
        return format_html('<a href="{}">#{}</a>', url, obj.digest_id)

    @admin.display(description=gettext_lazy("error"))
    def error_short(self, obj: Delivery) -> str:
        return _short(obj.error, 60) or EMPTY


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fk_name = "incident"
    extra = 0
    can_delete = False
    fields = ["channel", "event_display", "status_display", "attempts", "sent_at", "error"]
    readonly_fields = fields
    ordering = ["created_at", "pk"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("channel").defer("channel__credentials")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("event"))
    def event_display(self, obj: Delivery) -> str:
        return delivery_event(obj)

    @admin.display(description=gettext_lazy("status"))
    def status_display(self, obj: Delivery) -> str:
        return delivery_status(obj)


class StateFilter(admin.SimpleListFilter):
    title = gettext_lazy("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("open", _("Open")), ("resolved", _("Resolved"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(resolved_at=None)
        if self.value() == "resolved":
            return queryset.exclude(resolved_at=None)
        return queryset


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    # What is open, where, since when; the kind shows as the subject ("all portals" for an
    # outage) and in the filter, the rest (last seen, message) is on the incident's page.
    list_display = [
        "subject",
        "portal",
        "owner",
        "error_code",
        "permanent",
        "occurrences",
        "state",
        "opened_at",
        "resolved_at",
        "delivery_count",
    ]
    list_display_links = ["subject"]
    list_filter = [StateFilter, "kind", "permanent"]
    fields = [
        "kind",
        "token",
        "state",
        "permanent",
        "error_code",
        "message",
        "occurrences",
        "affected_tokens",
        "opened_at",
        "last_seen_at",
        "resolved_at",
    ]
    readonly_fields = fields
    list_select_related = ["token__portal", "token__owner"]
    search_fields = ["token__reference", "token__portal__domain", "error_code"]
    inlines = [DeliveryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        secrets = [f"token__{name}" for name in TOKEN_SECRETS]
        return (
            super()
            .get_queryset(request)
            .defer(*secrets)
            .annotate(deliveries_total=Count("deliveries"))
        )

    @admin.display(description=gettext_lazy("token"), ordering="token__reference")
    def subject(self, obj: Incident) -> str:
        return obj.token.reference if obj.token_id else _("all portals")

    @admin.display(description=gettext_lazy("portal"), ordering="token__portal__domain")
    def portal(self, obj: Incident) -> str:
        return obj.token.portal.domain if obj.token_id else _("all portals")

    @admin.display(description=gettext_lazy("owner"))
    def owner(self, obj: Incident) -> str:
        return str(obj.token.owner or EMPTY) if obj.token_id else EMPTY

    @admin.display(description=gettext_lazy("state"), ordering="resolved_at")
    def state(self, obj: Incident) -> str:
        return badge(RED, _("open")) if obj.is_open else badge(GREEN, _("resolved"))

    @admin.display(description=gettext_lazy("deliveries"), ordering="deliveries_total")
    def delivery_count(self, obj: Incident) -> str:
        url = reverse("admin:notifications_delivery_changelist")
        return format_html(
            '<a href="{}?incident__id__exact={}">{}</a>', url, obj.pk, obj.deliveries_total
        )
