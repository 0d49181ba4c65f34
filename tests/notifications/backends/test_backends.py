"""Notification backends against wire-level fake providers (tests/fakes/provider_*.py).

Backends are plain classes, so no test here touches the database. Each test points the
backend's base-URL setting at a fake through pytest-django's `settings` fixture, the same code
path as production; each fake fails the test if it saw a request the provider would not accept.
"""

import logging
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.conf import settings as django_settings

from notifications.backends import (
    BACKENDS,
    Backend,
    ConfigurationError,
    DeliveryError,
    Message,
    PermanentDeliveryError,
    TransientDeliveryError,
    get_backend,
    gsm7_safe,
)
from notifications.backends.base import DESTINATIONS, GSM7_CHARACTERS, parse_retry_after
from tests.fakes import provider_mandrill as md
from tests.fakes import provider_messagebird as mb
from tests.fakes import provider_telegram as tg
from tests.fakes import provider_twilio as tw
from tests.fakes import provider_unisender as us
from tests.fakes.providers import FakeProviderServer, basic_auth

PHONE = "+15550100123"
EMAIL = "ann@example.org"
MESSAGE = Message(
    subject="OAuth refresh failed for acme.bitrix24.com",
    text="The token of acme.bitrix24.com could not be refreshed: invalid_grant.\n"
    "Open https://keeper.example.com/portals/1/ to re-connect it.",
    sms_text="b24keeper: token refresh failed for acme.bitrix24.com (invalid_grant).",
)


@dataclass(frozen=True)
class Channel:
    fake: type[FakeProviderServer]
    setting: str
    credentials: dict[str, str]
    destination: str


CHANNELS = {
    "twilio": Channel(
        tw.FakeTwilio,
        "TWILIO_API_URL",
        {"account_sid": tw.ACCOUNT_SID, "auth_token": tw.AUTH_TOKEN, "sender": tw.SENDER},
        PHONE,
    ),
    "messagebird": Channel(
        mb.FakeMessageBird,
        "MESSAGEBIRD_API_URL",
        {"access_key": mb.ACCESS_KEY, "originator": mb.ORIGINATOR},
        PHONE,
    ),
    "unisender_sms": Channel(
        us.FakeUniSender,
        "UNISENDER_API_URL",
        {"api_key": us.API_KEY, "sender": us.SMS_SENDER},
        PHONE,
    ),
    "mandrill": Channel(
        md.FakeMandrill,
        "MANDRILL_API_URL",
        {"api_key": md.API_KEY, "from_email": md.FROM_EMAIL, "from_name": md.FROM_NAME},
        EMAIL,
    ),
    "unisender_email": Channel(
        us.FakeUniSender,
        "UNISENDER_API_URL",
        {
            "api_key": us.API_KEY,
            "sender_email": us.SENDER_EMAIL,
            "sender_name": us.SENDER_NAME,
            "list_id": us.LIST_ID,
        },
        EMAIL,
    ),
    "telegram": Channel(
        tg.FakeTelegram, "TELEGRAM_API_URL", {"bot_token": tg.BOT_TOKEN}, str(tg.CHAT_ID)
    ),
}
SMS_KINDS = ("twilio", "messagebird", "unisender_sms")


def backend(kind: str, destination: str | None = None, **credentials: str) -> Backend:
    channel = CHANNELS[kind]
    return get_backend(
        kind, {**channel.credentials, **credentials}, destination or channel.destination
    )


def secrets_of(kind: str) -> list[str]:
    fields = BACKENDS[kind].credential_fields
    return [CHANNELS[kind].credentials[f.name] for f in fields if f.secret]


@pytest.fixture(autouse=True)
def short_timeouts(settings):
    settings.NOTIFY_CONNECT_TIMEOUT = 2.0
    settings.NOTIFY_READ_TIMEOUT = 3.0


@pytest.fixture
def start_fake(settings) -> Iterator[Callable[[str], FakeProviderServer]]:
    started: list[FakeProviderServer] = []

    def start(kind: str) -> FakeProviderServer:
        channel = CHANNELS[kind]
        fake = channel.fake().start()
        started.append(fake)
        setattr(settings, channel.setting, fake.base_url)
        return fake

    yield start
    for fake in started:
        fake.stop()
    for fake in started:
        fake.assert_clean()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- success: the id comes back and the fake saw exactly the expected request -------------
def test_it_sends_an_sms_through_twilio(start_fake):
    fake = start_fake("twilio")
    result = backend("twilio").send(MESSAGE)
    [request] = fake.requests
    assert result.provider_message_id == fake.replies[0].body["sid"]
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{tw.ACCOUNT_SID}/Messages.json"
    assert basic_auth(request) == (tw.ACCOUNT_SID, tw.AUTH_TOKEN)
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.body == {"To": PHONE, "From": tw.SENDER, "Body": MESSAGE.sms_text}
    assert result.detail == "Twilio accepted the SMS: status queued, 1 segment(s)."


def test_it_sends_through_a_twilio_messaging_service(start_fake):
    fake = start_fake("twilio")
    backend("twilio", sender=tw.MESSAGING_SERVICE_SID).send(MESSAGE)
    assert fake.requests[0].body["MessagingServiceSid"] == tw.MESSAGING_SERVICE_SID
    assert "From" not in fake.requests[0].body


def test_it_sends_an_sms_through_messagebird(start_fake):
    fake = start_fake("messagebird")
    result = backend("messagebird").send(MESSAGE)
    [request] = fake.requests
    assert result.provider_message_id == fake.replies[0].body["id"]
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.header("Authorization") == f"AccessKey {mb.ACCESS_KEY}"
    assert request.content_type == "application/json"
    assert request.body == {
        "originator": mb.ORIGINATOR,
        "recipients": ["15550100123"],
        "body": MESSAGE.sms_text,
    }


def test_it_sends_an_sms_through_unisender(start_fake):
    fake = start_fake("unisender_sms")
    result = backend("unisender_sms").send(MESSAGE)
    [request] = fake.requests
    assert result.provider_message_id == fake.replies[0].body["result"]["sms_id"]
    assert (request.method, request.path, request.query) == (
        "POST",
        "/en/api/sendSms",
        {"format": "json"},
    )
    assert request.body == {
        "api_key": us.API_KEY,
        "phone": "15550100123",
        "sender": us.SMS_SENDER,
        "text": MESSAGE.sms_text,
    }


def test_it_sends_an_email_through_mandrill_without_touching_the_site_mail_backend(
    start_fake, mailoutbox
):
    fake = start_fake("mandrill")
    result = backend("mandrill").send(MESSAGE)
    [request] = fake.requests
    assert result.provider_message_id == fake.replies[0].body[0]["_id"]
    assert result.detail == "Mandrill sent the email."
    assert (request.method, request.path) == ("POST", "/api/1.0/messages/send.json")
    assert request.content_type == "application/json"
    assert request.body == {
        "key": md.API_KEY,
        "message": {
            "from_email": md.FROM_EMAIL,
            "from_name": md.FROM_NAME,
            "to": [{"email": EMAIL, "type": "to"}],
            "subject": MESSAGE.subject,
            "text": MESSAGE.text,
            "track_opens": False,
            "track_clicks": False,
        },
    }
    assert mailoutbox == []


def test_it_sends_the_html_part_through_mandrill(start_fake):
    fake = start_fake("mandrill")
    backend("mandrill").send(Message("Subject", "plain", "sms", html="<p>html</p>"))
    assert fake.requests[0].body["message"]["html"] == "<p>html</p>"


def test_it_sends_an_email_through_unisender(start_fake):
    fake = start_fake("unisender_email")
    result = backend("unisender_email").send(MESSAGE)
    [request] = fake.requests
    assert result.provider_message_id == fake.replies[0].body["result"][0]["id"]
    assert (request.path, request.query) == ("/en/api/sendEmail", {"format": "json"})
    assert request.body == {
        "api_key": us.API_KEY,
        "email": EMAIL,
        "sender_name": us.SENDER_NAME,
        "sender_email": us.SENDER_EMAIL,
        "subject": MESSAGE.subject,
        "body": "<p>The token of acme.bitrix24.com could not be refreshed: invalid_grant.<br>"
        "Open https://keeper.example.com/portals/1/ to re-connect it.</p>",
        "list_id": us.LIST_ID,
        "error_checking": "1",
        "track_read": "0",
        "track_links": "0",
    }


def test_it_sends_a_telegram_message(start_fake):
    fake = start_fake("telegram")
    result = backend("telegram").send(MESSAGE)
    [request] = fake.requests
    assert result.provider_message_id == f"{tg.CHAT_ID}:4711"
    assert (request.method, request.path) == ("POST", f"/bot{tg.BOT_TOKEN}/sendMessage")
    assert request.content_type == "application/json"
    assert request.body == {
        "chat_id": tg.CHAT_ID,
        "text": MESSAGE.text,
        "link_preview_options": {"is_disabled": True},
    }


def test_it_sends_to_a_telegram_channel_by_name(start_fake):
    fake = start_fake("telegram")
    backend("telegram", destination="@acme_oncall").send(MESSAGE)
    assert fake.requests[0].body["chat_id"] == "@acme_oncall"


def test_it_cuts_a_telegram_text_to_the_limit(start_fake):
    fake = start_fake("telegram")
    backend("telegram").send(Message("s", "x" * 5000, "sms"))
    assert len(fake.requests[0].body["text"]) == 4096


# --- documented permanent errors -----------------------------------------------------------
PERMANENT = [
    *[
        ("twilio", kind, str(tw.FakeTwilio.errors[kind][1]))
        for kind in tw.FakeTwilio.errors
        if kind != "too_many_requests"
    ],
    *[
        ("messagebird", kind, str(errors[0][0]))
        for kind, (_, errors) in mb.FakeMessageBird.errors.items()
    ],
    *[
        (kind, code, code)
        for kind in ("unisender_sms", "unisender_email")
        for code in (
            "invalid_api_key",
            "access_denied",
            "unknown_method",
            "invalid_arg",
            "not_enough_money",
            "unspecified",
            "dest_invalid",
            "src_invalid",
            "unsubscribed_globally",
        )
    ],
    ("unisender_email", "unchecked_sender_email", "unchecked_sender_email"),
    ("mandrill", "invalid_key", "Invalid_Key"),
    ("mandrill", "invalid_key_401", "Invalid_Key"),
    ("mandrill", "validation_error", "ValidationError"),
    ("mandrill", "payment_required", "PaymentRequired"),
    ("mandrill", "unknown_subaccount", "Unknown_Subaccount"),
    ("mandrill", "rejected", "hard-bounce"),
    ("mandrill", "invalid", "invalid"),
    *[
        ("telegram", kind, str(status))
        for kind, (status, _) in tg.FakeTelegram.errors.items()
        if kind != "migrated"
    ],
]


@pytest.mark.parametrize(("kind", "fault", "code"), PERMANENT)
def test_it_raises_permanent_for_a_documented_refusal(start_fake, kind, fault, code):
    start_fake(kind).fail_next(fault)
    with pytest.raises(PermanentDeliveryError) as info:
        backend(kind).send(MESSAGE)
    assert info.value.code == code
    assert info.value.permanent is True
    assert info.value.advice  # every refusal tells a person what to do


@pytest.mark.parametrize(
    ("kind", "credential", "code"),
    [
        ("twilio", {"auth_token": "wrong-token-0000"}, "20003"),
        ("twilio", {"account_sid": "AC" + "f" * 32}, "20404"),
        ("messagebird", {"access_key": "wrong-key-0000"}, "2"),
        ("unisender_sms", {"api_key": "wrong-key-0000"}, "invalid_api_key"),
        ("unisender_email", {"api_key": "wrong-key-0000"}, "invalid_api_key"),
        ("mandrill", {"api_key": "wrong-key-0000"}, "Invalid_Key"),
        ("telegram", {"bot_token": "123456789:AAWrongTokenxxxxxxxxxxxxxxxxxxxxxxx"}, "401"),
        ("telegram", {"bot_token": "not-a-token"}, "404"),
    ],
)
def test_it_raises_permanent_when_the_provider_refuses_the_credentials(
    start_fake, kind, credential, code
):
    start_fake(kind)
    with pytest.raises(PermanentDeliveryError) as info:
        backend(kind, **credential).send(MESSAGE)
    assert info.value.code == code


def test_it_explains_a_blocked_bot_to_a_person(start_fake):
    start_fake("telegram").fail_next("bot_blocked")
    with pytest.raises(PermanentDeliveryError) as info:
        backend("telegram").send(MESSAGE)
    assert str(info.value) == (
        "Telegram says: bot was blocked by the user (403). Ask the recipient to unblock the "
        "bot, then re-enable this channel."
    )


def test_it_reports_every_messagebird_error_of_one_answer(start_fake):
    start_fake("messagebird").fail_next("two_errors")
    with pytest.raises(PermanentDeliveryError) as info:
        backend("messagebird").send(MESSAGE)
    assert info.value.description == "no (correct) recipients found; originator is too long"


def test_it_unescapes_unisender_error_texts(start_fake):
    start_fake("unisender_sms").fail_next("invalid_arg")
    with pytest.raises(PermanentDeliveryError) as info:
        backend("unisender_sms").send(MESSAGE)
    assert '"sender"' in info.value.description


# --- transient errors ----------------------------------------------------------------------
RATE_LIMIT_CODES = {
    "twilio": "20429",
    "messagebird": "429",
    "unisender_sms": "api_call_limit_exceeded_for_api_key",
    "unisender_email": "api_call_limit_exceeded_for_api_key",
    "mandrill": "RequestLimitExceeded",
    "telegram": "429",
}
TRANSIENT = [
    *[(kind, "rate_limited", code) for kind, code in RATE_LIMIT_CODES.items()],
    *[(kind, "server_error", "http_502") for kind in CHANNELS],
    *[(kind, "garbage", "http_200") for kind in CHANNELS],
    *[(kind, "disconnect", "connection_error") for kind in CHANNELS],
    ("twilio", "too_many_requests", "20429"),
    ("unisender_sms", "retry_later", "retry_later"),
    ("unisender_sms", "api_call_limit_exceeded_for_ip", "api_call_limit_exceeded_for_ip"),
    ("unisender_sms", "has_been_sent", "has_been_sent"),
    ("unisender_email", "retry_later", "retry_later"),
    ("mandrill", "general_error", "GeneralError"),
    ("mandrill", "service_unavailable", "ServiceUnavailable"),
    ("mandrill", "plain_text_error", "http_500"),
]


@pytest.mark.parametrize(("kind", "fault", "code"), TRANSIENT)
def test_it_raises_transient_for_a_passing_failure(start_fake, kind, fault, code):
    start_fake(kind).fail_next(fault)
    with pytest.raises(TransientDeliveryError) as info:
        backend(kind).send(MESSAGE)
    assert info.value.code == code
    assert info.value.permanent is False


@pytest.mark.parametrize("kind", CHANNELS)
def test_it_raises_transient_when_the_provider_does_not_answer_in_time(start_fake, settings, kind):
    settings.NOTIFY_READ_TIMEOUT = 0.2
    start_fake(kind).fail_next("timeout", delay=1.5)
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError) as info:
        backend(kind).send(MESSAGE)
    assert info.value.code == "read_timeout"
    assert "may have been delivered" in str(info.value)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("kind", CHANNELS)
def test_it_raises_transient_when_the_provider_cannot_be_reached(settings, kind):
    setattr(settings, CHANNELS[kind].setting, _closed_port_url())
    with pytest.raises(TransientDeliveryError) as info:
        backend(kind).send(MESSAGE)
    assert info.value.code == "connection_error"
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize(
    ("kind", "fault", "options", "seconds"),
    [
        ("twilio", "rate_limited", {"retry_after": 7}, 7.0),
        ("messagebird", "rate_limited", {"retry_after": 7}, 7.0),
        ("mandrill", "rate_limited", {"retry_after": 7}, 7.0),
        ("telegram", "rate_limited", {"retry_after": 35}, 35.0),
        ("unisender_sms", "api_call_limit_exceeded_for_api_key", {}, 60.0),
        ("unisender_sms", "has_been_sent", {}, 60.0),
        ("twilio", "server_error", {}, None),
    ],
)
def test_it_honours_the_wait_the_provider_asks_for(start_fake, kind, fault, options, seconds):
    fake = start_fake(kind)
    fake.fail_next(fault, **options)
    with pytest.raises(TransientDeliveryError) as info:
        backend(kind).send(MESSAGE)
    assert info.value.retry_after == seconds


def test_it_reads_retry_after_as_seconds_or_a_date():
    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("120") == 120.0
    assert 25 <= parse_retry_after(in_30_s) <= 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- provider-specific answers -------------------------------------------------------------
def test_it_resends_once_to_a_migrated_telegram_supergroup(start_fake):
    fake = start_fake("telegram")
    fake.fail_next("migrated", new_chat_id=tg.SUPERGROUP_ID)
    result = backend("telegram").send(MESSAGE)
    assert [r.body["chat_id"] for r in fake.requests] == [tg.CHAT_ID, tg.SUPERGROUP_ID]
    assert result.new_destination == str(tg.SUPERGROUP_ID)
    assert result.provider_message_id.startswith(f"{tg.SUPERGROUP_ID}:")


def test_it_gives_up_when_a_telegram_chat_migrates_twice(start_fake):
    fake = start_fake("telegram")
    fake.fail_next("migrated")
    fake.fail_next("migrated")
    with pytest.raises(PermanentDeliveryError):
        backend("telegram").send(MESSAGE)
    assert len(fake.requests) == 2


def test_it_counts_a_mandrill_email_queued_for_the_hourly_quota_as_sent_but_delayed(start_fake):
    start_fake("mandrill").fail_next("queued")
    result = backend("mandrill").send(MESSAGE)
    assert result.provider_message_id
    assert result.detail == "Mandrill queued the email (hourly-quota-exhausted)."
    assert result.delayed.startswith("Mandrill holds the email back (hourly-quota-exhausted)")


@pytest.mark.parametrize(
    "reason",
    [
        "account-suspended",
        "sending-suspended",
        "sending-paused",
        "free-trial-sends-exhausted",
        "monthly-limit-reached",
    ],
)
def test_it_raises_permanent_for_a_mandrill_email_queued_by_an_account_that_cannot_send(
    start_fake, reason
):
    start_fake("mandrill").fail_next("queued", queued_reason=reason)
    with pytest.raises(PermanentDeliveryError) as info:
        backend("mandrill").send(MESSAGE)
    assert info.value.code == reason and "re-enable" in str(info.value)


def test_it_sends_a_non_ascii_mandrill_sender_name_as_written(start_fake):
    fake = start_fake("mandrill")
    backend("mandrill", from_name="Служба «Оповещения», Acme").send(MESSAGE)
    message = fake.sends[0].body["message"]
    assert (message["from_name"], message["from_email"]) == (
        "Служба «Оповещения», Acme",
        md.FROM_EMAIL,
    )  # and the fake saw no RFC 2047 encoded word


def test_it_raises_transient_for_an_unknown_unisender_per_recipient_error(start_fake):
    start_fake("unisender_email").fail_next("unknown_recipient_error")
    with pytest.raises(TransientDeliveryError) as info:
        backend("unisender_email").send(MESSAGE)
    assert info.value.code == "too_frequent" and info.value.retry_after == 60


# --- delivery status: what became of a message the provider accepted ---------------------
STATUS_KINDS = ("twilio", "messagebird", "unisender_sms", "mandrill", "unisender_email")


@pytest.mark.parametrize("kind", STATUS_KINDS)
def test_it_reads_the_providers_delivery_status(start_fake, kind):
    fake = start_fake(kind)
    fake.fate_next("delivered", polls=1)
    sender = backend(kind)
    message_id = sender.send(MESSAGE).provider_message_id
    assert sender.check(message_id).state == "pending"
    assert sender.check(message_id).state == "delivered"
    assert len(fake.status_requests) == 2


@pytest.mark.parametrize("kind", STATUS_KINDS)
def test_it_classifies_an_undelivered_message_by_the_providers_reason(start_fake, kind):
    fake = start_fake(kind)
    fake.fate_next("undelivered")  # the fake's default reason: passing (full mailbox, …)
    sender = backend(kind)
    report = sender.check(sender.send(MESSAGE).provider_message_id)
    assert report.state == "undelivered" and isinstance(report.error, TransientDeliveryError)
    assert report.detail.startswith(f"{BACKENDS[kind].label} could not deliver it: ")


def test_it_reads_twilios_carrier_error_code(start_fake):
    fake = start_fake("twilio")
    fake.fate_next("undelivered", code=30006, message="Landline or unreachable carrier")
    sender = backend("twilio")
    report = sender.check(sender.send(MESSAGE).provider_message_id)
    assert isinstance(report.error, PermanentDeliveryError) and report.error.code == "30006"
    assert "Landline or unreachable carrier (30006). The number is a landline" in report.detail
    request = fake.status_requests[0]
    assert request.method == "GET" and basic_auth(request) == (tw.ACCOUNT_SID, tw.AUTH_TOKEN)


def test_it_raises_when_the_provider_does_not_know_the_message(start_fake):
    start_fake("twilio")
    with pytest.raises(PermanentDeliveryError) as info:
        backend("twilio").check("SM" + "0" * 32)
    assert info.value.code == "20404"


def test_it_names_the_mandrill_reject_reason(start_fake):
    start_fake("mandrill").fail_next("rejected", reason="unsigned")
    with pytest.raises(PermanentDeliveryError) as info:
        backend("mandrill").send(MESSAGE)
    assert info.value.code == "unsigned"
    assert "SPF/DKIM" in str(info.value)


def test_it_accepts_the_unisender_email_answer_without_error_checking(start_fake):
    start_fake("unisender_email").fail_next("legacy_email_id")
    assert backend("unisender_email").send(MESSAGE).provider_message_id == "95381246377"


def test_it_passes_on_unisender_warnings(start_fake):
    start_fake("unisender_email").fail_next("with_warning")
    result = backend("unisender_email").send(MESSAGE)
    assert result.detail.endswith("Warning: slow & steady.")


# --- SMS text ------------------------------------------------------------------------------
def test_it_makes_sms_text_gsm7_safe():
    text = "“Токен” истёк —\u00a0щит… ok 🚀 ‘x’ Łódź"
    assert gsm7_safe(text) == "\"Token\" istek - shchit... ok  'x' Lodz"
    assert set(gsm7_safe(text)) <= GSM7_CHARACTERS


def test_it_leaves_gsm7_text_alone():
    text = "Ça: 5€ [ok] {x} ~^|\\ @£$¥ èéùìò ÄÖÑÜ äöñüà §¿¡ ΔΦΓΛΩΠΨΣΘΞ\n"
    assert gsm7_safe(text) == text


@pytest.mark.parametrize("kind", SMS_KINDS)
def test_it_sends_sms_as_gsm7(start_fake, kind):
    fake = start_fake(kind)
    backend(kind).send(Message("s", "t", sms_text="Токен “acme” истёк — 🚀"))
    sent = [v for v in fake.requests[0].body.values() if "Token" in str(v)]
    assert sent == ['Token "acme" istek - ']  # and the fake checked it is GSM-7


# --- configuration -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "field"),
    [(k, f.name) for k, b in BACKENDS.items() for f in b.credential_fields if f.required],
)
def test_it_refuses_a_missing_credential_by_name(kind, field):
    credentials = {**CHANNELS[kind].credentials, field: "  "}
    with pytest.raises(ConfigurationError, match=field):
        get_backend(kind, credentials, CHANNELS[kind].destination)


@pytest.mark.parametrize(
    ("kind", "destination"),
    [
        ("twilio", "15550100123"),
        ("messagebird", "+1 555 0100"),
        ("mandrill", "ann@"),
        ("unisender_email", "not an address"),
        ("telegram", "ann"),
    ],
)
def test_it_refuses_a_malformed_destination(kind, destination):
    with pytest.raises(ConfigurationError, match="not a valid"):
        backend(kind, destination=destination)


def test_it_refuses_an_unset_base_url_by_setting_name(settings):
    settings.TELEGRAM_API_URL = ""
    with pytest.raises(ConfigurationError, match="TELEGRAM_API_URL"):
        backend("telegram")


def test_it_refuses_an_unknown_kind():
    with pytest.raises(ConfigurationError, match="sms77"):
        get_backend("sms77", {}, PHONE)


def test_it_registers_six_described_backends():
    assert set(BACKENDS) == set(CHANNELS)
    for kind, backend_class in BACKENDS.items():
        assert backend_class.kind == kind
        assert backend_class.label and backend_class.destination_kind in DESTINATIONS
        assert any(f.secret for f in backend_class.credential_fields)
        assert all(f.label and f.help_text for f in backend_class.credential_fields)
        assert hasattr(django_settings, backend_class.api_url_setting)


# --- secrets never leak --------------------------------------------------------------------
@pytest.mark.parametrize("kind", CHANNELS)
def test_it_keeps_credentials_out_of_errors_and_logs(start_fake, settings, caplog, kind):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    settings.NOTIFY_READ_TIMEOUT = 0.2
    fake = start_fake(kind)
    texts = [repr(backend(kind)), str(backend(kind).send(MESSAGE))]
    permanent = next(fault for k, fault, _ in PERMANENT if k == kind)
    for fault in ("rate_limited", "server_error", "garbage", "disconnect", "timeout", permanent):
        fake.fail_next(fault)
        texts += _failure_texts(backend(kind))
    setattr(settings, CHANNELS[kind].setting, _closed_port_url())
    texts += _failure_texts(backend(kind))
    logged = "\n".join([caplog.text, *(r.getMessage() for r in caplog.records)])
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the log was on
    for secret in secrets_of(kind):
        assert secret not in logged
        assert not [text for text in texts if secret in text]


def _failure_texts(sender: Backend) -> list[str]:
    with pytest.raises(DeliveryError) as info:
        sender.send(MESSAGE)
    error = info.value
    return [str(error), repr(error), "".join(traceback.format_exception(error))]
