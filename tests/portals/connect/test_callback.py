"""Connecting through the OAuth redirect with a state: the Connect buttons, the fake portal's
authorize page and the callback at /bitrix/<client_id>/callback/, and every refusal."""

import logging
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portals.models import (
    AppCredentials,
    ConnectState,
    PendingPair,
    Portal,
    RefreshAttempt,
    Token,
    TokenStatus,
)
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL

pytestmark = pytest.mark.django_db
CALLBACK = f"/bitrix/{CLIENT_ID}/callback/"


@pytest.fixture
def app(fake_bitrix):
    fake_bitrix.register_app(
        CLIENT_ID, CLIENT_SECRET, scope="crm,user", redirect_uri=f"http://testserver{CALLBACK}"
    )
    return AppCredentials.objects.create(
        name="CRM sync", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )


def start_new(client: Client, app: AppCredentials, portal: str = PORTAL, **extra: str) -> dict:
    """Press Connect on "Connect a new portal"; returns the authorize URL's query."""
    response = client.post(
        reverse("admin:portals_token_connect_new"), {"app": app.pk, "portal": portal, **extra}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    url = urlsplit(response["Location"])
    assert url.path == "/oauth/authorize/"
    return {key: values[0] for key, values in parse_qs(url.query).items()}


def authorize(fake, query: dict, domain: str = PORTAL) -> str:
    """The fake portal's authorize page: the callback address it redirects to."""
    answer = requests.get(
        f"{fake.base_url}/oauth/authorize/",
        params={**query, "domain": domain},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    return f"{location.path}?{location.query}"


def callback(client: Client, path: str):
    return client.get(path)


def assert_refused(response, status: int, words: str) -> None:
    html = unescape(response.content.decode())
    assert response.status_code == status, html[:3000]
    assert 'id="refusal"' in html
    assert words in html, html[html.find("refusal") : html.find("refusal") + 800]


def test_it_connects_a_new_portal_through_the_redirect(admin_client, app, fake_bitrix):
    query = start_new(admin_client, app)
    assert query["client_id"] == CLIENT_ID and len(query["state"]) >= 40
    state = ConnectState.objects.get()
    assert query["state"] not in state.state_hash  # stored hashed only
    response = callback(admin_client, authorize(fake_bitrix, query))
    token = Token.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:portals_token_change", args=[token.pk])
    assert token.status == TokenStatus.ACTIVE and token.portal.domain == PORTAL
    assert token.reference == "acme"  # derived from the portal's name
    assert token.owner.username == "admin"
    assert token.scope == "crm,user"  # app.info's answer
    assert fake_bitrix.access_token_valid(token.access_token)
    assert ConnectState.objects.get().used_at is not None
    page = admin_client.get(response["Location"]).content.decode()
    assert f"Connected {PORTAL} as “acme”." in page and "Active" in page


def test_it_warns_about_scopes_bitrix_did_not_grant(admin_client, app, fake_bitrix):
    app.scope = "crm,user,task"
    app.save()
    response = callback(admin_client, authorize(fake_bitrix, start_new(admin_client, app)))
    page = admin_client.get(response["Location"]).content.decode()
    assert "did not grant the scope(s) task" in page
    assert 'id="scope-warning"' in page


def test_it_refuses_a_callback_without_state(admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, {"client_id": CLIENT_ID, "response_type": "code"})
    assert_refused(callback(admin_client, path), 400, "carries no state")
    assert not Token.objects.exists() and fake_bitrix.count() == 0


def test_it_refuses_an_unknown_state(admin_client, app, fake_bitrix):
    query = {"client_id": CLIENT_ID, "state": "x" * 43}
    assert_refused(callback(admin_client, authorize(fake_bitrix, query)), 400, "unknown here")
    assert not Token.objects.exists() and fake_bitrix.count() == 0


def test_it_refuses_a_reused_state_and_a_replayed_code(admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    callback(admin_client, path)
    token = Token.objects.get()
    assert_refused(callback(admin_client, path), 400, "already finished")
    # The same code under a new state: Bitrix24 refuses it, nothing changes.
    code = parse_qs(urlsplit(path).query)["code"][0]
    fresh = authorize(fake_bitrix, start_new(admin_client, app))
    replayed = fresh.replace(parse_qs(urlsplit(fresh).query)["code"][0], code)
    assert_refused(callback(admin_client, replayed), 400, "refused the code (invalid_grant)")
    token.refresh_from_db()
    assert token.version == 1


def test_it_refuses_an_expired_state(admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    ConnectState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(callback(admin_client, path), 400, "more than 10 minutes ago")
    assert not Token.objects.exists() and fake_bitrix.count() == 0


def test_it_refuses_someone_elses_state(admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    other = Client()
    other.force_login(get_user_model().objects.create_superuser("bob", "", "pw-bob-123"))
    assert_refused(callback(other, path), 403, "started by someone else")
    assert not Token.objects.exists() and fake_bitrix.count() == 0
    assert ConnectState.objects.get().used_at is None  # the owner can still finish it


def test_it_refuses_a_state_from_another_login_session(admin_client, admin_user, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    again = Client()
    again.force_login(admin_user)  # the same person, a new session
    assert_refused(callback(again, path), 403, "another login session")
    assert not Token.objects.exists()


def test_it_refuses_a_callback_without_a_logged_in_session(client, admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    assert_refused(callback(client, path), 403, "Nobody is logged in")
    assert not Token.objects.exists() and fake_bitrix.count() == 0


def test_it_refuses_a_server_domain_outside_the_allowed_servers(
    admin_client, app, fake_bitrix, settings
):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    settings.BITRIX_AUTH_SERVERS = ["https://oauth.bitrix.info"]
    assert_refused(callback(admin_client, path), 403, "not one of BITRIX_AUTH_SERVERS")
    assert not Token.objects.exists() and fake_bitrix.count() == 0


def test_it_refuses_an_answer_from_another_portal(admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app), domain="evil.bitrix24.com")
    assert_refused(callback(admin_client, path), 400, "but evil.bitrix24.com answered")
    assert not Token.objects.exists() and fake_bitrix.count() == 0


def test_it_refuses_an_answer_at_another_apps_address(admin_client, app, fake_bitrix):
    path = authorize(fake_bitrix, start_new(admin_client, app))
    other = path.replace(CLIENT_ID, "local.00000000000000.00000000")
    assert_refused(callback(admin_client, other), 400, "another app's address")
    assert not Token.objects.exists()


def connected(admin_client, app, fake_bitrix) -> Token:
    callback(admin_client, authorize(fake_bitrix, start_new(admin_client, app)))
    return Token.objects.get()


def reconnect(admin_client, token: Token) -> dict:
    response = admin_client.post(reverse("admin:portals_token_reconnect", args=[token.pk]))
    assert response.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}


def test_reconnecting_updates_the_same_token(admin_client, app, fake_bitrix):
    token = connected(admin_client, app, fake_bitrix)
    Token.objects.filter(pk=token.pk).update(status=TokenStatus.NEEDS_REAUTH)
    callback(admin_client, authorize(fake_bitrix, reconnect(admin_client, token)))
    token.refresh_from_db()
    assert (Token.objects.count(), token.status, token.version) == (1, TokenStatus.ACTIVE, 2)


def test_a_renamed_portal_reconnects_under_its_new_address(admin_client, app, fake_bitrix):
    token = connected(admin_client, app, fake_bitrix)
    fake_bitrix.add_portal("renamed.bitrix24.com", member_id=token.portal.member_id)
    path = authorize(fake_bitrix, reconnect(admin_client, token), domain="renamed.bitrix24.com")
    callback(admin_client, path)
    token.refresh_from_db()
    assert token.portal.domain == "renamed.bitrix24.com" and token.version == 2
    assert Portal.objects.count() == 1


def test_a_reconnect_from_another_member_id_waits_for_confirmation(admin_client, app, fake_bitrix):
    token = connected(admin_client, app, fake_bitrix)
    old_member, old_pair = token.portal.member_id, token.refresh_token
    fake_bitrix.add_portal(PORTAL, member_id="f" * 32)  # deleted and created again
    response = callback(admin_client, authorize(fake_bitrix, reconnect(admin_client, token)))
    pending = PendingPair.objects.get()
    assert response["Location"] == reverse("admin:portals_token_pending", args=[pending.pk])
    token.refresh_from_db()
    assert (token.portal.member_id, token.refresh_token) == (old_member, old_pair)
    page = admin_client.get(response["Location"]).content.decode()
    assert "f" * 32 in page and old_member in page and pending.refresh_token not in page
    admin_client.post(response["Location"], {"_confirm": "1"})
    token.refresh_from_db()
    assert token.portal.member_id == "f" * 32 and token.version == 2
    assert not PendingPair.objects.exists()


def test_a_cancelled_or_expired_pending_reconnect_stores_nothing(admin_client, app, fake_bitrix):
    token = connected(admin_client, app, fake_bitrix)
    fake_bitrix.add_portal(PORTAL, member_id="f" * 32)
    first = callback(admin_client, authorize(fake_bitrix, reconnect(admin_client, token)))
    admin_client.post(first["Location"], {"_cancel": "1"})
    second = callback(admin_client, authorize(fake_bitrix, reconnect(admin_client, token)))
    PendingPair.objects.update(valid_until=timezone.now() - timedelta(seconds=1))
    admin_client.post(second["Location"], {"_confirm": "1"})
    assert "no longer waiting" in admin_client.get(second["Location"]).content.decode()
    token.refresh_from_db()
    assert token.version == 1 and token.portal.member_id != "f" * 32


def test_the_code_exchange_is_recorded_with_its_duration(admin_client, app, fake_bitrix):
    query = start_new(admin_client, app)
    fake_bitrix.latency = 0.05  # the token endpoint answers after 50 ms
    callback(admin_client, authorize(fake_bitrix, query))
    attempt = RefreshAttempt.objects.get(kind="code_exchange")
    assert attempt.outcome == "success" and attempt.duration_ms >= 50


def test_a_refusal_is_shown_in_russian_and_logged_in_english(
    admin_client, app, fake_bitrix, caplog
):
    admin_client.cookies["django_language"] = "ru"
    path = authorize(fake_bitrix, {"client_id": CLIENT_ID, "response_type": "code"})
    with caplog.at_level(logging.WARNING, logger="portals.connect.callback"):
        response = callback(admin_client, path)
    assert "В ответе Битрикс24 нет state" in unescape(response.content.decode())
    assert "carries no state" in caplog.text and "Битрикс24" not in caplog.text
