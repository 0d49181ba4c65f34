"""Install and app events at /bitrix/<client_id>/install/ and /events/: what the fake portal's
event sender posts, with right and wrong application_tokens. Who may install, replays and
renames: tests/portals/connect/test_install_trust.py; binding the uninstall handler:
tests/portals/connect/test_eventbind.py.
"""

import json
import logging

import pytest
from django.test import Client

from notifications.incidents.lifecycle import incident_opened
from notifications.models import Incident
from portals.models import AppCredentials, Portal, RefreshAttempt, Token, TokenStatus
from tests.events_helpers import EVENTS, INSTALL, REFUSED, install, post
from tests.fakes.bitrix_events import FORM, EventSender, wrong_token

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.events_fixtures"]


def installed(client: Client, sender: EventSender, domain: str) -> Token:
    return install(client, sender, domain)


@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_an_install_event_connects_the_portal(client, sender, fake_bitrix, url, portal):
    form = sender.install(portal)
    response = post(client, url, form)
    assert response.status_code == 200
    token = Token.objects.get()
    assert token.status == TokenStatus.ACTIVE and token.reference == portal.replace(":", "")
    assert token.portal.member_id == form["auth[member_id]"]
    assert token.access_token == form["auth[access_token]"]
    assert token.refresh_token == form["auth[refresh_token]"]
    assert token.application_token == sender.application_token(portal)
    assert token.scope == "crm,user" and token.owner is None
    assert token.next_refresh_at is not None
    attempt = RefreshAttempt.objects.get()
    assert (attempt.kind, attempt.outcome) == ("event", "success")


def test_the_install_frame_answers_a_page_that_finishes_the_install(client, sender, portal):
    query, form = sender.frame(portal)
    response = post(client, f"{INSTALL}?DOMAIN={query['DOMAIN']}&LANG=en", form)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<script src="//api.bitrix24.com/api/v1/"></script>' in html
    assert "BX24.installFinish()" in html
    assert "X-Frame-Options" not in response.headers  # the portal frames this page
    assert Token.objects.get().application_token == form["APPLICATION_TOKEN"]
    assert client.get("/admin/login/").headers["X-Frame-Options"] == "DENY"


def test_a_second_install_of_the_same_app_updates_the_one_token(
    client, sender, portal, fake_bitrix
):
    first = installed(client, sender, portal)
    # A newer pair: an older one is ignored (tests/portals/connect/test_install_trust.py).
    fake_bitrix.advance(1)
    second = installed(client, sender, portal)
    assert Token.objects.count() == 1 and second.pk == first.pk
    assert second.version == first.version + 1
    assert second.access_token != first.access_token


def test_an_install_gets_a_reference_no_other_token_has(client, sender, fake_bitrix, portal):
    other_app = AppCredentials.objects.create(
        name="Other", client_id="local.1111.2222", client_secret="x" * 50, scope="crm"
    )
    other = Portal.objects.create(domain="other.example.com")
    Token.objects.create(portal=other, app=other_app, reference=portal.replace(":", ""))
    assert installed(client, sender, portal).reference == portal.replace(":", "") + "-2"


def test_an_install_with_tokens_the_server_does_not_know_is_refused(client, sender, caplog, portal):
    form = sender.install(portal, access_token="0" * 70)
    with caplog.at_level(logging.WARNING):
        response = post(client, EVENTS, form)
    assert (response.status_code, json.loads(response.content)) == (403, REFUSED)
    assert "app.info refused the token (invalid_token)" in caplog.text
    assert form["auth[refresh_token]"] not in caplog.text
    assert not Token.objects.exists() and not Portal.objects.exists()


def test_an_install_claiming_another_portal_is_refused(client, sender, fake_bitrix, portal):
    form = sender.install(portal, member_id="e" * 32, domain="victim.bitrix24.com")
    assert post(client, EVENTS, form).status_code == 403
    assert not Token.objects.exists()


def test_an_install_naming_a_foreign_server_is_refused(client, sender, caplog, portal):
    form = sender.install(portal, server_endpoint="https://oauth.example.net/rest/")
    with caplog.at_level(logging.WARNING):
        assert post(client, EVENTS, form).status_code == 403
    assert "not one of BITRIX_AUTH_SERVERS" in caplog.text
    assert not Token.objects.exists()


def test_an_unknown_app_gets_the_one_refusal(client, sender, portal):
    response = post(client, "/bitrix/local.9999.9999/events/", sender.install(portal))
    assert (response.status_code, json.loads(response.content)) == (403, REFUSED)
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (json.dumps({"event": "ONAPPINSTALL"}), "application/json", 415),
        ("event=ONAPPINSTALL", "text/plain", 415),
        ("hello=world", FORM, 400),
        ("event=ONAPPUPDATE&auth[domain]=acme.bitrix24.com", FORM, 400),
    ],
)
def test_a_body_that_is_not_the_form_gets_400(client, app, body, content_type, status):
    assert client.post(EVENTS, body, content_type=content_type).status_code == status


def test_an_update_with_the_right_application_token_stores_the_new_pair(
    client, sender, portal, fake_bitrix
):
    token = installed(client, sender, portal)
    fake_bitrix.advance(1)
    form = sender.update(portal)
    assert post(client, EVENTS, form).status_code == 200
    token.refresh_from_db()
    assert token.refresh_token == form["auth[refresh_token]"]
    assert token.version == 2 and token.status == TokenStatus.ACTIVE


@pytest.mark.parametrize("event", ["update", "uninstall"])
def test_a_wrong_or_missing_application_token_is_refused(
    client, sender, caplog, event, portal, fake_bitrix
):
    token = installed(client, sender, portal)
    fake_bitrix.advance(1)
    form = getattr(sender, event)(portal)
    missing = {k: v for k, v in form.items() if k != "auth[application_token]"}
    with caplog.at_level(logging.WARNING):
        for bad in (wrong_token(form), missing):
            assert post(client, EVENTS, bad).status_code == 403
    assert "application_token does not match" in caplog.text
    assert wrong_token(form)["auth[application_token]"] not in caplog.text
    assert token.application_token not in caplog.text
    unchanged = Token.objects.get()
    assert (unchanged.version, unchanged.status) == (token.version, TokenStatus.ACTIVE)


def test_an_event_of_an_unknown_portal_is_refused(client, sender, portal):
    installed(client, sender, portal)
    form = sender.uninstall("other.bitrix24.com")
    assert post(client, EVENTS, form).status_code == 403
    assert Token.objects.get().status == TokenStatus.ACTIVE


def test_an_uninstall_marks_the_token_and_raises_one_notice(
    client, sender, django_capture_on_commit_callbacks, portal
):
    token = installed(client, sender, portal)
    opened = []
    incident_opened.connect(lambda **kw: opened.append(kw["incident"]), weak=False)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):  # the queue may deliver it more than once
            assert post(client, EVENTS, sender.uninstall(portal)).status_code == 200
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED and token.next_refresh_at is None
    assert token.last_error_code == "app_uninstalled"
    assert token.refresh_token  # kept: data[CLEAN] was 0
    incident = Incident.objects.get()
    assert incident.permanent and incident.occurrences == 1 and len(opened) == 1


def test_an_uninstall_with_clean_wipes_the_secrets(client, sender, portal):
    token = installed(client, sender, portal)
    assert post(client, EVENTS, sender.uninstall(portal, clean=True)).status_code == 200
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED
    assert (token.access_token, token.refresh_token, token.application_token) == ("", "", "")
    assert token.version == 2  # a refresh in flight can no longer store its pair


def test_a_reinstall_after_an_uninstall_makes_the_token_active_again(
    client, sender, portal, fake_bitrix
):
    installed(client, sender, portal)
    post(client, EVENTS, sender.uninstall(portal))
    fake_bitrix.advance(1)
    token = installed(client, sender, portal)
    assert token.status == TokenStatus.ACTIVE
    assert Incident.objects.get().resolved_at is not None


def test_the_event_sender_speaks_http(live_server, sender, portal, transactional_db):
    status, body = sender.post(f"{live_server.url}{EVENTS}", sender.install(portal))
    assert (status, body["result"]) == (200, "accepted")
    status, body = sender.post(f"{live_server.url}{EVENTS}", wrong_token(sender.update(portal)))
    assert (status, body) == (403, REFUSED)


@pytest.mark.parametrize(
    ("lang", "words", "html_lang"),
    [
        ("en", "b24keeper is installed.", "en"),
        ("ru", "b24keeper установлен.", "ru"),
        ("ua", "b24keeper установлен.", "ru"),  # a Ukrainian portal: Russian, not English
    ],
)
def test_the_install_page_speaks_the_portals_language(
    client, sender, portal, lang, words, html_lang
):
    query, form = sender.frame(portal)
    response = post(client, f"{INSTALL}?DOMAIN={query['DOMAIN']}&LANG={lang}", form)
    html = response.content.decode()
    assert words in html and f'<html lang="{html_lang}">' in html


def test_an_installed_tokens_page_shows_its_user_endpoint_and_that_no_one_owns_it(
    client, sender, portal, admin_client
):
    query, form = sender.frame(portal)
    post(client, f"{INSTALL}?DOMAIN={query['DOMAIN']}&LANG=en", form)
    token = Token.objects.get()
    assert token.user_id and token.client_endpoint  # filled from the install's app.info
    html = admin_client.get(f"/admin/portals/token/{token.pk}/change/").content.decode()
    assert token.client_endpoint in html
    assert 'id="no-owner"' in html and "name no person" in html
