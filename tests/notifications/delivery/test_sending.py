"""Dispatch and sending in this process: who gets a delivery, the claim, retries, disabling,
the rate limit, digests, reminders and recovery notices. The `deliver` task's body
(sending.process_delivery) is called directly; tests/notifications/delivery/test_dispatch.py
runs the same through real Celery workers."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifications.delivery import dispatch
from notifications.delivery.sending import backoff, process_delivery, send_test
from notifications.incidents import lifecycle
from notifications.models import Channel, Delivery, Incident
from tests.notifications_helpers import age, make_channel, make_tokens

# Fixtures: fakes, notify, owner, workers.
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
Status, Event = Delivery.Status, Delivery.Event


@pytest.fixture(autouse=True)
def quiet_broker(broker_url, notify):
    """Dispatch publishes real task messages; they land in the emptied test Redis."""


@pytest.fixture
def open_incident(django_capture_on_commit_callbacks):
    def open_(token, code: str = "invalid_grant", permanent: bool = True) -> Incident:
        with django_capture_on_commit_callbacks(execute=True):
            return lifecycle.open_incident(
                token, code=code, message="Bitrix24 answered invalid_grant.", permanent=permanent
            )

    return open_


@pytest.fixture
def resolve(django_capture_on_commit_callbacks):
    def resolve_(token) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.resolve_for_token(token)

    return resolve_


def make_due(**filters: object) -> None:
    Delivery.objects.filter(**filters).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def run(delivery: Delivery | int, make_it_due: bool = True):
    pk = delivery if isinstance(delivery, int) else delivery.pk
    if make_it_due:
        make_due(pk=pk)
    return process_delivery(pk)


def test_an_alert_goes_to_every_channel_that_covers_the_token(fakes, open_incident):
    token, other = make_tokens(2)
    everything = make_channel("telegram")
    by_portal = make_channel("twilio", covers_all_tokens=False)
    by_portal.portals.add(token.portal)
    by_token = make_channel("mandrill", covers_all_tokens=False)
    by_token.tokens.add(token)
    elsewhere = make_channel("messagebird", covers_all_tokens=False)
    elsewhere.tokens.add(other)
    disabled = make_channel("unisender_sms", enabled=False)  # kept for when it is enabled
    incident = open_incident(token)
    deliveries = Delivery.objects.filter(incident=incident)
    assert {d.channel for d in deliveries} == {everything, by_portal, by_token, disabled}
    assert {(d.event, d.status, d.attempts) for d in deliveries} == {(Event.OPENED, "queued", 0)}
    hold = deliveries[0].next_attempt_at - deliveries[0].created_at
    assert hold == timedelta(seconds=0.3)  # NOTIFY_HOLD_SECONDS: a storm can gather


def test_an_outage_goes_to_every_enabled_channel(fakes, django_capture_on_commit_callbacks):
    make_channel("telegram", covers_all_tokens=False)
    make_channel("twilio")
    with django_capture_on_commit_callbacks(execute=True):
        outage = lifecycle.open_outage(code="INTERNAL_SERVER_ERROR", message="503", affected=40)
    assert outage.deliveries.count() == 2


def test_repeats_of_an_open_incident_send_nothing(fakes, open_incident):
    [token] = make_tokens(1)
    make_channel("telegram")
    for _ in range(5):
        open_incident(token)
    assert Incident.objects.get().occurrences == 5
    assert Delivery.objects.count() == 1


def test_the_task_claims_once_and_stores_the_provider_id(fakes, open_incident):
    [token] = make_tokens(1)
    channel = make_channel("telegram")
    delivery = open_incident(token).deliveries.get()
    assert run(delivery).word == "sent"
    assert run(delivery).word == "skipped"  # a duplicate or redelivered task
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT and delivery.attempts == 1
    reply = fakes.telegram.replies[0].body["result"]
    assert delivery.provider_message_id == f"{reply['chat']['id']}:{reply['message_id']}"
    assert len(fakes.telegram.requests) == 1
    channel.refresh_from_db()
    assert channel.last_sent_at == delivery.sent_at


def test_a_delivery_waits_for_its_hold(fakes, open_incident):
    [token] = make_tokens(1)
    make_channel("telegram")
    delivery = open_incident(token).deliveries.get()
    outcome = run(delivery, make_it_due=False)
    assert outcome.word == "waiting" and 0 < outcome.retry_in <= 0.3
    assert fakes.telegram.requests == []


def test_an_alert_of_an_open_incident_retries_with_capped_backoff_until_it_goes_out(
    fakes, open_incident
):
    [token] = make_tokens(1)
    channel = make_channel("telegram")
    delivery = open_incident(token).deliveries.get()
    for _ in range(5):  # more than NOTIFY_MAX_ATTEMPTS (3)
        fakes.telegram.fail_next("server_error")
    outcomes = [run(delivery) for _ in range(5)]
    assert [o.word for o in outcomes] == ["retry"] * 5
    assert 0.1 <= outcomes[0].retry_in <= 0.2 and 0.2 <= outcomes[1].retry_in <= 0.4  # 0.2*2^n
    assert all(0.25 <= o.retry_in <= 0.5 for o in outcomes[2:])  # capped (and jittered)
    delivery.refresh_from_db()
    assert delivery.status == Status.QUEUED and delivery.attempts == 5
    assert "HTTP 502" in delivery.error
    channel.refresh_from_db()
    assert channel.enabled and "HTTP 502" in channel.last_error  # down is not broken
    assert channel.failing_since is not None
    assert run(delivery).word == "sent"
    delivery.refresh_from_db()
    channel.refresh_from_db()
    assert delivery.status == Status.SENT and delivery.attempts == 6
    assert channel.failing_since is None


def test_a_recovery_notice_gives_up_after_the_attempts(fakes, open_incident, resolve):
    [token] = make_tokens(1)
    make_channel("telegram")
    run(open_incident(token).deliveries.get())
    resolve(token)
    notice = Delivery.objects.get(event=Event.RESOLVED)
    for _ in range(3):
        fakes.telegram.fail_next("server_error")
    assert [run(notice).word for _ in range(3)] == ["retry", "retry", "failed"]
    notice.refresh_from_db()
    assert notice.status == Status.FAILED and notice.attempts == 3
    assert notice.error.startswith("Gave up after 3 attempts. Telegram answered HTTP 502")


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after(settings):
    settings.NOTIFY_RETRY_BASE_SECONDS, settings.NOTIFY_RETRY_MAX_SECONDS = 30, 900
    assert 15 <= backoff(1) <= 30 and 60 <= backoff(3) <= 120
    assert 450 <= backoff(10) <= 900
    assert backoff(1, retry_after=61) == 61
    assert len({backoff(4) for _ in range(20)}) > 1


def test_a_permanent_error_disables_the_channel_and_others_still_deliver(fakes, open_incident):
    [token] = make_tokens(1)
    twilio, telegram = make_channel("twilio"), make_channel("telegram")
    fakes.twilio.fail_next("invalid_to")
    incident = open_incident(token)
    for delivery in incident.deliveries.all():
        run(delivery)
    twilio.refresh_from_db()
    assert not twilio.enabled and twilio.disabled_at is not None
    assert (
        "21211" in twilio.disabled_reason and "recipient's phone number" in twilio.disabled_reason
    )
    failed = incident.deliveries.get(channel=twilio)
    assert failed.status == Status.FAILED and failed.error == twilio.disabled_reason
    assert incident.deliveries.get(channel=telegram).status == Status.SENT
    [second] = make_tokens_more(1)
    kept = open_incident(second).deliveries.get(channel=twilio)  # waits for the channel
    run(kept)
    kept.refresh_from_db()
    assert kept.status == Status.QUEUED and len(fakes.twilio.sends) == 1


def make_tokens_more(count: int):
    from portals.models import AppCredentials, Portal, Token

    app = AppCredentials.objects.get()
    portal = Portal.objects.create(domain="later.bitrix24.com")
    return [Token.objects.create(portal=portal, app=app, reference="later") for _ in range(count)]


def test_a_broken_configuration_fails_the_delivery_and_disables_the_channel(fakes, open_incident):
    [token] = make_tokens(1)
    channel = make_channel("telegram")
    channel.set_credentials({})
    channel.save()
    delivery = open_incident(token).deliveries.get()
    assert run(delivery).word == "failed"
    channel.refresh_from_db()
    assert not channel.enabled
    assert "missing bot_token (Bot token)" in channel.disabled_reason


def test_a_disabled_channel_keeps_its_alerts_until_it_is_enabled(fakes, open_incident):
    [token] = make_tokens(1)
    channel = make_channel("telegram")
    delivery = open_incident(token).deliveries.get()
    Channel.objects.update(enabled=False)
    assert run(delivery).word == "held: channel disabled"
    dispatch.enable_channels([channel.pk])
    assert run(delivery).word == "sent"


def test_the_rate_limit_holds_repeats_and_the_backlog_goes_out_as_one_digest(fakes, open_incident):
    tokens = make_tokens(6)
    channel = make_channel("telegram", max_per_hour=2)
    first = [open_incident(token).deliveries.get() for token in tokens[:2]]
    assert [run(d).word for d in first] == ["sent", "sent"]
    backlog = [
        Delivery.objects.create(
            incident=Incident.objects.create(token=token, error_code="invalid_grant", message="x"),
            channel=channel,
            event=Event.REMINDER,
            sequence=1,
        )
        for token in tokens[2:]
    ]
    make_due()
    held = run(backlog[0])
    assert held.word == "rate-limited" and held.retry_in == 600  # re-checked every 10 min
    slot = Delivery.objects.filter(status=Status.SENT).earliest("sent_at").sent_at + timedelta(
        hours=1
    )
    waiting = Delivery.objects.filter(status=Status.QUEUED)
    assert set(waiting.values_list("next_attempt_at", flat=True)) == {slot}
    assert len(fakes.telegram.requests) == 2
    Delivery.objects.filter(status=Status.SENT).update(sent_at=timezone.now() - timedelta(hours=1))
    make_due()  # the hour has passed
    assert run(backlog[1]).word == "digest"
    assert len(fakes.telegram.requests) == 3
    assert "4 still failing" in fakes.telegram.requests[-1].body["text"]


def test_a_storm_waits_while_it_grows_then_goes_out_as_one_digest(fakes, open_incident):
    tokens = make_tokens(8)
    make_channel("telegram")
    deliveries = [open_incident(token).deliveries.get() for token in tokens]
    assert run(deliveries[0]).word == "held for a digest"  # the other 7 are still in their hold
    make_due()
    assert run(deliveries[-1]).word == "digest"
    assert {run(d).word for d in deliveries} == {"skipped"}
    [request] = fakes.telegram.requests
    assert "8 new failures" in request.body["text"]
    lead = Delivery.objects.get(digest=None)
    assert lead.pk == deliveries[-1].pk
    assert set(Delivery.objects.values_list("status", "provider_message_id")) == {
        ("sent", lead.provider_message_id)
    }
    assert lead.folded.count() == 7


def test_a_failed_digest_retries_every_alert_in_it(fakes, open_incident):
    tokens = make_tokens(7)
    make_channel("telegram")
    deliveries = [open_incident(token).deliveries.get() for token in tokens]
    make_due()
    fakes.telegram.fail_next("server_error")
    assert run(deliveries[0]).word == "retry"
    assert set(Delivery.objects.values_list("status", "attempts", "digest")) == {
        ("queued", 1, None)
    }
    assert run(deliveries[0]).word == "digest"
    assert Delivery.objects.filter(status=Status.SENT).count() == 7


def test_a_recovery_notice_goes_where_the_alert_went(fakes, open_incident, resolve):
    [token] = make_tokens(1)
    told, late = make_channel("telegram"), make_channel("twilio")
    incident = open_incident(token)
    run(incident.deliveries.get(channel=told))
    resolve(token)
    assert incident.deliveries.get(channel=late).status == Status.CANCELLED  # never sent
    resolved = incident.deliveries.get(event=Event.RESOLVED)
    assert resolved.channel == told
    assert run(resolved).word == "sent"
    assert "refreshes again" in fakes.telegram.requests[-1].body["text"]
    assert fakes.twilio.requests == []


def test_reminders_come_once_per_interval_while_the_incident_stays_open(fakes, open_incident):
    [token] = make_tokens(1)
    make_channel("telegram", remind_every_minutes=60)
    make_channel("twilio")  # no reminders
    incident = open_incident(token)
    for delivery in incident.deliveries.all():
        run(delivery)
    assert dispatch.send_reminders() == 0  # not an hour yet
    age(incident, 61)
    assert dispatch.send_reminders() == 1
    assert dispatch.send_reminders() == 0  # on its way already
    reminder = incident.deliveries.get(event=Event.REMINDER)
    assert (reminder.sequence, reminder.channel.kind) == (1, "telegram")
    assert run(reminder).word == "sent"
    assert dispatch.send_reminders() == 0  # this interval's reminder went out
    age(incident, 60)
    assert dispatch.send_reminders() == 1
    assert "still cannot be refreshed" in fakes.telegram.requests[-1].body["text"]


def test_reminders_are_off_by_default():
    assert Channel._meta.get_field("remind_every_minutes").default == 0


def test_the_sweep_sends_again_what_a_dead_worker_left_and_what_lost_its_task(fakes, open_incident):
    tokens = make_tokens(2)
    make_channel("telegram")
    cut_off, lost = (open_incident(token).deliveries.get() for token in tokens)
    long_ago = timezone.now() - timedelta(hours=1)
    Delivery.objects.filter(pk=cut_off.pk).update(status=Status.SENDING, claimed_at=long_ago)
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago)
    assert dispatch.requeue_lost() == 2
    cut_off.refresh_from_db()
    assert cut_off.status == Status.QUEUED and "cut off" in cut_off.error
    assert {run(cut_off).word, run(lost).word} == {"sent"}


def test_credentials_that_cannot_be_decrypted_disable_the_channel_with_the_reason(
    fakes, open_incident
):
    from cryptography.fernet import Fernet

    [token] = make_tokens(1)
    channel = make_channel("telegram")
    lost_key = Fernet(Fernet.generate_key()).encrypt(b'{"bot_token": "x"}').decode()
    with connection.cursor() as cursor:  # written with a key that is no longer configured
        cursor.execute("UPDATE notifications_channel SET credentials = %s", [lost_key])
    delivery = open_incident(token).deliveries.get()
    assert run(delivery).word == "failed"
    channel.refresh_from_db(fields=["enabled", "disabled_reason"])
    assert not channel.enabled and "cannot be decrypted" in channel.disabled_reason
    assert Delivery.objects.get().status == Status.FAILED


def test_the_sweep_is_one_periodic_task_that_an_admin_edit_survives():
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from notifications.beat import SWEEP_TASK, ensure_sweep_schedule

    PeriodicTask.objects.filter(task=SWEEP_TASK).delete()  # as the data migration finds it
    ensure_sweep_schedule(PeriodicTask, IntervalSchedule, 60)
    sweep = PeriodicTask.objects.get(task=SWEEP_TASK)
    assert sweep.interval.every == 60 and sweep.enabled
    PeriodicTask.objects.filter(pk=sweep.pk).update(enabled=False)
    ensure_sweep_schedule(PeriodicTask, IntervalSchedule, 60)
    assert PeriodicTask.objects.get(task=SWEEP_TASK).enabled is False


def test_an_sms_with_extension_characters_still_goes_as_one_part(fakes, open_incident, owner):
    owner.last_name = "{ops}[x]"  # 158 characters with the link, but 162 septets
    owner.save()
    [token] = make_tokens(1, owner=owner)
    make_channel("twilio")
    assert run(open_incident(token).deliveries.get()).word == "sent"
    assert fakes.twilio.replies[0].body["num_segments"] == "1"
    assert "Owner: Ann {ops}[x]." in fakes.twilio.sends[0].body["Body"]


def test_a_long_bitrix_description_never_cuts_off_what_to_do_in_telegram(fakes, open_incident):
    [token] = make_tokens(1)
    make_channel("telegram")
    incident = open_incident(token)
    Incident.objects.update(message="Bitrix24 said: " + "x" * 4700)
    assert run(incident.deliveries.get()).word == "sent"
    text = fakes.telegram.sends[0].body["text"]
    assert len(text) <= 4096 and "What to do: Re-connect the portal" in text
    assert f"Token page: https://keeper.example.com/admin/portals/token/{token.pk}/change/" in text


def test_another_permanent_error_alerts_again_and_a_transient_one_does_not(fakes, open_incident):
    [token] = make_tokens(1)
    make_channel("telegram")
    run(open_incident(token).deliveries.get())
    open_incident(token, code="http_503", permanent=False)  # worse is not better: quiet
    open_incident(token, code="PAYMENT_REQUIRED")  # another reason a person must act
    assert Delivery.objects.count() == 2
    [changed] = Delivery.objects.filter(event=Event.CHANGED)
    assert changed.sequence == 1 and run(changed).word == "sent"
    assert "Renew the application's subscription" in fakes.telegram.sends[-1].body["text"]
    open_incident(token, code="PAYMENT_REQUIRED")
    assert Delivery.objects.count() == 2


def test_reminders_come_even_when_the_first_alert_never_got_through(fakes, open_incident):
    [token] = make_tokens(1)
    channel = make_channel("telegram", remind_every_minutes=60)
    incident = open_incident(token)
    Delivery.objects.update(status=Status.FAILED, error="Gave up after 5 attempts.")  # as before
    later = make_channel("twilio", remind_every_minutes=60)  # added while it was open
    age(incident, 61)
    assert dispatch.send_reminders() == 2
    reminders = Delivery.objects.filter(event=Event.REMINDER)
    assert {r.channel for r in reminders} == {channel, later}


def test_a_test_email_right_after_an_alert_says_when_unisender_takes_the_next(fakes, open_incident):
    [token] = make_tokens(1)
    channel = make_channel("unisender_email")
    assert run(open_incident(token).deliveries.get()).word == "sent"
    ok, answer = send_test(channel)
    assert not ok and "one message per recipient every 1.5 s" in answer
    assert len(fakes.unisender.sends) == 1  # UniSender would have refused it
