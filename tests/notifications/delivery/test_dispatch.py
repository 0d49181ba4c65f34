"""Escalations delivered by real Celery workers on Redis and PostgreSQL, through the six
providers' wire-level fakes. The `workers` fixture also checks that no worker log holds a
credential or a token."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from notifications.delivery import dispatch
from notifications.incidents import lifecycle
from notifications.models import Channel, Delivery, Incident
from portals.models import Token
from tests.conftest import connect, run_due
from tests.fakes.providers import is_gsm7, sms_segments
from tests.notifications_helpers import PROVIDERS, age, make_channel, make_tokens, statuses
from tests.processes import wait_until

# Fixtures: fakes, notify, owner, workers.
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]
Status, Event = Delivery.Status, Delivery.Event
SETTLED = (Status.SENT, Status.FAILED, Status.CANCELLED)


def open_incident(token: Token) -> Incident:
    return lifecycle.open_incident(
        token,
        code="invalid_grant",
        message="Bitrix24 answered invalid_grant (refresh token expired).",
        permanent=True,
    )


def settled(count: int, **filters: object) -> None:
    """Wait until `count` deliveries (matching filters) are sent, failed or cancelled."""
    done = Delivery.objects.filter(status__in=SETTLED, **filters)
    wait_until(lambda: done.count() == count, 30, f"{count} settled deliveries")


def provider_ids(fakes) -> dict[str, str]:
    """The message id each fake answered with, by channel kind."""
    unisender = {r.path.rsplit("/", 1)[-1]: a.body for r, a in
                 zip(fakes.unisender.requests, fakes.unisender.replies, strict=True)}  # fmt: skip
    telegram = fakes.telegram.replies[0].body["result"]
    return {
        "twilio": fakes.twilio.replies[0].body["sid"],
        "messagebird": fakes.messagebird.replies[0].body["id"],
        "unisender_sms": unisender["sendSms"]["result"]["sms_id"],
        "mandrill": fakes.mandrill.replies[0].body[0]["_id"],
        "unisender_email": unisender["sendEmail"]["result"][0]["id"],
        "telegram": f"{telegram['chat']['id']}:{telegram['message_id']}",
    }


def test_each_provider_delivers_an_alert_and_its_message_id_is_stored(fakes, workers, owner):
    [token] = make_tokens(1, owner=owner)
    for kind in PROVIDERS:
        make_channel(kind)
    workers.worker(concurrency=2)
    open_incident(token)
    settled(6)
    sent = dict(Delivery.objects.values_list("channel__kind", "provider_message_id"))
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.SENT}
    assert sent == provider_ids(fakes)
    sms = fakes.twilio.requests[0].body["Body"]
    assert is_gsm7(sms) and len(sms) <= 160 and "token-0" in sms and "Ann Smith" in sms
    email = fakes.mandrill.requests[0].body["message"]["text"]
    assert "Ann Smith <ann@example.org>" in email and "invalid_grant" in email


def test_a_token_failing_50_times_alerts_once_reminds_and_reports_its_recovery(
    fake_bitrix, fakes, workers, owner
):
    token = connect(fake_bitrix)
    Token.objects.filter(pk=token.pk).update(owner=owner)
    make_channel("telegram", remind_every_minutes=60)
    make_channel("twilio", remind_every_minutes=60)
    make_channel("mandrill")  # no reminders here
    workers.worker(concurrency=2)
    fake_bitrix.fail_next("status", count=50, status=503)
    outcomes = {run_due(token, expires_in=timedelta(seconds=5)) for _ in range(50)}
    assert outcomes == {"failed"}
    assert Incident.objects.get().occurrences == 50
    settled(3, event=Event.OPENED)
    incident = Incident.objects.get()
    for sequence, minutes in ((1, 61), (2, 60)):
        age(incident, minutes)
        assert dispatch.send_reminders() == 2
        assert dispatch.send_reminders() == 0  # a second sweep in the same interval
        settled(2, event=Event.REMINDER, sequence=sequence)
    assert run_due(token) == "refreshed"
    settled(3, event=Event.RESOLVED)
    assert statuses() == [
        ("mandrill", "opened", "sent"),
        ("mandrill", "resolved", "sent"),
        ("telegram", "opened", "sent"),
        ("telegram", "reminder", "sent"),
        ("telegram", "reminder", "sent"),
        ("telegram", "resolved", "sent"),
        ("twilio", "opened", "sent"),
        ("twilio", "reminder", "sent"),
        ("twilio", "reminder", "sent"),
        ("twilio", "resolved", "sent"),
    ]
    texts = [r.body["text"] for r in fakes.telegram.requests]
    assert len(texts) == 4 and "still cannot be refreshed" in texts[1]
    assert "refreshes again" in texts[3]
    assert (len(fakes.twilio.sends), len(fakes.mandrill.sends)) == (4, 2)


def test_a_provider_down_longer_than_the_attempts_gets_the_alert_when_it_recovers(fakes, workers):
    [token] = make_tokens(1)
    for kind in ("telegram", "twilio", "mandrill"):
        make_channel(kind, remind_every_minutes=60)
    for _ in range(8):  # NOTIFY_MAX_ATTEMPTS is 3: a few minutes of 503s in production
        fakes.telegram.fail_next("server_error", status=503)
    workers.worker(concurrency=2)
    incident = open_incident(token)
    settled(3)
    delivered = Delivery.objects.get(channel__kind="telegram")
    assert (delivered.status, delivered.attempts) == (Status.SENT, 9)
    telegram = Channel.objects.filter(kind="telegram")
    assert telegram.get().enabled  # down is not broken
    assert len(fakes.telegram.sends) == 9
    assert "cannot refresh the Bitrix24 token" in fakes.telegram.sends[-1].body["text"]
    assert telegram.get().failing_since is None
    assert statuses() == [
        ("mandrill", "opened", "sent"),
        ("telegram", "opened", "sent"),
        ("twilio", "opened", "sent"),
    ]
    age(incident, 61)  # and the reminders follow on every channel
    assert dispatch.send_reminders() == 3
    settled(3, event=Event.REMINDER)


def test_a_permanent_provider_error_disables_that_channel_and_the_others_deliver(fakes, workers):
    [token] = make_tokens(1)
    for kind in ("telegram", "twilio", "unisender_email"):
        make_channel(kind)
    fakes.twilio.fail_next("invalid_to")
    workers.worker(concurrency=2)
    open_incident(token)
    settled(3)
    twilio = Channel.objects.get(kind="twilio")
    assert not twilio.enabled and "21211" in twilio.disabled_reason
    assert "Check the recipient's phone number" in twilio.disabled_reason
    assert Delivery.objects.get(channel=twilio).error == twilio.disabled_reason
    assert len(fakes.twilio.sends) == 1  # never retried
    assert statuses(channel__enabled=True, incident__kind="token") == [
        ("telegram", "opened", "sent"),
        ("unisender_email", "opened", "sent"),
    ]


def test_200_tokens_failing_at_once_make_one_digest_per_channel(fakes, workers, owner, settings):
    settings.NOTIFY_HOLD_SECONDS = 2.0
    tokens = make_tokens(200, owner=owner)
    kinds = ("telegram", "twilio", "mandrill")
    for kind in kinds:
        make_channel(kind)
    workers.worker(concurrency=2)
    with transaction.atomic():  # the 200 signals go out at commit, back to back
        for token in tokens:
            open_incident(token)
    settled(600)
    for fake in (fakes.telegram, fakes.twilio, fakes.mandrill):
        assert len(fake.sends) == 1, fake.name
    for kind in kinds:
        deliveries = Delivery.objects.filter(channel__kind=kind)
        assert deliveries.filter(status=Status.SENT).count() == 200
        [lead] = deliveries.filter(digest=None)
        assert lead.folded.count() == 199
        assert set(deliveries.values_list("provider_message_id", flat=True)) == {
            lead.provider_message_id
        }
    telegram = fakes.telegram.requests[0].body["text"]
    assert "200 new failures (200 need a person now)" in telegram and len(telegram) <= 4096
    assert "p199.bitrix24.com / token-199" in telegram  # the newest are never cut off
    assert "more." in telegram
    sms = fakes.twilio.requests[0].body["Body"]
    assert is_gsm7(sms) and sms_segments(sms) <= 3 and "200 new failures" in sms
    assert "p199.bitrix24.com token-199 invalid_grant" in sms


def test_a_transient_incident_that_turns_permanent_alerts_every_channel_again(fakes, workers):
    [token] = make_tokens(1)
    for kind in ("telegram", "twilio", "mandrill"):
        make_channel(kind)
    workers.worker(concurrency=2)
    lifecycle.open_incident(
        token, code="http_503", message="Bitrix24 answered 503.", permanent=False
    )
    settled(3, event=Event.OPENED)
    assert "Nothing yet: b24keeper keeps retrying." in fakes.telegram.sends[0].body["text"]
    open_incident(token)  # now invalid_grant: a person must re-connect the portal
    fakes_ = (fakes.telegram, fakes.twilio, fakes.mandrill)
    wait_until(lambda: all(len(f.sends) == 2 for f in fakes_), 30, "a new alert everywhere")
    settled(3, event=Event.CHANGED)
    text = fakes.telegram.sends[-1].body["text"]
    assert "changed: b24keeper cannot fix it by retrying, a person must act now." in text
    assert "What to do: Re-connect the portal" in text and "invalid_grant" in text
    sms = fakes.twilio.sends[-1].body["Body"]
    assert "now needs a person: invalid_grant" in sms and sms_segments(sms) == 1
    assert "Act now:" in fakes.mandrill.sends[-1].body["message"]["subject"]
    open_incident(token)  # the same permanent error again: nothing new to say
    assert Incident.objects.get().occurrences == 3
    assert Delivery.objects.count() == 6


def test_a_new_incidents_alert_is_not_held_by_the_hourly_limit_that_holds_reminders(fakes, workers):
    old, new = make_tokens(2)
    channel = make_channel("telegram", max_per_hour=2, remind_every_minutes=5)
    workers.worker()
    incident = open_incident(old)
    settled(1)
    Delivery.objects.create(  # the second message of this hour
        incident=incident, channel=channel, event=Event.REMINDER, sequence=1,
        status=Status.SENT, sent_at=timezone.now(),
    )  # fmt: skip
    held = Delivery.objects.create(
        incident=incident, channel=channel, event=Event.REMINDER, sequence=2
    )
    dispatch.enqueue([held.pk])
    in_an_hour = timezone.now() + timedelta(minutes=55)
    wait_until(
        lambda: Delivery.objects.get(pk=held.pk).next_attempt_at > in_an_hour,
        15,
        "the reminder held by the limit",
    )
    open_incident(new)
    settled(1, incident__token=new)  # at once, not after the hour
    assert Delivery.objects.get(pk=held.pk).status == Status.QUEUED
    assert "token-1" in fakes.telegram.sends[-1].body["text"]
    assert len(fakes.telegram.sends) == 2


def test_a_digest_names_the_new_failure_among_many_recoveries(fakes, workers, owner):
    tokens = make_tokens(7, owner=owner)
    for kind in ("telegram", "twilio"):
        make_channel(kind)
    workers.worker(concurrency=2)
    with transaction.atomic():
        for token in tokens[:6]:
            lifecycle.open_incident(token, code="http_503", message="503", permanent=False)
    settled(12)
    with transaction.atomic():  # six recover while a seventh needs a person: one digest each
        for token in tokens[:6]:
            lifecycle.resolve_for_token(token)
        open_incident(tokens[6])
    settled(12 + 14)
    assert len(fakes.telegram.sends) == len(fakes.twilio.sends) == 2
    sms = fakes.twilio.sends[-1].body["Body"]
    assert sms.startswith("b24keeper: 1 new failure (1 needs a person now), 6 recovered.")
    assert "p6.bitrix24.com token-6 invalid_grant: Re-connect the portal" in sms
    assert is_gsm7(sms) and sms_segments(sms) <= 3
    text = fakes.telegram.sends[-1].body["text"]
    act = text.split("Act now (1), newest first:")[1]
    assert act.startswith("\n- p6.bitrix24.com / token-6 — invalid_grant — owner: Ann Smith\n")
    assert "  What to do: Re-connect the portal" in act
    assert f"  Token page: http://127.0.0.1:8000/admin/portals/token/{tokens[6].pk}/" in act
    assert "Recovered (6):" in text


def test_two_emails_to_one_address_are_spaced_by_unisenders_interval(fakes, workers):
    first, second = make_tokens(2)
    make_channel("unisender_email")
    workers.worker(concurrency=2)
    open_incident(first)
    settled(1)  # sent alone (opened together, the two could share one digest email)
    open_incident(second)  # a moment later: UniSender would refuse it within 60 s
    settled(2)
    assert statuses() == [("unisender_email", "opened", "sent")] * 2
    [times] = fakes.unisender.email_times.values()
    assert len(times) == 2 and times[1] - times[0] >= 1.5  # UNISENDER_EMAIL_MIN_INTERVAL
    assert Channel.objects.get().enabled  # and the fake saw no refused email (assert_clean)
