"""Buttons on a channel's own page: Send test message, Disable / Enable. Each checks the same
permission as the list's action, does the same thing, and says what happened."""

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.denied import require
from notifications.delivery import dispatch, sending
from notifications.models import Channel

SEND_TEST, TOGGLE = "notifications.send_test_message", "notifications.toggle_channel"


class ChannelViewsMixin(admin.ModelAdmin):
    """Mixed into ChannelAdmin: its buttons' URLs, views and template context."""

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        own = [
            path(
                "<int:pk>/send-test/", view(self.send_test_view), name="notifications_channel_test"
            ),
            path("<int:pk>/toggle/", view(self.toggle_view), name="notifications_channel_toggle"),
        ]
        return [*own, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra = {
            "can_send_test": request.user.has_perm(SEND_TEST),
            "can_toggle": request.user.has_perm(TOGGLE),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    @method_decorator(require_POST)
    def send_test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        require(request, SEND_TEST)
        channel = get_object_or_404(Channel.objects.defer("credentials"), pk=pk)
        ok, answer = sending.send_test(channel)
        level = messages.SUCCESS if ok else messages.ERROR
        messages.add_message(request, level, f"“{channel.name}”: {answer}")
        return _channel_page(channel)

    @method_decorator(require_POST)
    def toggle_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        require(request, TOGGLE)
        channel = get_object_or_404(Channel.objects.defer("credentials"), pk=pk)
        if channel.enabled:
            Channel.objects.filter(pk=pk).update(enabled=False)
            text = _("Disabled “%(name)s”: alerts for it wait until it is enabled again.")
        else:
            dispatch.enable_channels([pk])
            text = _("Enabled “%(name)s”: its error is cleared and alerts that waited go out.")
        messages.success(request, text % {"name": channel.name})
        return _channel_page(channel)


def _channel_page(channel: Channel) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:notifications_channel_change", args=[channel.pk]))
