"""Admin for tokens, the staff's home (portals, app credentials and the audit log:
portals.admin.credentials; the token's own pages and buttons: portals.admin.token_views)."""

from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from core.display import EMPTY, duration, when
from encryption import crypto
from portals.admin.shown import explained_html, last_error_text, refresh_error_text
from portals.admin.token_views import CONNECT, REFRESH, TOGGLE, TokenViewsMixin, add_task_url
from portals.bitrix.errors import OAuthError, explain
from portals.connect import eventbind
from portals.models import REFRESHABLE_STATUSES, Token, TokenStatus
from portals.tokens import TokenError, refresh, state

STATUS_COLOURS: dict[str, str] = {
    TokenStatus.AWAITING_CODE: "#6c757d",
    TokenStatus.ACTIVE: "#198754",
    TokenStatus.REFRESH_FAILING: "#fd7e14",
    TokenStatus.NEEDS_REAUTH: "#dc3545",
    TokenStatus.UNINSTALLED: "#dc3545",
    TokenStatus.PAYMENT_REQUIRED: "#dc3545",
    TokenStatus.DISABLED: "#adb5bd",
    TokenStatus.CONFIG_ERROR: "#dc3545",
}
# A person must re-connect these: their page says so at the top, with the button.
NEEDS_RECONNECT = (TokenStatus.NEEDS_REAUTH, TokenStatus.UNINSTALLED, TokenStatus.AWAITING_CODE)
ATTEMPT_COLUMNS = (
    gettext_lazy("started"),
    gettext_lazy("kind"),
    gettext_lazy("outcome"),
    gettext_lazy("error"),
    gettext_lazy("description"),
    "HTTP",
    gettext_lazy("duration"),
)
BADGE = (
    '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px" title="{}">{}</span>'
)


@admin.register(Token)
class TokenAdmin(TokenViewsMixin, admin.ModelAdmin):
    list_display = [
        "reference",
        "portal",
        "owner",
        "status_badge",
        "expires_in_display",
        "last_refreshed_at",
        "next_refresh_at",
        "failure_count",
        "open_incident",
    ]
    list_filter = ["status", "app", "owner"]
    list_select_related = ["portal", "app", "owner"]
    autocomplete_fields = ["owner"]
    search_fields = ["reference", "portal__domain", "portal__member_id"]
    actions = ["refresh_now", "disable", "enable"]
    # Staff own the reference, owner and notes; everything else is written only by the token
    # service (a form that saved `version` or a claim could undo a refresh in flight).
    readonly_fields = [
        "portal",
        "app",
        "status_badge",
        "masked_access_token",
        "masked_refresh_token",
        "expires_at",
        "scope_display",
        "client_endpoint",
        "server_endpoint",
        "user_id",
        "version",
        "last_refreshed_at",
        "next_refresh_at",
        "failure_count",
        "failing_since",
        "last_error_code",
        "last_error_shown",
        "events_bound_at",
        "events_bind_error",
        "attempt_history",
    ]
    fieldsets = [
        (None, {"fields": ["reference", "portal", "app", "owner", "status_badge", "notes"]}),
        (
            gettext_lazy("Token"),
            {
                "fields": [
                    "masked_access_token",
                    "masked_refresh_token",
                    "expires_at",
                    "scope_display",
                    "user_id",
                    "client_endpoint",
                    "server_endpoint",
                    "version",
                    "events_bound_at",
                    "events_bind_error",
                ]
            },
        ),
        (
            gettext_lazy("Refreshing"),
            {
                "fields": [
                    "last_refreshed_at",
                    "next_refresh_at",
                    "failure_count",
                    "failing_since",
                    "last_error_code",
                    "last_error_shown",
                ]
            },
        ),
        (gettext_lazy("Refresh history (latest 50)"), {"fields": ["attempt_history"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Incidents belong to notifications, which depends on portals, not the other way:
        # look the model up by name instead of importing it.
        incident = apps.get_model("notifications", "Incident")
        open_incidents = incident.objects.filter(token=OuterRef("pk"), resolved_at=None)
        # Encrypted columns stay unread in the list: decrypting 100 rows costs real time.
        return (
            super()
            .get_queryset(request)
            .annotate(has_open_incident=Exists(open_incidents))
            .defer("access_token", "refresh_token", "application_token", "app__client_secret")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are created by connecting a portal: see "Add task"

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REFRESH)

    def has_toggle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(TOGGLE)

    def get_form(
        self, request: HttpRequest, obj: Token | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None and "reference" in form.base_fields:
            # Each token says how code gets *it*, not a generic placeholder.
            form.base_fields["reference"].help_text = _(
                "The name other code uses to get this token: %(call)s"
            ) % {"call": f'get_access_token("{obj.reference}")'}
        return form

    def save_model(
        self, request: HttpRequest, obj: Token, form: forms.ModelForm, change: bool
    ) -> None:
        fields = {name: form.cleaned_data[name] for name in ("reference", "owner", "notes")}
        state.update_staff_fields(obj.pk, **fields)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra = {"can_connect": request.user.has_perm(CONNECT), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        token = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if token is not None:
            user = request.user
            extra.update(
                token=token,
                can_connect=user.has_perm(CONNECT),
                can_refresh=user.has_perm(REFRESH),
                can_toggle=user.has_perm(TOGGLE),
                is_disabled=token.status == TokenStatus.DISABLED,
                needs_reconnect=token.status in NEEDS_RECONNECT,
                add_task_url=add_task_url(token),
                missing_scopes=token.missing_scopes(),
                events_notice=eventbind.notice(token),
            )
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, obj: Token) -> str:
        colour = STATUS_COLOURS.get(obj.status, "#6c757d")
        text = str(obj.get_status_display())
        if obj.status == TokenStatus.REFRESH_FAILING:
            text += f" ({obj.failure_count}×)"
        return format_html(BADGE, colour, last_error_text(obj), text)

    @admin.display(description=gettext_lazy("last error"))
    def last_error_shown(self, obj: Token) -> str:
        if not obj.last_error:
            return EMPTY
        return explained_html(explain(obj.last_error_code, obj.last_error))

    @admin.display(description=gettext_lazy("expires in"), ordering="expires_at")
    def expires_in_display(self, obj: Token) -> str:
        if obj.status not in REFRESHABLE_STATUSES:
            return EMPTY  # a dead or disabled token is not handed out, whatever its expiry
        left = obj.expires_in()
        if left is None:
            return EMPTY
        if left.total_seconds() <= 0:
            return format_html('<span style="color:#dc3545">{}</span>', _("expired"))
        return duration(left)

    @admin.display(description=gettext_lazy("incident"))
    def open_incident(self, obj: Token) -> str:
        # Words, not Django's ✔/✖ icons: a red ✖ under "incident" read as "something is wrong"
        # beside a healthy token.
        if getattr(obj, "has_open_incident", False):
            return format_html('<span class="incident-open">{}</span>', _("open"))
        return EMPTY

    @admin.display(description=gettext_lazy("access token"))
    def masked_access_token(self, obj: Token) -> str:
        return crypto.mask(obj.access_token)

    @admin.display(description=gettext_lazy("refresh token"))
    def masked_refresh_token(self, obj: Token) -> str:
        return crypto.mask(obj.refresh_token)

    @admin.display(description=gettext_lazy("granted scope"))
    def scope_display(self, obj: Token) -> str:
        missing = obj.missing_scopes()
        if not missing:
            return obj.scope or EMPTY
        return format_html(
            '{} <span class="scope-warning">⚠ {}</span>',
            obj.scope,
            _("missing: %(missing)s") % {"missing": ", ".join(missing)},
        )

    @admin.display(description=gettext_lazy("attempts"))
    def attempt_history(self, obj: Token) -> str:
        attempts = obj.attempts.order_by("-started_at")[:50]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    when(a.started_at),
                    a.get_kind_display(),
                    a.get_outcome_display(),
                    a.error_code or EMPTY,
                    a.error_description or EMPTY,
                    a.http_status or EMPTY,
                    _("%(n)d ms") % {"n": a.duration_ms},
                )
                for a in attempts
            ),
        )
        if not rows:
            return _("No attempts yet.")
        header = format_html_join("", "<th>{}</th>", ((str(c),) for c in ATTEMPT_COLUMNS))
        return format_html("<table><tr>{}</tr>{}</table>", header, rows)

    @admin.action(description=gettext_lazy("Refresh now"), permissions=["refresh"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for reference in queryset.values_list("reference", flat=True):
            try:
                refresh(reference)
            except (OAuthError, TokenError) as err:
                text = _("“%(reference)s” was not refreshed: %(error)s")
                self.message_user(
                    request,
                    text % {"reference": reference, "error": refresh_error_text(err, reference)},
                    messages.ERROR,
                )
            else:
                text = _("Refreshed “%(reference)s”.") % {"reference": reference}
                self.message_user(request, text, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Disable (stop refreshing)"), permissions=["toggle"])
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = state.disable(list(queryset.values_list("pk", flat=True)))
        text = ngettext("%(count)d token disabled.", "%(count)d tokens disabled.", count)
        self.message_user(request, text % {"count": count}, messages.SUCCESS)

    @admin.action(
        description=gettext_lazy("Enable (refresh on schedule again)"), permissions=["toggle"]
    )
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = state.enable(list(queryset.values_list("pk", flat=True)))
        text = ngettext(
            "%(count)d token enabled; it refreshes within a minute.",
            "%(count)d tokens enabled; they refresh within a minute.",
            count,
        )
        self.message_user(request, text % {"count": count}, messages.SUCCESS)
