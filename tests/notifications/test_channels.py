"""When a channel goes quiet: a disabled channel keeps its alerts and gets them when enabled,
a channel switched off by an error is named to every other channel once, and an open incident
that no enabled channel covers is shown in the admin and emailed to Django's ADMINS."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.delivery import dispatch
from notifications.delivery.sending import process_delivery
from notifications.incidents import lifecycle
from notifications.models import Channel, Delivery, Incident
from tests.notifications_helpers import make_channel, make_tokens
from tests.processes import wait_until

# Fixtures: fakes, notify, owner, workers, mailbox, notify_sweep.
pytest_plugins = ["tests.notifications_fixtures"]
Status, Event = Delivery.Status, Delivery.Event
SETTLED = (Status.SENT, Status.FAILED, Status.CANCELLED)


def open_incident(token) -> Incident:
    return lifecycle.open_incident(
        token, code="invalid_grant", message="Bitrix24 answered invalid_grant.", permanent=True
    )


def settled(count: int, **filters: object) -> None:
    done = Delivery.objects.filter(status__in=SETTLED, **filters)
    wait_until(lambda: done.count() == count, 30, f"{count} settled deliveries")


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_channel_switched_off_by_an_error_is_named_once_to_every_other_channel(fakes, workers):
    first, second = make_tokens(2)
    for kind in ("telegram", "twilio", "mandrill"):
        make_channel(kind)
    fakes.telegram.fail_next("bot_blocked")
    workers.worker(concurrency=2)
    open_incident(first)
    settled(3, incident__kind="token")
    settled(2, incident__kind="channel")
    telegram = Channel.objects.get(kind="telegram")
    assert not telegram.enabled and "bot was blocked by the user" in telegram.disabled_reason
    sms = fakes.twilio.sends[-1].body["Body"]
    assert sms.startswith("b24keeper: alert channel telegram on-call (Telegram) is off: Telegram")
    email = fakes.mandrill.sends[-1].body["message"]
    assert email["subject"] == "Alerts no longer reach “telegram on-call” (Telegram)"
    assert "Why: Telegram says: bot was blocked by the user (403)." in email["text"]
    open_incident(second)  # the channel is still off: no second notice, and its alert waits
    settled(5, incident__kind="token")
    assert Delivery.objects.filter(incident__kind="channel").count() == 2
    kept = Delivery.objects.get(channel=telegram, incident__token=second)
    assert kept.status == Status.QUEUED
    dispatch.enable_channels([telegram.pk])  # the person unblocked the bot
    settled(6, incident__kind="token", status=Status.SENT)
    texts = [r.body["text"] for r in fakes.telegram.sends[1:]]
    assert sorted("token-0" in t for t in texts) == [False, True]  # each alert once
    assert Incident.objects.get(kind="channel").resolved_at is not None


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_admins_are_emailed_once_when_no_enabled_channel_is_left(
    fakes, workers, mailbox, notify_sweep
):
    [token] = make_tokens(1)
    make_channel("telegram")
    fakes.telegram.fail_next("bot_blocked")
    workers.worker()
    workers.beat()
    open_incident(token)
    wait_until(lambda: mailbox.messages, 30, "an email to the admins")
    [mail] = mailbox.messages
    assert mail.recipients == ["ops@example.org"]
    assert mail.subject == (
        "[b24keeper] 2 open incident(s) reach nobody: no alert of them got through"
    )
    assert "Token cannot be refreshed: token-0 — invalid_grant" in mail.body
    assert "Notification channel switched off: telegram on-call — channel_disabled" in mail.body
    runs = workers.log("w1").count("sweep_notifications")
    wait_until(lambda: workers.log("w1").count("sweep_notifications") >= runs + 4, 30, "sweeps")
    assert len(mailbox.messages) == 1  # once per incident, not once per sweep


@pytest.mark.django_db
def test_an_incident_opened_while_a_channel_is_disabled_reaches_it_when_it_is_enabled(
    fakes, notify, broker_url, django_capture_on_commit_callbacks
):
    [token] = make_tokens(1)
    channel = make_channel("telegram", enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        incident = open_incident(token)
    delivery = incident.deliveries.get()
    assert (delivery.channel, delivery.status) == (channel, Status.QUEUED)
    with django_capture_on_commit_callbacks(execute=True) as published:
        assert dispatch.enable_channels([channel.pk]) == 1
    assert len(published) == 1  # its task is enqueued
    Delivery.objects.update(next_attempt_at=delivery.created_at)
    assert process_delivery(delivery.pk).word == "sent"
    assert "token-0" in fakes.telegram.sends[0].body["text"]


@pytest.mark.django_db
def test_a_channel_enabled_in_its_form_is_picked_up_by_the_sweep(
    fakes, notify, broker_url, django_capture_on_commit_callbacks
):
    [token] = make_tokens(1)
    channel = make_channel("telegram")
    fakes.telegram.fail_next("bot_blocked")
    with django_capture_on_commit_callbacks(execute=True):
        incident = open_incident(token)
    delivery = incident.deliveries.get()
    Delivery.objects.update(next_attempt_at=delivery.created_at)
    with django_capture_on_commit_callbacks(execute=True):
        assert process_delivery(delivery.pk).word == "failed"
    assert Incident.objects.filter(kind="channel", resolved_at=None).exists()
    Channel.objects.filter(pk=channel.pk).update(enabled=True)  # the form's checkbox
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.sweep()
    channel.refresh_from_db()
    assert channel.disabled_reason == "" and channel.disabled_at is None
    assert not Incident.objects.filter(kind="channel", resolved_at=None).exists()
    delivery.refresh_from_db()
    assert delivery.status == Status.QUEUED  # the failed alert goes out again


@pytest.mark.django_db
def test_the_admin_lists_say_when_an_open_incident_reaches_nobody(admin_client, notify):
    covered, alone = make_tokens(2)
    channel = make_channel("telegram", covers_all_tokens=False)
    channel.tokens.add(covered)
    for token in (covered, alone):
        Incident.objects.create(token=token, error_code="invalid_grant", message="x")
    heard = Incident.objects.get(token=covered)
    Delivery.objects.create(incident=heard, channel=channel, event=Event.OPENED)  # on its way
    incidents_html = admin_client.get(
        reverse("admin:notifications_incident_changelist")
    ).content.decode()
    assert "1 open incident(s) reach nobody: no alert of them was sent" in incidents_html
    assert incidents_html.count(">nobody</span>") == 1
    assert incidents_html.count(">a channel</span>") == 1
    uncovered = reverse("admin:notifications_incident_changelist") + "?state=uncovered"
    only = admin_client.get(uncovered).content.decode()
    assert "token-1" in only and "token-0" not in only
    channels_html = admin_client.get(
        reverse("admin:notifications_channel_changelist")
    ).content.decode()
    assert "1 open incident(s) reach nobody" in channels_html


@pytest.mark.django_db
def test_a_failing_channel_shows_since_when_in_the_list(admin_client, notify):
    from django.utils import timezone

    make_channel("telegram", failing_since=timezone.now(), last_error="Telegram answered 502")
    html = admin_client.get(reverse("admin:notifications_channel_changelist")).content.decode()
    assert "failing since " in html and "Telegram answered 502" in html


@pytest.mark.django_db
def test_uncovered_incidents_costs_one_query_however_many_there_are(notify):
    from notifications.incidents import coverage

    def count_queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            found = len(coverage.uncovered_incidents())
        return found, len(queries)

    tokens = make_tokens(22)
    portal_channel = make_channel("twilio", covers_all_tokens=False)
    portal_channel.portals.add(tokens[0].portal)
    token_channel = make_channel("telegram", covers_all_tokens=False)
    token_channel.tokens.add(tokens[1])
    make_channel("mandrill", covers_all_tokens=False, enabled=False).tokens.add(tokens[2])
    channels = [portal_channel, token_channel, Channel.objects.get(kind="mandrill"), None]
    for token, channel in zip(tokens[:4], channels, strict=True):
        incident = Incident.objects.create(token=token, error_code="invalid_grant", message="x")
        if channel is not None:  # its alert is on its way there
            Delivery.objects.create(incident=incident, channel=channel, event=Event.OPENED)
    assert count_queries() == (2, 1)  # tokens 2 (its channel is off) and 3 (no alert)
    for token in tokens[4:]:
        Incident.objects.create(token=token, error_code="invalid_grant", message="x")
    Incident.objects.create(kind=Incident.Kind.OUTAGE, error_code="x", message="x")
    assert count_queries() == (21, 1)  # no alert of them: nobody hears, whatever covers them
    Channel.objects.update(enabled=False)
    assert count_queries() == (23, 1)


@pytest.mark.django_db
def test_the_lists_cost_the_same_queries_for_2_or_12_switched_off_channels(admin_client, notify):
    lists = [
        reverse("admin:notifications_incident_changelist"),
        reverse("admin:notifications_delivery_changelist"),
        reverse("admin:notifications_channel_changelist"),
    ]
    listener = make_channel("twilio")

    def add(count: int) -> list[int]:
        for i in range(count):
            channel = make_channel("telegram", name=f"off {i}", enabled=False)
            incident = Incident.objects.create(
                kind=Incident.Kind.CHANNEL, channel=channel, message="bot blocked"
            )
            Delivery.objects.create(incident=incident, channel=listener, event=Event.OPENED)
        costs = []
        for url in lists:
            with CaptureQueriesContext(connection) as queries:
                assert admin_client.get(url).status_code == 200
            costs.append(len(queries))
        return costs

    assert add(2) == add(10)


@pytest.mark.django_db
def test_without_an_smtp_server_the_admins_are_not_emailed_but_told_later(
    mailbox, notify, settings
):
    from notifications.incidents import coverage

    [token] = make_tokens(1)
    incident = Incident.objects.create(token=token, error_code="invalid_grant", message="x")
    settings.EMAIL_URL = ""
    assert coverage.notify_admins() == 0  # email is not configured
    settings.EMAIL_URL = mailbox.url
    assert coverage.notify_admins() == 1
    assert coverage.notify_admins() == 0  # once per incident
    make_channel("telegram")
    Channel.objects.update(enabled=False)
    assert coverage.notify_admins() == 0  # still once: the banner and /health/ keep saying it
    assert [m.subject for m in mailbox.messages] == [
        "[b24keeper] 1 open incident(s) reach nobody: no alert of them got through"
    ]
    assert f"/admin/notifications/incident/{incident.pk}/change/" in mailbox.messages[0].body
