"""Escalations delivered by real Celery workers on Redis and PostgreSQL, through the six
providers' wire-level fakes. The `workers` fixture also checks that no worker log holds a
credential or a token."""

from datetime import timedelta

import pytest
from django.db import transaction

from notifications import dispatch, incidents
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
    return incidents.open_incident(
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
    telegram = Channel.objects.filter(kind="telegram")
    wait_until(lambda: telegram.get().failing_since is not None, 15, "failing since")
    assert telegram.get().enabled  # down is not broken
    settled(3)
    delivered = Delivery.objects.get(channel__kind="telegram")
    assert (delivered.status, delivered.attempts) == (Status.SENT, 9)
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
