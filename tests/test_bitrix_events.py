"""Install and app events at /bitrix/<client_id>/install/ and /events/: what the fake portal's
event sender posts, with right and wrong application_tokens."""

import json
import logging

import pytest
from django.test import Client

from notifications.incidents import incident_opened
from notifications.models import Incident
from portals.models import AppCredentials, Portal, RefreshAttempt, Token, TokenStatus
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL
from tests.fakes.bitrix_events import FORM, EventSender, wrong_token

pytestmark = pytest.mark.django_db
EVENTS = f"/bitrix/{CLIENT_ID}/events/"
INSTALL = f"/bitrix/{CLIENT_ID}/install/"


@pytest.fixture
def app(fake_bitrix):
    return AppCredentials.objects.create(
        name="CRM sync", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )


@pytest.fixture
def sender(fake_bitrix, app):
    return EventSender(fake_bitrix, CLIENT_ID)


def post(client: Client, url: str, form: dict[str, str]):
    return client.post(url, EventSender.encode(form), content_type=FORM)


def installed(client: Client, sender: EventSender, domain: str = PORTAL) -> Token:
    response = post(client, EVENTS, sender.install(domain))
    assert response.status_code == 200, response.content
    return Token.objects.get(portal__domain=domain)


@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_an_install_event_connects_the_portal(client, sender, fake_bitrix, url):
    form = sender.install(PORTAL)
    response = post(client, url, form)
    assert response.status_code == 200
    token = Token.objects.get()
    assert token.status == TokenStatus.ACTIVE and token.reference == "acme"
    assert token.portal.member_id == form["auth[member_id]"]
    assert token.access_token == form["auth[access_token]"]
    assert token.refresh_token == form["auth[refresh_token]"]
    assert token.application_token == sender.application_token(PORTAL)
    assert token.scope == "crm,user" and token.owner is None
    assert token.next_refresh_at is not None
    attempt = RefreshAttempt.objects.get()
    assert (attempt.kind, attempt.outcome) == ("event", "success")


def test_the_install_frame_answers_a_page_that_finishes_the_install(client, sender):
    query, form = sender.frame(PORTAL)
    response = post(client, f"{INSTALL}?DOMAIN={query['DOMAIN']}&LANG=en", form)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<script src="//api.bitrix24.com/api/v1/"></script>' in html
    assert "BX24.installFinish()" in html
    assert "X-Frame-Options" not in response.headers  # the portal frames this page
    assert Token.objects.get().application_token == form["APPLICATION_TOKEN"]
    assert client.get("/admin/login/").headers["X-Frame-Options"] == "DENY"


def test_a_second_install_of_the_same_app_updates_the_one_token(client, sender):
    first = installed(client, sender)
    second = installed(client, sender)
    assert Token.objects.count() == 1 and second.pk == first.pk
    assert second.version == first.version + 1
    assert second.access_token != first.access_token


def test_an_install_gets_a_reference_no_other_token_has(client, sender, fake_bitrix):
    other_app = AppCredentials.objects.create(
        name="Other", client_id="local.1111.2222", client_secret="x" * 50, scope="crm"
    )
    portal = Portal.objects.create(domain="acme.bitrix24.ru")
    Token.objects.create(portal=portal, app=other_app, reference="acme")
    assert installed(client, sender).reference == "acme-2"


def test_an_install_with_tokens_the_server_does_not_know_is_refused(client, sender, caplog):
    form = sender.install(PORTAL, access_token="0" * 70)
    with caplog.at_level(logging.WARNING):
        response = post(client, EVENTS, form)
    assert response.status_code == 403
    assert "app.info refused the token (invalid_token)" in caplog.text
    assert form["auth[refresh_token]"] not in caplog.text
    assert not Token.objects.exists() and not Portal.objects.exists()


def test_an_install_claiming_another_portal_is_refused(client, sender, fake_bitrix):
    form = sender.install(PORTAL, member_id="e" * 32, domain="victim.bitrix24.com")
    assert post(client, EVENTS, form).status_code == 403
    assert not Token.objects.exists()


def test_an_install_naming_a_foreign_server_is_refused(client, sender, caplog):
    form = sender.install(PORTAL, server_endpoint="https://oauth.example.net/rest/")
    with caplog.at_level(logging.WARNING):
        assert post(client, EVENTS, form).status_code == 403
    assert "not one of BITRIX_AUTH_SERVERS" in caplog.text
    assert not Token.objects.exists()


def test_an_unknown_app_gets_404(client, sender):
    response = post(client, "/bitrix/local.9999.9999/events/", sender.install(PORTAL))
    assert response.status_code == 404 and not Token.objects.exists()


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


def test_an_update_with_the_right_application_token_stores_the_new_pair(client, sender):
    token = installed(client, sender)
    form = sender.update(PORTAL)
    assert post(client, EVENTS, form).status_code == 200
    token.refresh_from_db()
    assert token.refresh_token == form["auth[refresh_token]"]
    assert token.version == 2 and token.status == TokenStatus.ACTIVE


@pytest.mark.parametrize("event", ["update", "uninstall"])
def test_a_wrong_or_missing_application_token_is_refused(client, sender, caplog, event):
    token = installed(client, sender)
    form = getattr(sender, event)(PORTAL)
    missing = {k: v for k, v in form.items() if k != "auth[application_token]"}
    with caplog.at_level(logging.WARNING):
        for bad in (wrong_token(form), missing):
            assert post(client, EVENTS, bad).status_code == 403
    assert "application_token does not match" in caplog.text
    assert wrong_token(form)["auth[application_token]"] not in caplog.text
    assert token.application_token not in caplog.text
    unchanged = Token.objects.get()
    assert (unchanged.version, unchanged.status) == (token.version, TokenStatus.ACTIVE)


def test_an_event_of_an_unknown_portal_is_refused(client, sender):
    installed(client, sender)
    form = sender.uninstall("other.bitrix24.com")
    assert post(client, EVENTS, form).status_code == 403
    assert Token.objects.get().status == TokenStatus.ACTIVE


def test_an_uninstall_marks_the_token_and_raises_one_notice(
    client, sender, django_capture_on_commit_callbacks
):
    token = installed(client, sender)
    opened = []
    incident_opened.connect(lambda **kw: opened.append(kw["incident"]), weak=False)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):  # the queue may deliver it more than once
            assert post(client, EVENTS, sender.uninstall(PORTAL)).status_code == 200
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED and token.next_refresh_at is None
    assert token.last_error_code == "app_uninstalled"
    assert token.refresh_token  # kept: data[CLEAN] was 0
    incident = Incident.objects.get()
    assert incident.permanent and incident.occurrences == 1 and len(opened) == 1


def test_an_uninstall_with_clean_wipes_the_secrets(client, sender):
    token = installed(client, sender)
    assert post(client, EVENTS, sender.uninstall(PORTAL, clean=True)).status_code == 200
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED
    assert (token.access_token, token.refresh_token, token.application_token) == ("", "", "")
    assert token.version == 2  # a refresh in flight can no longer store its pair


def test_a_reinstall_after_an_uninstall_makes_the_token_active_again(client, sender):
    installed(client, sender)
    post(client, EVENTS, sender.uninstall(PORTAL))
    token = installed(client, sender)
    assert token.status == TokenStatus.ACTIVE
    assert Incident.objects.get().resolved_at is not None


def test_an_event_from_a_renamed_portal_updates_its_address(client, sender, fake_bitrix):
    token = installed(client, sender)
    form = sender.update(PORTAL, domain="renamed.bitrix24.com")
    assert post(client, EVENTS, form).status_code == 200
    token.refresh_from_db()
    assert token.portal.domain == "renamed.bitrix24.com"
    assert Portal.objects.count() == 1
    uninstall = sender.uninstall(PORTAL, domain="again.bitrix24.com")
    uninstall["auth[application_token]"] = sender.application_token(PORTAL)
    assert post(client, EVENTS, uninstall).status_code == 200
    assert Portal.objects.get().domain == "again.bitrix24.com"


def test_the_event_sender_speaks_http(live_server, sender, transactional_db):
    status, body = sender.post(f"{live_server.url}{EVENTS}", sender.install(PORTAL))
    assert (status, body["result"]) == (200, "accepted")
    status, body = sender.post(f"{live_server.url}{EVENTS}", wrong_token(sender.update(PORTAL)))
    assert status == 403 and "application_token" in body["error"]
