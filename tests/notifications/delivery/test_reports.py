""" "Accepted" is not "delivered": where a provider reports what became of a message, b24keeper
asks, and a message that did not arrive counts as a failed delivery with the provider's
reason. Also Mandrill's "queued" answers that mean the account cannot send."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.delivery.sending import process_delivery
from notifications.incidents import lifecycle
from notifications.models import Channel, Delivery, Incident
from tests.notifications_helpers import fake_for, make_channel, make_tokens
from tests.processes import wait_until

# Fixtures: fakes, notify, owner, workers.
pytest_plugins = ["tests.notifications_fixtures"]
Status, Event = Delivery.Status, Delivery.Event
# kind -> (a permanent reason for not delivering, as the fake plans it; words of the reason)
UNDELIVERED = {
    "twilio": ({"code": 30005, "message": "Unknown destination handset"}, "(30005)"),
    "messagebird": ({"reason": "unknown subscriber", "code": 1}, "unknown subscriber"),
    "unisender_sms": ({"status": "err_dest_invalid"}, "dest invalid"),
    "mandrill": ({"state": "bounced", "diag": "550 5.1.1 No such user"}, "550 5.1.1"),
    "unisender_email": ({"status": "err_user_unknown"}, "user unknown"),
}


@pytest.fixture
def send(broker_url, notify, django_capture_on_commit_callbacks):
    """Open an incident on one channel and send its alert, as the worker would."""

    def send_(kind: str, **channel_fields: object) -> Delivery:
        [token] = make_tokens(1)
        make_channel(kind, **channel_fields)
        with django_capture_on_commit_callbacks(execute=True):
            incident = lifecycle.open_incident(
                token, code="invalid_grant", message="Bitrix24 said so.", permanent=True
            )
        delivery = incident.deliveries.get(channel__kind=kind)
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            process_delivery(delivery.pk)
        delivery.refresh_from_db()
        return delivery

    return send_


def check(delivery: Delivery, capture) -> str:
    """Run the status check now, as its task would when it is due."""
    from notifications.delivery.reports import process_check

    Delivery.objects.filter(pk=delivery.pk).update(next_check_at=timezone.now())
    with capture(execute=True):
        word = process_check(delivery.pk).word
    delivery.refresh_from_db()
    return word


@pytest.mark.django_db
@pytest.mark.parametrize("kind", UNDELIVERED)
def test_a_message_the_provider_could_not_deliver_fails_with_its_reason(
    kind, fakes, send, django_capture_on_commit_callbacks
):
    details, words = UNDELIVERED[kind]
    fake = fake_for(fakes, kind)
    fake.fate_next("undelivered", polls=1, **details)
    delivery = send(kind)
    assert delivery.status == Status.SENT and delivery.next_check_at is not None
    assert check(delivery, django_capture_on_commit_callbacks) == "pending"  # on its way
    assert check(delivery, django_capture_on_commit_callbacks) == "failed"
    assert delivery.status == Status.FAILED and delivery.error.startswith("Not delivered: ")
    assert words in delivery.error
    channel = Channel.objects.get(kind=kind)
    assert not channel.enabled and words in channel.disabled_reason
    assert len(fake.status_requests) == 2


@pytest.mark.django_db
@pytest.mark.parametrize("kind", UNDELIVERED)
def test_a_delivered_message_is_confirmed(kind, fakes, send, django_capture_on_commit_callbacks):
    delivery = send(kind)
    assert check(delivery, django_capture_on_commit_callbacks) == "delivered"
    assert delivery.delivered_at is not None and delivery.next_check_at is None
    assert delivery.status == Status.SENT


@pytest.mark.django_db
def test_a_telegram_message_needs_no_check(fakes, send):
    delivery = send("telegram")
    assert delivery.status == Status.SENT and delivery.next_check_at is None


@pytest.mark.django_db
def test_a_message_still_on_its_way_when_the_time_is_up_stays_unconfirmed(
    fakes, send, django_capture_on_commit_callbacks
):
    fakes.twilio.fate_next("pending")
    delivery = send("twilio")
    assert check(delivery, django_capture_on_commit_callbacks) == "pending"
    Delivery.objects.filter(pk=delivery.pk).update(check_until=timezone.now())
    assert check(delivery, django_capture_on_commit_callbacks) == "unconfirmed"
    assert delivery.status == Status.SENT and delivery.delivered_at is None
    assert delivery.next_check_at is None


@pytest.mark.django_db
def test_a_status_api_that_is_down_says_nothing_about_the_message(
    fakes, send, django_capture_on_commit_callbacks
):
    fakes.twilio.fail_next("server_error", endpoint="status")
    delivery = send("twilio")
    assert check(delivery, django_capture_on_commit_callbacks) == "pending"  # ask again later
    assert check(delivery, django_capture_on_commit_callbacks) == "delivered"


@pytest.mark.django_db
def test_a_mandrill_queued_answer_for_a_suspended_account_switches_the_channel_off(fakes, send):
    fakes.mandrill.fail_next("queued", queued_reason="account-suspended")
    make_channel("telegram")
    delivery = send("mandrill")
    assert delivery.status == Status.FAILED
    assert "queued the email: account-suspended (account-suspended)" in delivery.error
    mandrill = Channel.objects.get(kind="mandrill")
    assert not mandrill.enabled and "settle it with Mailchimp" in mandrill.disabled_reason
    notice = Incident.objects.get(kind=Incident.Kind.CHANNEL).deliveries.get()
    assert notice.channel.kind == "telegram"  # point 3: the others hear of it


@pytest.mark.django_db
def test_a_mandrill_hourly_quota_delays_the_email_without_switching_the_channel_off(fakes, send):
    fakes.mandrill.fail_next("queued", queued_reason="hourly-quota-exhausted")
    delivery = send("mandrill")
    assert delivery.status == Status.SENT and delivery.next_check_at is not None
    assert "hourly-quota-exhausted" in delivery.error
    mandrill = Channel.objects.get(kind="mandrill")
    assert mandrill.enabled and "it goes out later" in mandrill.last_error


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_an_sms_the_carrier_could_not_deliver_is_sent_again_until_it_arrives(fakes, workers):
    [token] = make_tokens(1)
    make_channel("twilio")
    fakes.twilio.fate_next("undelivered", polls=1, code=30003, message="Unreachable handset")
    workers.worker()
    incident = lifecycle.open_incident(
        token, code="invalid_grant", message="Bitrix24 said so.", permanent=True
    )
    delivery = incident.deliveries.get()
    wait_until(
        lambda: Delivery.objects.filter(pk=delivery.pk, delivered_at__isnull=False).exists(),
        30,
        "the second SMS confirmed",
    )
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and len(fakes.twilio.sends) == 2
    assert Channel.objects.get().enabled  # a phone out of reach is no reason to stop
    answers = zip(fakes.twilio.requests, fakes.twilio.replies, strict=True)
    states = [a.body["status"] for r, a in answers if r in fakes.twilio.status_requests]
    assert states[:2] == ["sent", "undelivered"] and states[-1] == "delivered"
    reasons = Delivery.objects.filter(pk=delivery.pk).values_list("error", flat=True)
    assert list(reasons) == [""]  # cleared once it went through
    assert timezone.now() - delivery.delivered_at < timedelta(minutes=1)
