"""Admin for portals, app credentials and the refresh audit log (tokens: portals.admin)."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from encryption import crypto
from portals.models import AppCredentials, Portal, RefreshAttempt

# The handler addresses Bitrix24 calls, and where each goes in the app's settings there.
HANDLERS = (
    (
        "bitrix_callback",
        gettext_lazy(
            "Redirect URI: paste it as the application's handler (redirect) address; the "
            "Connect button comes back here."
        ),
    ),
    (
        "bitrix_install",
        gettext_lazy(
            "Initial installation path: paste it as the app's install address, so an install "
            "connects the portal by itself."
        ),
    ),
    (
        "bitrix_events",
        gettext_lazy(
            "Event handler: bind ONAPPINSTALL, ONAPPUPDATE and ONAPPUNINSTALL to it, so updates "
            "and uninstalls reach b24keeper."
        ),
    ),
)


def handler_urls(client_id: str) -> list[tuple[str, str]]:
    """The three full addresses for an app, built from SITE_URL, with where each goes."""
    return [
        (settings.SITE_URL + reverse(name, args=[client_id]), str(where))
        for name, where in HANDLERS
    ]


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = ["domain", "member_id", "auth_server", "created_at"]
    search_fields = ["domain", "member_id"]
    readonly_fields = ["created_at", "updated_at"]


class AppCredentialsForm(forms.ModelForm):
    # Write-only: the stored secret is never sent to the browser.
    new_client_secret = forms.CharField(
        label=gettext_lazy("client_secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=gettext_lazy("Leave empty to keep the stored secret. Stored encrypted."),
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance.pk and "new_client_secret" in self.fields:  # nothing to keep yet
            field = self.fields["new_client_secret"]
            field.required = True
            field.help_text = _("From the application's card in Bitrix24. Stored encrypted.")
            field.error_messages["required"] = _("Enter the client secret from the app's card.")

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
    readonly_fields = ["masked_secret", "handlers", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "client_id", "masked_secret", "new_client_secret", "scope"]}),
        (gettext_lazy("Addresses to enter in Bitrix24"), {"fields": ["handlers"]}),
        (
            gettext_lazy("When tokens are refreshed"),
            {
                "fields": [
                    "refresh_policy",
                    "refresh_interval_minutes",
                    "refresh_before_expiry_minutes",
                    "keepalive_days",
                ]
            },
        ),
        (gettext_lazy("History"), {"fields": ["created_at", "updated_at"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: AppCredentials | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # A viewer cannot type a new secret: the write-only input would read "None".
            first = [name for name in fieldsets[0][1]["fields"] if name != "new_client_secret"]
            return [(None, {"fields": first}), *fieldsets[1:]]
        if obj is not None:
            return fieldsets
        # A new app has no stored secret to show: one required client_secret field.
        first = [name for name in fieldsets[0][1]["fields"] if name != "masked_secret"]
        return [(None, {"fields": first}), *fieldsets[1:]]

    @admin.display(description=gettext_lazy("client_secret"))
    def masked_secret(self, obj: AppCredentials) -> str:
        return crypto.mask(obj.client_secret)

    @admin.display(description=gettext_lazy("handler addresses"))
    def handlers(self, obj: AppCredentials) -> str:
        if not obj.pk:
            return _("Shown once the app credentials are saved.")
        rows = format_html_join(
            "",
            '<div class="handler-url"><code>{}</code> <button type="button" class="button '
            'copy-url" data-url="{}">{}</button><div class="help">{}</div></div>',
            ((url, url, _("Copy"), where) for url, where in handler_urls(obj.client_id)),
        )
        return format_html("{}", rows)

    @method_decorator(sensitive_post_parameters("new_client_secret"))
    @method_decorator(sensitive_variables())
    def changeform_view(self, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(*args, **kwargs)


@admin.register(RefreshAttempt)
class RefreshAttemptAdmin(admin.ModelAdmin):
    """The audit log, read-only: every exchange and refresh, never a secret."""

    list_display = ["started_at", "token", "kind", "outcome", "error_code", "http_status"]
    list_filter = ["outcome", "kind"]
    list_select_related = ["token"]
    search_fields = ["token__reference", "error_code"]
    date_hierarchy = "started_at"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("token__access_token", "token__refresh_token")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
