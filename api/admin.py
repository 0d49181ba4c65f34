"""Admin for API keys: who may read which tokens over the token API."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from api import keys
from api.models import ApiKey, split_words
from core.denied import require
from encryption import crypto
from portals.models import Token

MANAGE = "api.manage_apikey"
# The session slot a new key waits in (encrypted) for the one page that shows it.
NEW_KEY_SLOT = "b24keeper_new_api_key"
HISTORY = ("created_at", "created_by", "last_used_at", "last_used_from", "revoked_at")


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = [
            "name",
            "scopes",
            "all_tokens",
            "tokens",
            "methods",
            "rate_per_minute",
            "expires_at",
        ]

    def clean_scopes(self) -> str:
        return ",".join(split_words(self.cleaned_data["scopes"]))

    def clean_methods(self) -> str:
        return "\n".join(split_words(self.cleaned_data["methods"]))

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # the stubs allow None; ModelForm.clean returns this
        if not cleaned.get("all_tokens") and not cleaned.get("tokens"):
            self.add_error(
                "tokens", _("Choose the tokens this key may read, or tick “every token”.")
            )
        if cleaned.get("all_tokens") and cleaned.get("tokens"):
            self.add_error("tokens", _("A key for every token needs no tokens chosen: clear them."))
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "shown_prefix",
        "scopes",
        "reads",
        "state",
        "last_used_at",
        "last_used_from",
    ]
    list_filter = ["all_tokens", "revoked_at"]
    search_fields = ["name", "prefix", "tokens__reference"]
    filter_horizontal = ["tokens"]
    readonly_fields = ["shown_prefix", "state", *HISTORY]
    fieldsets = [
        (None, {"fields": ["name", "shown_prefix", "state"]}),
        (gettext_lazy("What it reads"), {"fields": ["scopes", "all_tokens", "tokens"]}),
        (gettext_lazy("REST proxy"), {"fields": ["methods"]}),
        (gettext_lazy("Limits"), {"fields": ["rate_per_minute", "expires_at"]}),
        (gettext_lazy("History"), {"fields": HISTORY}),
    ]
    actions = ["revoke"]

    @admin.display(description=gettext_lazy("key"))
    def shown_prefix(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…" if obj.prefix else _("(made when saved)")

    @admin.display(description=gettext_lazy("reads"))
    def reads(self, obj: ApiKey) -> str:
        if obj.all_tokens:
            return _("every token")
        return ", ".join(t.reference for t in obj.tokens.all()) or _("nothing")

    @admin.display(description=gettext_lazy("state"))
    def state(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            word, colour = _("revoked"), "#dc3545"
        elif obj.expires_at and obj.expires_at <= timezone.now():
            word, colour = _("expired"), "#dc3545"
        else:
            word, colour = _("active"), "#198754"
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
            user = request.user  # the admin lets only signed-in staff this far
            obj.created_by = user if user.is_authenticated else None
            # Kept on this instance for response_add to hand to the page that shows it once
            # (the session, encrypted); never stored in the row or logged.
            obj.new_key = keys.assign_new_key(obj)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """Post/redirect/get: the new key waits in the session (encrypted) for the page the
        redirect leads to, which shows it once; reloading that page creates nothing."""
        if obj.new_key is None:  # save_model made none: nothing to show
            return super().response_add(request, obj, post_url_continue)
        request.session[NEW_KEY_SLOT] = {"pk": obj.pk, "ciphertext": crypto.encrypt(obj.new_key)}
        return HttpResponseRedirect(reverse("admin:api_apikey_created", args=[obj.pk]))

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.created_view)
        return [path("<int:pk>/created/", view, name="api_apikey_created"), *super().get_urls()]

    def created_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The new key, once: the slot is emptied as it is read."""
        require(request, MANAGE)
        obj = get_object_or_404(ApiKey, pk=pk)
        slot = request.session.get(NEW_KEY_SLOT) or {}
        key = ""
        if slot.get("pk") == obj.pk:
            del request.session[NEW_KEY_SLOT]
            key = crypto.decrypt(slot["ciphertext"])
        response = TemplateResponse(
            request,
            "admin/api/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": obj,
                "title": _("API key created") if key else _("API key"),
                "key": key,
                "example_url": f"{settings.SITE_URL}/api/tokens/{self._example_reference(obj)}/",
                "reads_tokens": "token" in split_words(obj.scopes),
                "webhooks": (
                    self._webhooks(obj, key) if key and "proxy" in split_words(obj.scopes) else []
                ),
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def _webhooks(obj: ApiKey, key: str) -> list[tuple[str, str]]:
        """(reference, webhook URL) of the key's tokens (a key for every token: the first
        20): what a library is given as its inbound webhook."""
        tokens = Token.objects.all() if obj.all_tokens else obj.tokens.all()
        return [
            (t.reference, f"{settings.SITE_URL}/rest/{t.pk}/{key}/")
            for t in tokens.order_by("reference")[:20]
        ]

    @staticmethod
    def _example_reference(obj: ApiKey) -> str:
        first = obj.tokens.order_by("reference").first()
        return first.reference if first else "token"

    @admin.action(description=gettext_lazy("Revoke selected keys"), permissions=["manage"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = keys.revoke(queryset.values_list("pk", flat=True))
        for api_key in revoked:
            self.log_change(request, api_key, _("Revoked."))
        count = len(revoked)
        text = ngettext("%(count)d key revoked.", "%(count)d keys revoked.", count)
        self.message_user(request, text % {"count": count}, messages.SUCCESS)
