"""Admin for channels: where staff see why a channel went quiet, test it, and switch it on and
off. Credentials are masked and write-only. Deliveries and incidents are in history.py;
what both pages show is in admin_display.py."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from core.display import EMPTY, when
from encryption import crypto
from notifications.admin.channel_views import ChannelViewsMixin
from notifications.admin.display import (
    GREEN,
    GREY,
    ORANGE,
    RED,
    WarnsUncovered,
    badge,
    short,
)
from notifications.admin.forms import ChannelForm, credential_input
from notifications.backends import BACKENDS, ConfigurationError
from notifications.delivery import dispatch, refusals, sending
from notifications.models import Channel

# The channel form's inputs that carry a secret credential: hidden on error pages.
SECRET_INPUTS = tuple(
    credential_input(kind, credential.name)
    for kind, backend in BACKENDS.items()
    for credential in backend.credential_fields
    if credential.secret
)


@admin.register(Channel)
class ChannelAdmin(WarnsUncovered, ChannelViewsMixin, admin.ModelAdmin):
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
    _health = [
        "last_sent_at",
        "failing_since",
        "last_error",
        "last_error_at",
        "disabled_reason",
        "disabled_at",
    ]
    readonly_fields = ["state", "stored_credentials", *_health, "created_at", "updated_at"]

    class Media:
        # On the add form, show only the chosen provider's credential fields.
        js = ["notifications/channel_form.js"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Its tokens and portals are saved now: an enabled channel hears what is open already.
        dispatch.channel_saved(form.instance.pk)

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
        top = ["name", "kind", "destination", "language", "enabled"]
        top += ["state"] if obj else []
        fieldsets: list = [(None, {"fields": top})]
        for kind, backend in BACKENDS.items():
            if obj and obj.kind != kind:
                continue
            names = [credential_input(kind, c.name) for c in backend.credential_fields]
            title = _("%(provider)s credentials") % {"provider": backend.label}
            description = (
                None if obj else _("Only for a %(provider)s channel.") % {"provider": backend.label}
            )
            if obj and not self.has_change_permission(request, obj):
                names = []  # write-only inputs: a viewer sees the stored values' ends only
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
        if obj.enabled and obj.failing_since:
            since = when(obj.failing_since)
            why = refusals.stored_text(obj.last_error)
            return badge(ORANGE, _("failing since %(when)s") % {"when": since}, why)
        if obj.enabled:
            return badge(GREEN, _("enabled"))
        if obj.disabled_reason:
            why = refusals.stored_text(obj.disabled_reason)
            return badge(RED, _("disabled by an error"), why)
        return badge(GREY, _("disabled"))

    @admin.display(description=gettext_lazy("covers"))
    def coverage(self, obj: Channel) -> str:
        if obj.covers_all_tokens:
            return _("all tokens")
        portals, tokens = getattr(obj, "portal_count", 0), getattr(obj, "token_count", 0)
        return ", ".join(
            (
                ngettext("%(count)d portal", "%(count)d portals", portals) % {"count": portals},
                ngettext("%(count)d token", "%(count)d tokens", tokens) % {"count": tokens},
            )
        )

    @admin.display(description=gettext_lazy("last error"))
    def last_error_short(self, obj: Channel) -> str:
        return short(refusals.stored_text(obj.disabled_reason or obj.last_error)) or EMPTY

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
        text = ngettext("%(count)d channel enabled.", "%(count)d channels enabled.", count) % {
            "count": count
        }
        self.message_user(request, text, messages.SUCCESS)

    @admin.action(
        description=gettext_lazy("Disable (alerts wait until enabled)"), permissions=["toggle"]
    )
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = dispatch.disable_channels(queryset.values_list("pk", flat=True))
        text = ngettext("%(count)d channel disabled.", "%(count)d channels disabled.", count) % {
            "count": count
        }
        self.message_user(request, text, messages.SUCCESS)


# Deliveries and incidents: registered by importing their module.
