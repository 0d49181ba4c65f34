"""What alerts say: short GSM-7 SMS, fuller email and Telegram texts, English and Russian."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from notifications.delivery import messages
from notifications.models import Channel, Delivery, Incident
from portals.models import Token
from tests.fakes.providers import is_gsm7, sms_segments
from tests.notifications_helpers import make_tokens

# Fixtures: fakes, notify, owner, workers.
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
Event = Delivery.Event
User = get_user_model()
DESCRIPTION = "Bitrix24 answered invalid_grant (refresh token expired). Re-connect the portal."


@pytest.fixture
def token(owner, notify) -> Token:
    [token] = make_tokens(1, owner=owner)
    Token.objects.filter(pk=token.pk).update(
        failing_since=timezone.now() - timedelta(hours=3, minutes=5)
    )
    return Token.objects.select_related("portal", "owner").get()


def incident_of(token: Token, **fields: object) -> Incident:
    values = {"error_code": "invalid_grant", "message": DESCRIPTION, "permanent": True}
    values |= {"occurrences": 12, **fields}
    return Incident.objects.create(token=token, **values)


def digest(deliveries: list[Delivery]):
    from notifications.delivery.digests import digest

    return digest(deliveries)


def text_of(incident: Incident, event: str = Event.OPENED):
    return messages.single(Delivery(incident=incident, event=event))


def test_an_alert_says_what_failed_since_when_who_answers_for_it_and_what_to_do(token):
    message = text_of(incident_of(token))
    assert message.subject == "Bitrix24 token “token-0” of p0.bitrix24.com cannot be refreshed"
    text = message.text
    assert "b24keeper cannot refresh the Bitrix24 token “token-0” of p0.bitrix24.com." in text
    assert "Responsible: Ann Smith <ann@example.org>" in text
    # Bitrix24's words, labelled as theirs; the advice once, not again inside the quote.
    assert "What failed: invalid_grant — Bitrix24's words: “refresh token expired”" in text
    assert text.count("Re-connect the portal") == 1
    since = timezone.localtime(token.failing_since).strftime("%Y-%m-%d %H:%M")
    assert f"Failing since: {since} UTC (12 failed attempts)" in text
    assert "What to do: Re-connect the portal: press “Re-connect now” on the token's page" in text
    assert f"Token page: https://keeper.example.com/admin/portals/token/{token.pk}/change/" in text


def test_the_sms_is_one_gsm7_part_with_the_essentials(token):
    sms = text_of(incident_of(token)).sms_text
    assert sms == (
        "b24keeper: token token-0 (p0.bitrix24.com) cannot be refreshed: invalid_grant. "
        f"Owner: Ann Smith. https://keeper.example.com/admin/portals/token/{token.pk}/change/"
    )
    assert is_gsm7(sms) and len(sms) <= 160


def test_a_long_sms_drops_its_link_before_its_words(token):
    Token.objects.filter(pk=token.pk).update(reference="x" * 90)
    token.refresh_from_db()
    sms = text_of(incident_of(token)).sms_text
    assert len(sms) <= 160 and "https://" not in sms and "cannot be refreshed" in sms


def test_a_transient_failure_advises_to_wait(token):
    incident = incident_of(token, permanent=False, error_code="INTERNAL_SERVER_ERROR")
    assert "What to do: Nothing yet: b24keeper keeps retrying." in text_of(incident).text


def test_a_token_without_an_owner_says_so(token):
    Token.objects.update(owner=None)
    token.refresh_from_db()
    assert (
        "Responsible: nobody (set an owner on the token page)" in text_of(incident_of(token)).text
    )


def test_a_reminder_says_for_how_long_and_a_recovery_that_nothing_is_left_to_do(token):
    incident = incident_of(token)
    reminder = text_of(incident, Event.REMINDER)
    assert reminder.subject.startswith("Reminder: ")
    assert "still cannot be refreshed, for 3\xa0hours, 5\xa0minutes now." in reminder.text
    Incident.objects.update(resolved_at=timezone.now())
    incident.refresh_from_db()
    resolved = text_of(incident, Event.RESOLVED)
    assert (
        resolved.subject == "Resolved: Bitrix24 token “token-0” of p0.bitrix24.com refreshes again"
    )
    assert "Nothing to do." in resolved.text and "It failed from " in resolved.text
    assert resolved.sms_text.startswith(
        "b24keeper: token token-0 (p0.bitrix24.com) refreshes again."
    )


def test_an_outage_has_its_own_text(notify):
    outage = Incident.objects.create(
        kind=Incident.Kind.OUTAGE,
        error_code="INTERNAL_SERVER_ERROR",
        message="503",
        affected_tokens=40,
    )
    message = text_of(outage)
    assert message.subject == "Bitrix24 authorization server outage: 40 tokens fail"
    assert "Affected tokens: 40" in message.text
    assert (
        "Open incidents: https://keeper.example.com/admin/notifications/incident/?state=open"
        in (message.text)
    )
    assert is_gsm7(message.sms_text) and "outage, 40 tokens fail" in message.sms_text


def test_a_digest_counts_and_lists_the_incidents(owner, notify):
    tokens = make_tokens(40, owner=owner)
    deliveries = [Delivery(incident=incident_of(t), event=Event.RESOLVED) for t in tokens[:5]]
    deliveries += [
        Delivery(
            incident=incident_of(t, permanent=False, error_code="INTERNAL_SERVER_ERROR"),
            event=Event.OPENED,
        )
        for t in tokens[5:40]
    ]
    message = digest(deliveries)
    assert message.subject == "b24keeper: 35 new failures, 5 recovered."
    assert "New failures (35):" in message.text and "Recovered (5):" in message.text
    new = "- p39.bitrix24.com / token-39 — INTERNAL_SERVER_ERROR — owner: Ann Smith"
    assert message.text.index(new) < message.text.index("token-38 —")  # newest first
    assert "- p0.bitrix24.com / token-0 — invalid_grant — owner: Ann Smith" in message.text
    assert message.sms_text == (
        "b24keeper: 35 new failures, 5 recovered. "
        "https://keeper.example.com/admin/notifications/incident/?state=open"
    )


def test_alerts_speak_russian_when_asked(token, settings):
    settings.NOTIFY_LANGUAGE = "ru"
    incident = incident_of(token)
    message = text_of(incident)
    assert (
        message.subject == "Не удаётся обновить токен Битрикс24 «token-0» портала p0.bitrix24.com"
    )
    assert "Ответственный: Ann Smith <ann@example.org>" in message.text
    assert "(12 неудачных попыток)" in message.text
    assert "Что делать: Переподключите портал" in message.text
    assert is_gsm7(message.sms_text) and len(message.sms_text) <= 160
    assert message.sms_text.startswith(
        "b24keeper: token token-0 (p0.bitrix24.com) ne obnovlyaetsya"
    )
    summary = digest([Delivery(incident=incident, event=Event.OPENED)] * 3)
    assert summary.subject == "b24keeper: 3 новых сбоя (3 требуют человека сейчас)."


def test_the_test_message_names_the_channel(notify):
    message = messages.test_message(Channel(name="Ann's phone", kind="twilio"))
    assert "for the channel “Ann's phone”" in message.text
    assert message.sms_text == "b24keeper test message for Ann's phone."


def test_a_long_bitrix_description_gives_way_to_the_advice_and_the_link(token):
    long = "Bitrix24 says: " + "the refresh token was revoked by the portal; " * 110  # 4.9k
    message = text_of(incident_of(token, message=long))
    assert len(message.text) <= 4096
    assert "What to do: Re-connect the portal" in message.text
    assert message.text.endswith(
        f"Token page: https://keeper.example.com/admin/portals/token/{token.pk}/change/"
        "\n\n— b24keeper"
    )
    described = message.text.split("What failed: invalid_grant — ")[1].split("\n")[0]
    assert described.endswith("revoked by the portal; the refresh token was revoked by the […]")
    assert len(described) <= 600


def test_a_digest_of_200_new_permanent_failures_keeps_the_newest_within_each_limit(owner, notify):
    tokens = make_tokens(200, owner=owner)
    deliveries = [Delivery(incident=incident_of(t), event=Event.OPENED) for t in tokens]
    message = digest(deliveries)
    assert len(message.text) <= 4096
    act = message.text.split("Act now (200), newest first:\n")[1]
    assert act.startswith("- p199.bitrix24.com / token-199 — invalid_grant — owner: Ann Smith\n")
    assert "  What to do: Re-connect the portal" in act and "…and " in act
    assert is_gsm7(message.sms_text) and sms_segments(message.sms_text) <= 3
    assert message.sms_text.startswith(
        "b24keeper: 200 new failures (200 need a person now). p199.bitrix24.com token-199 "
        "invalid_grant, p198.bitrix24.com token-198 invalid_grant"
    )
    assert " more https://keeper.example.com/admin/notifications/incident/?state=open" in (
        message.sms_text
    )


def test_an_sms_counts_septets_so_an_extension_character_costs_two(token):
    User.objects.filter(pk=token.owner_id).update(first_name="Ann", last_name="{ops}[x]")
    token.refresh_from_db()
    sms = text_of(incident_of(token)).sms_text
    assert sms_segments(sms) == 1  # 158 characters with the link, but 162 septets
    assert "https://" not in sms and "Owner: Ann {ops}[x]." in sms


@pytest.mark.parametrize(
    ("first", "last", "shown"),
    [
        ("Γιώργος", "Παπαδόπουλος", "Owner: Giorgos Papadopoulos."),
        ("Արամ", "Խաչատրյան", "Owner: Aram Khachatryan."),
        ("伟", "张", "Owner: ann."),  # no Latin spelling: the login
    ],
)
def test_an_owner_name_in_any_script_reads_in_the_sms(token, first, last, shown):
    User.objects.filter(pk=token.owner_id).update(first_name=first, last_name=last)
    token.refresh_from_db()
    sms = text_of(incident_of(token)).sms_text
    assert shown in sms and "?" not in sms.split("Owner:")[1] and is_gsm7(sms)


def test_each_channel_gets_alerts_in_its_own_language(token, settings):
    from tests.notifications_helpers import make_channel

    settings.NOTIFY_LANGUAGE = "en"
    russian, english = make_channel("telegram", language="ru"), make_channel("twilio")
    assert english.language == "en"  # a new channel: NOTIFY_LANGUAGE
    incident = incident_of(
        token, error_code="NOT_INSTALLED", message="Bitrix24 answered NOT_INSTALLED (App gone)."
    )
    ru = messages.single(Delivery(incident=incident, channel=russian, event=Event.OPENED))
    en = messages.single(Delivery(incident=incident, channel=english, event=Event.OPENED))
    assert ru.subject.startswith("Не удаётся обновить токен Битрикс24")
    assert "Что случилось: NOT_INSTALLED — слова Битрикс24: «App gone»" in ru.text
    assert "Что делать: Установите приложение на портал заново" in ru.text
    assert "Install the application" not in ru.text
    assert "What failed: NOT_INSTALLED — Bitrix24's words: “App gone”" in en.text
    assert en.text.count("Install the application on the portal again") == 1
    assert "b24keeper" in messages.test_message(russian).subject
    assert "тестовое" in messages.test_message(russian).text.lower()
