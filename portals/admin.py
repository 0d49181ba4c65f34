"""Admin for portals, app credentials and tokens: the staff's home."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from encryption import crypto
from portals import service
from portals.connect import ConnectError, ConnectInput, authorize_url, connect_portal
from portals.errors import OAuthError, TokenError
from portals.forms import ConnectPortalForm
from portals.models import AppCredentials, Portal, RefreshAttempt, Token, TokenStatus
from portals.tokens import refresh

STATUS_COLOURS = {
    TokenStatus.AWAITING_CODE: "#6c757d",
    TokenStatus.ACTIVE: "#198754",
    TokenStatus.REFRESH_FAILING: "#fd7e14",
    TokenStatus.NEEDS_REAUTH: "#dc3545",
    TokenStatus.UNINSTALLED: "#dc3545",
    TokenStatus.PAYMENT_REQUIRED: "#dc3545",
    TokenStatus.DISABLED: "#adb5bd",
    TokenStatus.CONFIG_ERROR: "#dc3545",
}
# Custom permissions (Token.Meta.permissions), checked by the actions and views below.
CONNECT, REFRESH, TOGGLE = "portals.connect_portal", "portals.refresh_token", "portals.toggle_token"


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = ["domain", "member_id", "auth_server", "created_at"]
    search_fields = ["domain", "member_id"]
    readonly_fields = ["created_at", "updated_at"]


class AppCredentialsForm(forms.ModelForm):
    # Write-only: the stored secret is never sent to the browser.
    new_client_secret = forms.CharField(
        label="Client secret",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored secret. Stored encrypted.",
    )

    class Meta:
        model = AppCredentials
        fields = [
            "name",
            "client_id",
            "scope",
            "refresh_policy",
            "refresh_interval_minutes",
            "refresh_before_expiry_minutes",
            "keepalive_days",
        ]

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("new_client_secret"):
            self.add_error("new_client_secret", "Enter the client secret from the app's card.")
        return cleaned

    @sensitive_variables()
    def save(self, commit: bool = True) -> AppCredentials:
        if secret := self.cleaned_data.get("new_client_secret"):
            self.instance.client_secret = secret
        return super().save(commit)


@admin.register(AppCredentials)
class AppCredentialsAdmin(admin.ModelAdmin):
    form = AppCredentialsForm
    list_display = ["name", "client_id", "masked_secret", "scope", "refresh_policy"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["masked_secret", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "client_id", "masked_secret", "new_client_secret", "scope"]}),
        (
            "When tokens are refreshed",
            {
                "fields": [
                    "refresh_policy",
                    "refresh_interval_minutes",
                    "refresh_before_expiry_minutes",
                    "keepalive_days",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="client secret")
    def masked_secret(self, obj: AppCredentials) -> str:
        return crypto.mask(obj.client_secret)

    @method_decorator(sensitive_post_parameters("new_client_secret"))
    @method_decorator(sensitive_variables())
    def changeform_view(self, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(*args, **kwargs)


ATTEMPT_ROW = (
    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td></tr>"
)


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
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
    list_filter = ["status", "portal", "app", "owner"]
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
        "scope",
        "client_endpoint",
        "server_endpoint",
        "user_id",
        "version",
        "last_refreshed_at",
        "next_refresh_at",
        "failure_count",
        "failing_since",
        "last_error_code",
        "last_error",
        "attempt_history",
    ]
    fieldsets = [
        (None, {"fields": ["reference", "portal", "app", "owner", "status_badge", "notes"]}),
        (
            "Token",
            {
                "fields": [
                    "masked_access_token",
                    "masked_refresh_token",
                    "expires_at",
                    "scope",
                    "user_id",
                    "client_endpoint",
                    "server_endpoint",
                    "version",
                ]
            },
        ),
        (
            "Refreshing",
            {
                "fields": [
                    "last_refreshed_at",
                    "next_refresh_at",
                    "failure_count",
                    "failing_since",
                    "last_error_code",
                    "last_error",
                ]
            },
        ),
        ("Refresh history (latest 50)", {"fields": ["attempt_history"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Incidents belong to notifications, which depends on portals, not the other way:
        # reach them through the reverse relation instead of importing the model.
        incident = Token._meta.get_field("incidents").related_model
        open_incidents = incident.objects.filter(token=OuterRef("pk"), resolved_at=None)
        # Encrypted columns stay unread in the list: decrypting 100 rows costs real time.
        return (
            super()
            .get_queryset(request)
            .annotate(has_open_incident=Exists(open_incidents))
            .defer("access_token", "refresh_token", "app__client_secret")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are created by connecting a portal: see "Add task"

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REFRESH)

    def has_toggle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(TOGGLE)

    def save_model(
        self, request: HttpRequest, obj: Token, form: forms.ModelForm, change: bool
    ) -> None:
        fields = {name: form.cleaned_data[name] for name in ("reference", "owner", "notes")}
        service.update_staff_fields(obj.pk, **fields)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra = {"can_connect": request.user.has_perm(CONNECT), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def get_urls(self) -> list:
        connect = path(
            "connect/",
            self.admin_site.admin_view(self.connect_view),
            name="portals_token_connect",
        )
        return [connect, *super().get_urls()]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Token) -> str:
        colour = STATUS_COLOURS.get(obj.status, "#6c757d")
        text = obj.get_status_display()
        if obj.status == TokenStatus.REFRESH_FAILING:
            text += f" ({obj.failure_count}×)"
        return format_html(
            '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px" '
            'title="{}">{}</span>',
            colour,
            obj.last_error,
            text,
        )

    @admin.display(description="expires in", ordering="expires_at")
    def expires_in_display(self, obj: Token) -> str:
        left = obj.expires_in()
        if left is None:
            return "—"
        seconds = int(left.total_seconds())
        if seconds <= 0:
            return format_html('<span style="color:#dc3545">expired</span>')
        return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"

    @admin.display(description="open incident", boolean=True)
    def open_incident(self, obj: Token) -> bool:
        return getattr(obj, "has_open_incident", False)

    @admin.display(description="access token")
    def masked_access_token(self, obj: Token) -> str:
        return crypto.mask(obj.access_token)

    @admin.display(description="refresh token")
    def masked_refresh_token(self, obj: Token) -> str:
        return crypto.mask(obj.refresh_token)

    @admin.display(description="attempts")
    def attempt_history(self, obj: Token) -> str:
        attempts = obj.attempts.order_by("-started_at")[:50]
        rows = [
            format_html(
                ATTEMPT_ROW,
                timezone.localtime(a.started_at).strftime("%Y-%m-%d %H:%M:%S"),
                a.get_kind_display(),
                a.get_outcome_display(),
                a.error_code,
                a.error_description,
                a.http_status or "",
                a.duration_ms,
            )
            for a in attempts
        ]
        if not rows:
            return "No attempts yet."
        header = format_html(
            ATTEMPT_ROW.replace("td>", "th>").replace(" ms", ""),
            "started",
            "kind",
            "outcome",
            "error",
            "description",
            "HTTP",
            "duration",
        )
        return format_html("<table>{}{}</table>", header, mark_safe("".join(rows)))  # noqa: S308

    @admin.action(description="Refresh now", permissions=["refresh"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for reference in queryset.values_list("reference", flat=True):
            try:
                refresh(reference)
            except (OAuthError, TokenError) as err:
                self.message_user(
                    request, f"“{reference}” was not refreshed: {err}", messages.ERROR
                )
            else:
                self.message_user(request, f"Refreshed “{reference}”.", messages.SUCCESS)

    @admin.action(description="Disable (stop refreshing)", permissions=["toggle"])
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = service.disable(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} token(s) disabled.", messages.SUCCESS)

    @admin.action(description="Enable (refresh on schedule again)", permissions=["toggle"])
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = service.enable(list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request, f"{count} token(s) enabled; they refresh within a minute.", messages.SUCCESS
        )

    @method_decorator(sensitive_post_parameters("client_secret", "code"))
    @method_decorator(sensitive_variables())
    def connect_view(self, request: HttpRequest) -> HttpResponse:
        """The "Add task" form: exchanges the code within this same request."""
        if not request.user.has_perm(CONNECT):
            raise PermissionDenied("Connecting portals needs the “connect portals” permission.")
        preview = "_preview" in request.POST
        if preview:  # only show the authorize URL; keep what was typed, except secrets
            kept = ("portal", "client_id", "scope", "reference", "app_name")
            form = ConnectPortalForm(initial={name: request.POST.get(name) for name in kept})
        else:
            form = ConnectPortalForm(request.POST or None)
        if request.method == "POST" and not preview and form.is_valid():
            try:
                token = connect_portal(ConnectInput(**form.cleaned_data, owner_id=request.user.pk))
            except ValidationError as err:
                _add_errors(form, err)
            except ConnectError as err:
                form.add_error(err.field, str(err))
            else:
                self.message_user(
                    request,
                    f"Connected {token.portal.domain} as “{token.reference}”.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:portals_token_change", args=[token.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Add task: connect a portal",
            "form": form,
            "opts": self.model._meta,
            "authorize_url": _authorize_url_for(request.POST),
            "default_zone": settings.BITRIX_DEFAULT_ZONE,
        }
        return TemplateResponse(request, "admin/portals/token/connect.html", context)


def _add_errors(form: forms.Form, err: ValidationError) -> None:
    for field, messages_ in getattr(err, "message_dict", {None: err.messages}).items():
        form.add_error(field if field in form.fields else None, messages_)


def _authorize_url_for(data: QueryDict) -> str:
    portal, client_id = data.get("portal"), data.get("client_id")
    if not (portal and client_id):
        return ""
    try:
        return authorize_url(portal, client_id)
    except (ValidationError, OAuthError):
        return ""


@admin.register(RefreshAttempt)
class RefreshAttemptAdmin(admin.ModelAdmin):
    """The audit log, read-only: every exchange and refresh, never a secret."""

    list_display = ["started_at", "token", "kind", "outcome", "error_code", "http_status"]
    list_filter = ["outcome", "kind"]
    list_select_related = ["token"]
    search_fields = ["token__reference", "error_code"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
