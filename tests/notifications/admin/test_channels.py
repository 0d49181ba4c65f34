"""The notifications admin: write-only credentials, destination checks, the test message, the
state of a channel in words, and a constant number of queries per list."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.models import Channel, Delivery, Incident
from tests.fakes import provider_telegram as tg
from tests.fakes import provider_twilio as tw
from tests.notifications_helpers import PHONE, make_channel, make_tokens, secrets

# Fixtures: fakes, notify, owner, workers.
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
CHANNELS = "admin:notifications_channel_changelist"
ADD = "admin:notifications_channel_add"
FORM = {
    "name": "Ann's phone",
    "kind": "twilio",
    "destination": PHONE,
    "enabled": "on",
    "covers_all_tokens": "on",
    "max_per_hour": 20,
    "remind_every_minutes": 0,
    "twilio__account_sid": tw.ACCOUNT_SID,
    "twilio__auth_token": tw.AUTH_TOKEN,
    "twilio__sender": tw.SENDER,
}


def form_errors(response) -> dict[str, list[str]]:
    form = response.context["adminform"].form
    return {name: list(errors) for name, errors in form.errors.items()}


def act(client, action: str, *channels: Channel):
    selected = [channel.pk for channel in channels]
    data = {"action": action, "index": 0, "_selected_action": selected}
    return client.post(reverse(CHANNELS), data, follow=True).content.decode()


def test_the_add_form_offers_each_providers_credentials_write_only(admin_client):
    html = admin_client.get(reverse(ADD)).content.decode()
    for title in ("Twilio credentials", "MessageBird credentials", "Telegram credentials"):
        assert title in html
    assert 'type="password" name="twilio__auth_token"' in html
    assert 'type="text" name="twilio__sender"' in html
    assert 'type="password" name="mandrill__api_key"' in html


def test_a_new_channel_stores_its_credentials_encrypted_and_shows_only_their_end(admin_client):
    response = admin_client.post(reverse(ADD), FORM)
    assert response.status_code == 302, form_errors(response)
    channel = Channel.objects.get()
    assert channel.get_credentials() == {
        "account_sid": tw.ACCOUNT_SID,
        "auth_token": tw.AUTH_TOKEN,
        "sender": tw.SENDER,
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM notifications_channel")
        [(stored,)] = cursor.fetchall()
    assert stored.startswith("gAAAA") and tw.AUTH_TOKEN not in stored
    page = admin_client.get(reverse("admin:notifications_channel_change", args=[channel.pk]))
    html = page.content.decode()
    assert tw.AUTH_TOKEN not in html and "Auth Token: ••••" + tw.AUTH_TOKEN[-4:] in html
    assert "Telegram credentials" not in html  # a saved channel shows its own provider only


def test_a_wrong_destination_is_refused_and_the_error_names_the_field(admin_client):
    response = admin_client.post(reverse(ADD), {**FORM, "destination": "8 (800) 555-01-23"})
    assert form_errors(response) == {
        "destination": [
            "A Twilio channel needs a phone number in E.164 form, such as +15550100123."
        ]
    }
    email = {**FORM, "kind": "telegram", "destination": "ann@example.org"}
    assert (
        "Telegram chat id" in form_errors(admin_client.post(reverse(ADD), email))["destination"][0]
    )


def test_a_missing_credential_is_refused_and_the_error_names_the_field(admin_client):
    response = admin_client.post(reverse(ADD), {**FORM, "twilio__auth_token": ""})
    assert form_errors(response) == {"twilio__auth_token": ["Enter the Twilio Auth Token."]}
    assert not Channel.objects.exists()


def test_a_channel_must_cover_something(admin_client):
    response = admin_client.post(reverse(ADD), {**FORM, "covers_all_tokens": ""})
    assert "covers_all_tokens" in form_errors(response)


def test_an_empty_secret_input_keeps_the_stored_secret(admin_client):
    channel = make_channel("twilio")
    url = reverse("admin:notifications_channel_change", args=[channel.pk])
    data = {**FORM, "twilio__auth_token": "", "twilio__sender": "+15550100777"}
    response = admin_client.post(url, data)
    assert response.status_code == 302, form_errors(response)
    channel.refresh_from_db()
    assert channel.get_credentials()["auth_token"] == tw.AUTH_TOKEN
    assert channel.get_credentials()["sender"] == "+15550100777"


def test_send_test_message_shows_the_providers_answer(admin_client, fakes):
    channel = make_channel("telegram")
    html = act(admin_client, "send_test_message", channel)
    assert "“telegram on-call”: Telegram delivered message 4711 to chat 987654321." in html
    assert "test message from b24keeper" in fakes.telegram.requests[0].body["text"]
    fakes.telegram.fail_next("bot_blocked")
    html = act(admin_client, "send_test_message", channel)
    assert "Telegram says: bot was blocked by the user (403)." in html
    assert "Ask the recipient to unblock the bot" in html
    channel.refresh_from_db()
    assert channel.enabled and "bot was blocked" in channel.last_error  # a test disables nothing


def test_a_test_messages_refusal_is_said_in_russian(admin_client, fakes):
    channel = make_channel("telegram", language="ru")
    admin_client.cookies["django_language"] = "ru"
    fakes.telegram.fail_next("bot_blocked")
    page = act(admin_client, "send_test_message", channel)
    said = re.search(r'<ul class="messagelist">(.*?)</ul>', page, re.S).group(1)
    assert "Ответ Telegram: «bot was blocked by the user» (403)." in said
    assert "Попросите получателя разблокировать бота" in said and "Ask the" not in said
    assert "тестовое сообщение" in fakes.telegram.requests[0].body["text"]  # the channel's


def test_a_channel_disabled_by_an_error_shows_why_and_enable_clears_it(admin_client, broker_url):
    channel = make_channel(
        "twilio", enabled=False, disabled_reason="Twilio says: Authenticate (20003).",
        disabled_at=timezone.now(),
    )  # fmt: skip
    html = admin_client.get(reverse(CHANNELS)).content.decode()
    assert "disabled by an error" in html and "Twilio says: Authenticate (20003)." in html
    change = reverse("admin:notifications_channel_change", args=[channel.pk])
    assert "Twilio says: Authenticate (20003)." in admin_client.get(change).content.decode()
    assert "1 channel enabled." in act(admin_client, "enable", channel)
    channel.refresh_from_db()
    assert channel.enabled and channel.disabled_reason == "" and channel.disabled_at is None


def list_queries(client, name: str, query: str = "") -> int:
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse(name) + query)
    assert page.status_code == 200
    return len(queries)


def add_rows(count: int) -> None:
    tokens = make_tokens(count)
    for i, token in enumerate(tokens):
        channel = make_channel("telegram" if i % 2 else "twilio", covers_all_tokens=False)
        channel.tokens.add(token)
        channel.portals.add(token.portal)
        incident = Incident.objects.create(token=token, message="failing")
        Delivery.objects.create(incident=incident, channel=channel, event="opened")


def test_every_list_costs_the_same_queries_for_2_or_20_rows(admin_client, notify):
    lists = [
        (CHANNELS, ""),
        ("admin:notifications_delivery_changelist", ""),
        ("admin:notifications_incident_changelist", "?state=open"),
    ]
    add_rows(2)
    few = [list_queries(admin_client, name, query) for name, query in lists]
    Channel.objects.all().delete()
    Incident.objects.all().delete()
    from portals.models import AppCredentials, Portal, Token

    Token.objects.all().delete()
    Portal.objects.all().delete()
    AppCredentials.objects.all().delete()
    add_rows(20)
    assert [list_queries(admin_client, name, query) for name, query in lists] == few


def test_no_admin_page_shows_a_credential_or_a_token(admin_client, notify):
    tokens = make_tokens(1)
    channels = [make_channel(kind) for kind in ("twilio", "telegram", "mandrill", "unisender_sms")]
    incident = Incident.objects.create(token=tokens[0], message="failing")
    delivery = Delivery.objects.create(incident=incident, channel=channels[1], event="opened")
    pages = [
        reverse(CHANNELS),
        reverse(ADD),
        *(reverse("admin:notifications_channel_change", args=[c.pk]) for c in channels),
        reverse("admin:notifications_delivery_changelist"),
        reverse("admin:notifications_delivery_changelist") + f"?incident__id__exact={incident.pk}",
        reverse("admin:notifications_delivery_change", args=[delivery.pk]),
        reverse("admin:notifications_incident_changelist"),
        reverse("admin:notifications_incident_change", args=[incident.pk]),
    ]
    for url in pages:
        page = admin_client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        leaked = [secret for secret in secrets() if secret in html]
        assert not leaked, f"{url} shows {leaked}"
    assert tg.BOT_TOKEN[-4:] in admin_client.get(pages[3]).content.decode()  # the masked end


def test_a_channel_whose_credentials_cannot_be_decrypted_still_opens(admin_client):
    channel = make_channel("telegram")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE notifications_channel SET credentials = 'gAAAAAgarbage'")
    page = admin_client.get(reverse("admin:notifications_channel_change", args=[channel.pk]))
    assert page.status_code == 200
    assert "cannot be decrypted with any key in ENCRYPTION_KEYS" in page.content.decode()
    assert admin_client.get(reverse(CHANNELS)).status_code == 200


def test_a_form_error_keeps_the_typed_secret_without_showing_it(admin_client):
    response = admin_client.post(reverse(ADD), {**FORM, "name": ""})
    html = response.content.decode()
    assert "name" in form_errors(response) and tw.AUTH_TOKEN not in html
    assert "Kept from your last attempt" in html
    kept = re.search(r'name="twilio__auth_token__kept" value="([^"]+)"', html).group(1)
    again = {**FORM, "twilio__auth_token": "", "twilio__auth_token__kept": kept}
    assert admin_client.post(reverse(ADD), again).status_code == 302
    assert Channel.objects.get().get_credentials()["auth_token"] == tw.AUTH_TOKEN
    forged = {**again, "name": "other", "twilio__auth_token__kept": "gAAAA-not-ours"}
    assert "twilio__auth_token" in form_errors(admin_client.post(reverse(ADD), forged))


@pytest.mark.parametrize("typed", ["+1 555 010-0123", "001 (555) 010 01 23", "+1.555.010.0123"])
def test_a_phone_number_with_spaces_is_stored_in_e164(admin_client, typed):
    response = admin_client.post(reverse(ADD), {**FORM, "destination": typed})
    assert response.status_code == 302, form_errors(response)
    assert Channel.objects.get().destination == "+15550100123"


def test_a_channel_speaks_the_language_chosen_for_it(admin_client, settings):
    settings.NOTIFY_LANGUAGE = "ru"
    assert admin_client.post(reverse(ADD), FORM).status_code == 302
    assert Channel.objects.get().language == "ru"  # not chosen: NOTIFY_LANGUAGE
    Channel.objects.all().delete()
    assert admin_client.post(reverse(ADD), {**FORM, "language": "en"}).status_code == 302
    assert Channel.objects.get().language == "en"
