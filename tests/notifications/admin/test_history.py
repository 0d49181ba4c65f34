"""The deliveries list: dates wrap only between date and time, and a sent delivery has no
next attempt; the incidents list says in words whether a person must act."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications.models import Delivery, Incident
from tests.notifications_helpers import make_channel

pytestmark = pytest.mark.django_db


def test_a_sent_delivery_has_no_next_attempt_and_dates_keep_whole(admin_client, token):
    incident = Incident.objects.create(token=token, message="m", error_code="x", permanent=True)
    channel = make_channel("telegram")
    sent = Delivery.objects.create(
        incident=incident, channel=channel, status=Delivery.Status.SENT, sent_at=timezone.now()
    )
    html = admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()
    row = re.search(rf"<tr>.*?/delivery/{sent.pk}/change/.*?</tr>", html, re.S).group(0)
    next_attempt = re.search(r'<td class="field-next_attempt_shown">(.*?)</td>', row).group(1)
    assert next_attempt == "—"
    assert re.search(r'<span class="when"><span>\d{4}-\d\d-\d\d</span> <span>\d\d:\d\d</span>', row)
    incidents = admin_client.get(reverse("admin:notifications_incident_changelist"))
    assert '<td class="field-needs">a person</td>' in incidents.content.decode()
    assert "icon-yes.svg" not in incidents.content.decode()


def test_a_stored_refusal_is_said_in_russian(admin_client, token):
    incident = Incident.objects.create(token=token, message="m", error_code="x", permanent=True)
    stored = (
        "Telegram says: bot was blocked by the user (403). Ask the recipient to unblock the bot, "
        "then re-enable this channel."
    )
    Delivery.objects.create(
        incident=incident, channel=make_channel("telegram", last_error=stored),
        status=Delivery.Status.FAILED, error=stored,
    )  # fmt: skip
    admin_client.cookies["django_language"] = "ru"
    for url in ("/", reverse("admin:notifications_channel_changelist")):
        html = admin_client.get(url).content.decode()
        assert "Ответ Telegram: «bot was blocked by the user» (403)." in html, url
        assert "Ask the recipient" not in html, url
    deliveries = admin_client.get(reverse("admin:notifications_delivery_changelist"))
    assert "Ответ Telegram: «bot was blocked" in deliveries.content.decode()
