"""Admin for deliveries and incidents: rows b24keeper writes itself, read-only. Registered by
importing this module from notifications/admin.py."""

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from core.display import EMPTY
from notifications.admin.display import (
    GREEN,
    RED,
    TOKEN_SECRETS,
    WarnsUncovered,
    badge,
    delivery_event,
    delivery_status,
    short,
    stacked_when,
)
from notifications.delivery import messages, refusals
from notifications.incidents import coverage
from notifications.models import Delivery, Incident

if TYPE_CHECKING:  # django_stubs_ext is a type-checking package, not needed to run
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _Counted(TypedDict):
        deliveries_total: int

    # An incident from IncidentAdmin.get_queryset, which counts its deliveries.
    CountedIncident = WithAnnotations[Incident, _Counted]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by b24keeper itself: staff look, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_shown",
        "incident_link",
        "channel_name",
        "event_display",
        "status_display",
        "attempts",
        "next_attempt_shown",
        "sent_shown",  # the status badge says "Delivered" once the provider confirms it
        "message_id",
        "digest_link",
        "error_short",
    ]
    list_filter = ["status", "channel", "event"]
    list_select_related = ["incident__token", "incident__channel", "channel"]
    search_fields = ["provider_message_id", "incident__token__reference"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        secrets = [f"incident__token__{name}" for name in TOKEN_SECRETS]
        return (
            super()
            .get_queryset(request)
            .defer("channel__credentials", "incident__channel__credentials", *secrets)
        )

    @admin.display(description=gettext_lazy("created"), ordering="created_at")
    def created_shown(self, obj: Delivery) -> str:
        return stacked_when(obj.created_at)

    @admin.display(description=gettext_lazy("next attempt"), ordering="next_attempt_at")
    def next_attempt_shown(self, obj: Delivery) -> str:
        # Only a delivery still waiting to go has a next attempt; a sent one has none.
        waiting = obj.status in (Delivery.Status.QUEUED, Delivery.Status.SENDING)
        return stacked_when(obj.next_attempt_at) if waiting else EMPTY

    @admin.display(description=gettext_lazy("sent"), ordering="sent_at")
    def sent_shown(self, obj: Delivery) -> str:
        return stacked_when(obj.sent_at)

    @admin.display(description=gettext_lazy("incident"), ordering="incident")
    def incident_link(self, obj: Delivery) -> str:
        url = reverse("admin:notifications_incident_change", args=[obj.incident_id])
        incident, token = obj.incident, obj.incident.token
        subject = token.reference if token else _("all portals")
        return format_html('<a href="{}" title="{}">{}</a>', url, incident, subject)

    @admin.display(description=gettext_lazy("channel"), ordering="channel__name")
    def channel_name(self, obj: Delivery) -> str:
        return format_html('<span title="{}">{}</span>', obj.channel, obj.channel.name)

    @admin.display(description=gettext_lazy("message id"))
    def message_id(self, obj: Delivery) -> str:
        # Provider ids run to 34 characters; the start tells them apart, the title has it all.
        shown = short(obj.provider_message_id, 12) or EMPTY
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
        return short(refusals.stored_text(obj.error), 60) or EMPTY


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fk_name = "incident"
    extra = 0
    can_delete = False
    fields = ("channel", "event_display", "status_display", "attempts", "sent_at", "error")
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
        return [
            ("open", _("Open")),
            ("uncovered", _("Open, nobody hears")),
            ("resolved", _("Resolved")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(resolved_at=None)
        if self.value() == "uncovered":
            return queryset.filter(resolved_at=None, covered=False)
        if self.value() == "resolved":
            return queryset.exclude(resolved_at=None)
        return queryset


@admin.register(Incident)
class IncidentAdmin(WarnsUncovered, ReadOnlyAdmin):
    # What is open, where, since when; the kind shows as the subject ("all portals" for an
    # outage) and in the filter, the rest (last seen, message) is on the incident's page.
    list_display = [
        "subject",
        "portal",
        "owner",
        "error_code",
        "needs",
        "occurrences",
        "state",
        "opened_at",
        "resolved_at",
        "who_hears",
        "delivery_count",
    ]
    list_display_links = ["subject"]
    list_filter = [StateFilter, "kind", "permanent"]
    fields = (
        "kind",
        "token",
        "state",
        "permanent",
        "error_code",
        "message_shown",
        "occurrences",
        "affected_tokens",
        "changes",
        "channel",
        "opened_at",
        "last_seen_at",
        "resolved_at",
    )
    readonly_fields = fields
    list_select_related = ["token__portal", "token__owner", "channel"]
    search_fields = ["token__reference", "token__portal__domain", "error_code"]
    inlines = [DeliveryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        secrets = [f"token__{name}" for name in TOKEN_SECRETS]
        incidents = (
            super()
            .get_queryset(request)
            .defer(*secrets, "channel__credentials")
            .annotate(deliveries_total=Count("deliveries"))
        )
        return coverage.with_coverage(incidents)

    @admin.display(description=gettext_lazy("who hears"), ordering="covered")
    def who_hears(self, obj: Incident) -> str:
        if not obj.is_open:
            return EMPTY
        if getattr(obj, "covered", True):
            return badge(GREEN, _("a channel"))
        return badge(RED, _("nobody"), _("No enabled channel covers it: enable or add one."))

    @admin.display(description=gettext_lazy("needs"), ordering="permanent")
    def needs(self, obj: Incident) -> str:
        """Words rather than ✔/✖ icons, which read backwards here."""
        return _("a person") if obj.permanent else _("retries only")

    @admin.display(description=gettext_lazy("message"))
    def message_shown(self, obj: Incident) -> str:
        """What failed and what to do, in the reader's language; Bitrix24's words quoted."""
        found = messages.explained(obj)
        head = ""
        if obj.kind == Incident.Kind.OUTAGE:
            head = ngettext(
                "%(count)d token failed to refresh within 10 minutes; the Bitrix24 "
                "authorization server looks unavailable.",
                "%(count)d tokens failed to refresh within 10 minutes; the Bitrix24 "
                "authorization server looks unavailable.",
                obj.affected_tokens,
            ) % {"count": obj.affected_tokens}
        quote = ""
        if found.quote:
            quote = format_html(
                ' <span class="bitrix-words">{} <q>{}</q></span>',
                _("Bitrix24's words:"),
                found.quote,
            )
        return format_html(
            '{} {}{}<br><span class="error-advice">{}</span>', head, found.said, quote, found.advice
        )

    @admin.display(description=gettext_lazy("token"), ordering="token__reference")
    def subject(self, obj: Incident) -> str:
        return obj.token.reference if obj.token else _("all portals")

    @admin.display(description=gettext_lazy("portal"), ordering="token__portal__domain")
    def portal(self, obj: Incident) -> str:
        if obj.kind == Incident.Kind.CHANNEL:
            return EMPTY
        return obj.token.portal.domain if obj.token else _("all portals")

    @admin.display(description=gettext_lazy("owner"))
    def owner(self, obj: Incident) -> str:
        return str(obj.token.owner or EMPTY) if obj.token else EMPTY

    @admin.display(description=gettext_lazy("state"), ordering="resolved_at")
    def state(self, obj: Incident) -> str:
        return badge(RED, _("open")) if obj.is_open else badge(GREEN, _("resolved"))

    @admin.display(description=gettext_lazy("deliveries"), ordering="deliveries_total")
    def delivery_count(self, obj: "CountedIncident") -> str:
        url = reverse("admin:notifications_delivery_changelist")
        return format_html(
            '<a href="{}?incident__id__exact={}">{}</a>', url, obj.pk, obj.deliveries_total
        )
