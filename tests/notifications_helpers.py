"""Helpers of the notifications tests: the six providers and their test credentials, channels
on them, tokens in bulk. The fixtures are in tests/notifications_fixtures.py."""

from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

from django.db.models import F
from django.utils import timezone

from notifications.backends import BACKENDS
from notifications.models import Channel, Delivery, Incident
from portals.models import AppCredentials, Portal, Token, TokenStatus
from tests.fakes import provider_mandrill as md
from tests.fakes import provider_messagebird as mb
from tests.fakes import provider_telegram as tg
from tests.fakes import provider_twilio as tw
from tests.fakes import provider_unisender as us

PHONE = "+15550100123"
EMAIL = "ann@example.org"
ACCESS_TOKEN = "a1" * 35  # shaped like Bitrix24's 70 hex characters
REFRESH_TOKEN = "b2" * 35


@dataclass(frozen=True)
class Provider:
    fake: str  # attribute of the `fakes` namespace
    setting: str
    credentials: dict[str, str]
    destination: str


PROVIDERS = {
    "twilio": Provider(
        "twilio",
        "TWILIO_API_URL",
        {"account_sid": tw.ACCOUNT_SID, "auth_token": tw.AUTH_TOKEN, "sender": tw.SENDER},
        PHONE,
    ),
    "messagebird": Provider(
        "messagebird",
        "MESSAGEBIRD_API_URL",
        {"access_key": mb.ACCESS_KEY, "originator": mb.ORIGINATOR},
        PHONE,
    ),
    "unisender_sms": Provider(
        "unisender", "UNISENDER_API_URL", {"api_key": us.API_KEY, "sender": us.SMS_SENDER}, PHONE
    ),
    "mandrill": Provider(
        "mandrill",
        "MANDRILL_API_URL",
        {"api_key": md.API_KEY, "from_email": md.FROM_EMAIL, "from_name": md.FROM_NAME},
        EMAIL,
    ),
    "unisender_email": Provider(
        "unisender",
        "UNISENDER_API_URL",
        {
            "api_key": us.API_KEY,
            "sender_email": us.SENDER_EMAIL,
            "sender_name": us.SENDER_NAME,
            "list_id": us.LIST_ID,
        },
        EMAIL,
    ),
    "telegram": Provider("telegram", "TELEGRAM_API_URL", {"bot_token": tg.BOT_TOKEN}, "987654321"),
}
FAKES = {
    "twilio": tw.FakeTwilio,
    "messagebird": mb.FakeMessageBird,
    "unisender": us.FakeUniSender,
    "mandrill": md.FakeMandrill,
    "telegram": tg.FakeTelegram,
}
# Fast settings for the tests, in this process (settings fixture) and in workers (env).
NOTIFY = {
    "NOTIFY_HOLD_SECONDS": 0.3,
    "NOTIFY_MAX_ATTEMPTS": 3,
    "NOTIFY_RETRY_BASE_SECONDS": 0.2,
    "NOTIFY_RETRY_MAX_SECONDS": 0.5,
    "NOTIFY_CONNECT_TIMEOUT": 2.0,
    "NOTIFY_READ_TIMEOUT": 3.0,
    "NOTIFY_STATUS_CHECK_SECONDS": 10.0,
    "NOTIFY_STATUS_CHECK_FIRST_SECONDS": 0.3,
    # UniSender's 60 s between two emails to one address, shortened; its fake keeps the same.
    "UNISENDER_EMAIL_MIN_INTERVAL": 1.5,
}
ADMINS = "Ops Team <ops@example.org>"


def secrets() -> list[str]:
    """Every value that must never show up in a log, a task message or a page."""
    values = [
        PROVIDERS[kind].credentials[c.name]
        for kind, backend in BACKENDS.items()
        for c in backend.credential_fields
        if c.secret
    ]
    return [*values, ACCESS_TOKEN, REFRESH_TOKEN]


def fake_for(fakes: SimpleNamespace, kind: str):
    return getattr(fakes, PROVIDERS[kind].fake)


def make_channel(kind: str, **fields: object) -> Channel:
    provider = PROVIDERS[kind]
    channel = Channel(kind=kind, name=f"{kind} on-call", destination=provider.destination)
    for name, value in fields.items():
        setattr(channel, name, value)
    channel.set_credentials(provider.credentials)
    channel.save()
    return channel


def make_tokens(count: int, owner=None) -> list[Token]:
    """Connected-looking tokens straight in the database: connect() costs ~20 ms each."""
    app = AppCredentials.objects.create(
        name="CRM sync", client_id="local.6a1b2c3d4e5f60.48151623", client_secret="s" * 40
    )
    portals = Portal.objects.bulk_create(
        [Portal(domain=f"p{i}.bitrix24.com") for i in range(count)]
    )
    return Token.objects.bulk_create(
        [
            Token(
                portal=portal,
                app=app,
                reference=f"token-{i}",
                owner=owner,
                status=TokenStatus.REFRESH_FAILING,
                access_token=ACCESS_TOKEN,
                refresh_token=REFRESH_TOKEN,
                failing_since=timezone.now(),
                last_error_code="invalid_grant",
            )
            for i, portal in enumerate(portals)
        ]
    )


def start_fakes() -> SimpleNamespace:
    """All five provider fakes, started (UniSender keeps its interval between emails)."""
    interval = NOTIFY["UNISENDER_EMAIL_MIN_INTERVAL"]
    return SimpleNamespace(
        **{
            name: (fake(email_interval=interval) if name == "unisender" else fake()).start()
            for name, fake in FAKES.items()
        }
    )


def worker_env(fakes: SimpleNamespace, mailbox_url: str = "") -> dict[str, str]:
    env = {name: str(value) for name, value in NOTIFY.items()}
    env.update({p.setting: fake_for(fakes, kind).base_url for kind, p in PROVIDERS.items()})
    if mailbox_url:
        env.update(EMAIL_URL=mailbox_url, ADMINS=ADMINS)
    return env


def age(incident: Incident, minutes: float) -> None:
    """Make an incident, and everything sent about it, `minutes` older."""
    delta = timedelta(minutes=minutes)
    Incident.objects.filter(pk=incident.pk).update(opened_at=F("opened_at") - delta)
    Delivery.objects.filter(incident=incident, sent_at__isnull=False).update(
        sent_at=F("sent_at") - delta
    )


def statuses(**filters: object) -> list[tuple[str, str, str]]:
    rows = Delivery.objects.filter(**filters).order_by("channel__kind", "event", "sequence")
    return list(rows.values_list("channel__kind", "event", "status"))
