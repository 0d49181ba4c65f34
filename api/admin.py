"""Admin for API keys: who may read which tokens over the token API."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from api import keys
from api.models import ApiKey

MANAGE = "api.manage_apikey"
HISTORY = ["created_at", "created_by", "last_used_at", "last_used_from", "revoked_at"]


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "all_tokens", "tokens", "rate_per_minute", "expires_at"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("all_tokens") and not cleaned.get("tokens"):
            self.add_error("tokens", "Choose the tokens this key may read, or tick “every token”.")
        if cleaned.get("all_tokens") and cleaned.get("tokens"):
            self.add_error("tokens", "A key for every token needs no tokens chosen: clear them.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "shown_prefix", "reads", "state", "last_used_at", "last_used_from"]
    list_filter = ["all_tokens", "revoked_at"]
    search_fields = ["name", "prefix", "tokens__reference"]
    filter_horizontal = ["tokens"]
    readonly_fields = ["shown_prefix", "state", *HISTORY]
    fieldsets = [
        (None, {"fields": ["name", "shown_prefix", "state"]}),
        ("What it reads", {"fields": ["all_tokens", "tokens"]}),
        ("Limits", {"fields": ["rate_per_minute", "expires_at"]}),
        ("History", {"fields": HISTORY}),
    ]
    actions = ["revoke"]

    @admin.display(description="key")
    def shown_prefix(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…" if obj.prefix else "(made when saved)"

    @admin.display(description="reads")
    def reads(self, obj: ApiKey) -> str:
        if obj.all_tokens:
            return "every token"
        return ", ".join(t.reference for t in obj.tokens.all()) or "nothing"

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            word, colour = "revoked", "#dc3545"
        elif obj.expires_at and obj.expires_at <= timezone.now():
            word, colour = "expired", "#dc3545"
        else:
            word, colour = "active", "#198754"
        return format_html('<span style="color:{}">{}</span>', colour, word)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("tokens")

    # Creating, changing, revoking and deleting keys all need api.manage_apikey.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return request.user.has_perm(MANAGE)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return request.user.has_perm(MANAGE)

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.Form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            # Kept on the request only, for response_add to show once; never stored or logged.
            request._new_api_key = keys.assign_new_key(obj)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """Show the new key once, on this page, instead of redirecting (a redirect would
        have to carry it in the session or a message cookie)."""
        response = TemplateResponse(
            request,
            "admin/api/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": obj,
                "title": "API key created",
                "key": request._new_api_key,
                "example_url": f"{settings.SITE_URL}/api/tokens/{self._example_reference(obj)}/",
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def _example_reference(obj: ApiKey) -> str:
        first = obj.tokens.order_by("reference").first()
        return first.reference if first else "token"

    @admin.action(description="Revoke selected keys", permissions=["manage"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = keys.revoke(queryset.values_list("pk", flat=True))
        for api_key in revoked:
            self.log_change(request, api_key, "Revoked.")
        self.message_user(request, f"{len(revoked)} key(s) revoked.", messages.SUCCESS)
