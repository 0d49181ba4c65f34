"""An incident counts as heard only when an alert of it was sent, or one waits on an enabled
channel for less than NOTIFY_HEARD_WITHIN (issue 16 item 5, issue 18 item 1): a provider down
for good, or a channel that covers an incident but holds no delivery of it, is not hearing."""

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from notifications.delivery import dispatch
from notifications.delivery.sending import process_delivery
from notifications.incidents import lifecycle
from notifications.models import Delivery, Incident
from ops.observe import exposition
from tests.fakes import provider_telegram as tg
from tests.notifications_helpers import fake_for, make_channel, make_tokens

pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)  # /health/ checks in threads
BEARER = "heard-bearer-7c1e"


@pytest.fixture(autouse=True)
def quiet_broker(broker_url, notify, settings):
    """Dispatch publishes real task messages; they land in the emptied test Redis."""
    settings.METRICS_TOKEN = BEARER
    settings.NOTIFY_HEARD_WITHIN = 300


def alerts_check(client) -> dict:
    response = client.get("/health/", headers={"Authorization": f"Bearer {BEARER}"})
    return json.loads(response.content)["checks"]["alerts"]


def unheard_gauge() -> float:
    for line in exposition.render().decode().splitlines():
        if line.startswith("b24keeper_incidents_unheard "):
            return float(line.split()[1])
    raise AssertionError("no b24keeper_incidents_unheard in /metrics")


def open_incident(token, capture) -> Incident:
    with capture(execute=True):
        incident = lifecycle.open_incident(
            token, code="invalid_grant", message="Bitrix24 answered invalid_grant.", permanent=True
        )
    assert incident is not None
    return incident


def waited(incident: Incident, seconds: float) -> None:
    """Its alerts were created `seconds` earlier (time passing for the pending delivery)."""
    Delivery.objects.filter(incident=incident).update(
        created_at=F("created_at") - timedelta(seconds=seconds)
    )


def test_a_provider_down_for_good_leaves_the_incident_unheard_and_says_so(
    fakes, mailbox, client, django_capture_on_commit_callbacks
):
    channel = make_channel("telegram", covers_all_tokens=True)
    [token] = make_tokens(1)
    incident = open_incident(token, django_capture_on_commit_callbacks)
    delivery = incident.deliveries.get(channel=channel)
    fake_for(fakes, "telegram").fail_next("server_error", status=502)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=F("created_at"))
    process_delivery(delivery.pk)
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.QUEUED  # retried
    assert alerts_check(client)["status"] == "ok"  # it may still get through in time
    assert unheard_gauge() == 0

    waited(incident, 301)

    check = alerts_check(client)
    assert check["status"] == "failing" and "1 open incident(s) unheard" in check["detail"]
    assert unheard_gauge() == 1
    dispatch.sweep()
    dispatch.sweep()
    [mail] = mailbox.messages  # once per incident
    assert "reach nobody" in mail.subject and incident.token.reference in mail.body


def test_a_sent_alert_makes_it_heard_and_a_disabled_channel_does_not(
    fakes, mailbox, client, django_capture_on_commit_callbacks
):
    channel = make_channel("telegram", covers_all_tokens=True)
    first, second = make_tokens(2)
    heard = open_incident(first, django_capture_on_commit_callbacks)
    sent = heard.deliveries.get()
    Delivery.objects.filter(pk=sent.pk).update(next_attempt_at=F("created_at"))
    assert process_delivery(sent.pk).word == "sent"
    dispatch.disable_channels([channel.pk])
    waiting = open_incident(second, django_capture_on_commit_callbacks)
    waited(heard, 3600)

    assert unheard_gauge() == 1  # the second: its alert waits on a disabled channel
    assert "1 open incident(s) unheard" in alerts_check(client)["detail"]
    assert waiting.deliveries.count() == 1


def test_a_new_channel_picks_up_the_open_incident(
    fakes, client, django_capture_on_commit_callbacks, admin_client
):
    [token] = make_tokens(1)
    incident = open_incident(token, django_capture_on_commit_callbacks)
    assert incident.deliveries.count() == 0 and unheard_gauge() == 1

    # Staff add a Telegram channel for every token, as the red banner asks.
    form = {
        "name": "On-call chat",
        "kind": "telegram",
        "destination": str(tg.CHAT_ID),
        "enabled": "on",
        "covers_all_tokens": "on",
        "max_per_hour": 20,
        "remind_every_minutes": 0,
        "language": "en",
        "telegram__bot_token": tg.BOT_TOKEN,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:notifications_channel_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors

    delivery = incident.deliveries.get()
    assert (delivery.channel.name, delivery.event) == ("On-call chat", Delivery.Event.OPENED)
    assert alerts_check(client)["status"] == "ok" and unheard_gauge() == 0
    waited(incident, 301)
    assert unheard_gauge() == 1  # covered, and still nobody heard: it never went out


def test_the_sweep_makes_the_deliveries_an_incident_never_got(
    fakes, django_capture_on_commit_callbacks
):
    """A worker killed between storing the incident and creating its deliveries (issue 16
    item 6): the notifications sweep creates them."""
    channel = make_channel("telegram", covers_all_tokens=True)
    [token] = make_tokens(1)
    incident = Incident.objects.create(
        token=token, error_code="invalid_grant", message="m", permanent=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.sweep()
    assert list(incident.deliveries.values_list("channel", "event")) == [
        (channel.pk, Delivery.Event.OPENED)
    ]


def test_an_incident_and_its_deliveries_are_stored_together(fakes):
    channel = make_channel("telegram", covers_all_tokens=True)
    first, second = make_tokens(2)
    with transaction.atomic():
        incident = lifecycle.open_incident(first, code="invalid_grant", message="m", permanent=True)
        assert incident is not None
        # Before the commit: in the same transaction, not in a receiver run after it.
        assert list(incident.deliveries.values_list("channel", flat=True)) == [channel.pk]

    with pytest.raises(RuntimeError), transaction.atomic():  # the database went away
        lifecycle.open_incident(second, code="invalid_grant", message="m", permanent=True)
        raise RuntimeError
    assert not Incident.objects.filter(token=second).exists()
    assert Delivery.objects.count() == 1
