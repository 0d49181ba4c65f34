"""Who may install, update or rename through /install/ and /events/ (issue 14, items 2, 3, 4, 11):
only a portal administrator's verified pair is applied, its REST root and domain come from
app.info, a replayed or older pair is ignored, events never rename, and every unauthenticated
event gets the same refusal."""

import json
import logging
import socket
from datetime import UTC, datetime

import pytest

from portals.models import Portal, Token, TokenStatus
from tests.conftest import CLIENT_ID, run_due
from tests.events_helpers import EVENTS, INSTALL, REFUSED, frame, install, post
from tests.fakes.bitrix_events import FORM, EventSender, wrong_token
from tests.fakes.bitrix_state import make_token, portal_rest_url

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.events_fixtures"]
NOT_ADMIN = 7


def body(response) -> dict:
    return json.loads(response.content)


def unchanged(token: Token) -> Token:
    """The token as stored now, asserted to hold the same pair and version as `token`."""
    stored = Token.objects.get(pk=token.pk)
    assert (stored.version, stored.refresh_token, stored.access_token) == (
        token.version,
        token.refresh_token,
        token.access_token,
    )
    assert stored.application_token == token.application_token
    assert stored.client_endpoint == token.client_endpoint
    return stored


# --- item 2: only an administrator installs; endpoint and domain come from app.info ----------
def test_a_portal_user_cannot_replace_the_rest_root_or_the_application_token(
    client, sender, fake_bitrix, portal
):
    token = install(client, sender, portal)
    fake_bitrix.add_user(portal, NOT_ADMIN)
    form = sender.install(portal, user=NOT_ADMIN, client_endpoint="https://evil.example/rest/")
    form["auth[application_token]"] = "f" * 32
    for url in (INSTALL, EVENTS):
        response = post(client, url, form)
        assert (response.status_code, body(response)) == (403, REFUSED)
    assert unchanged(token).client_endpoint == portal_rest_url(portal)


def test_the_rest_root_comes_from_app_info_never_from_the_payload(client, sender, portal):
    form = sender.install(portal, client_endpoint="https://evil.example/rest/")
    assert post(client, INSTALL, form).status_code == 200
    assert Token.objects.get().client_endpoint == portal_rest_url(portal)


def test_an_install_asks_user_admin_at_app_infos_rest_root_with_the_posted_token(
    client, sender, fake_bitrix, portal
):
    form = sender.install(portal)
    assert post(client, EVENTS, form).status_code == 200
    [call] = [c for c in fake_bitrix.rest_calls if c.method == "user.admin"]
    assert (call.host, call.status, call.auth_via) == (portal, 200, "auth")


@pytest.mark.parametrize("url", [INSTALL, EVENTS])
def test_an_install_by_a_portal_user_who_is_not_an_administrator_is_refused(
    client, sender, fake_bitrix, portal, url, caplog
):
    fake_bitrix.add_user(portal, NOT_ADMIN)
    with caplog.at_level(logging.WARNING):
        response = post(client, url, sender.install(portal, user=NOT_ADMIN))
    assert (response.status_code, body(response)) == (403, REFUSED)
    assert "not an administrator" in caplog.text
    assert not Token.objects.exists() and not Portal.objects.exists()


def test_an_install_frame_of_a_user_who_is_not_an_administrator_gets_a_page_saying_why(
    client, sender, fake_bitrix, portal
):
    fake_bitrix.add_user(portal, NOT_ADMIN)
    response, _ = frame(client, sender, portal, user=NOT_ADMIN)
    html = response.content.decode()
    assert response.status_code == 403 and "text/html" in response["Content-Type"]
    assert "Only an administrator of the portal" in html
    assert "BX24.installFinish" not in html
    assert "X-Frame-Options" not in response.headers  # shown inside the portal's frame
    assert not Token.objects.exists()


def test_the_refusal_page_is_translated(client, sender, fake_bitrix, portal):
    fake_bitrix.add_user(portal, NOT_ADMIN)
    query, form = sender.frame(portal, NOT_ADMIN)
    response = client.post(
        f"{INSTALL}?DOMAIN={query['DOMAIN']}&LANG=ru", EventSender.encode(form), content_type=FORM
    )
    assert "Только администратор портала" in response.content.decode()  # the portal's language


def test_an_update_by_a_portal_user_who_is_not_an_administrator_is_refused(
    client, sender, fake_bitrix, portal
):
    token = install(client, sender, portal)
    fake_bitrix.add_user(portal, NOT_ADMIN)
    response = post(client, EVENTS, sender.update(portal, user=NOT_ADMIN))
    assert (response.status_code, body(response)) == (403, REFUSED)
    unchanged(token)


def test_the_install_frame_takes_the_rest_root_from_app_info(client, sender, portal):
    response, form = frame(client, sender, portal)
    assert response.status_code == 200
    token = Token.objects.get()
    assert token.client_endpoint == portal_rest_url(portal)  # the frame's pair names none
    assert token.application_token == form["APPLICATION_TOKEN"]


def test_the_token_api_answers_the_rest_root_of_a_frame_install(client, sender, portal):
    from api import keys

    frame(client, sender, portal)
    token = Token.objects.get()
    secret = keys.create_key("consumer", [token.reference])[1]
    response = client.get(
        f"/api/tokens/{token.reference}/", headers={"Authorization": f"Bearer {secret}"}
    )
    assert body(response)["client_endpoint"] == portal_rest_url(portal)


def test_a_refused_install_never_sets_the_application_token(client, sender, fake_bitrix, portal):
    token = install(client, sender, portal)
    fake_bitrix.add_user(portal, NOT_ADMIN)
    frame(client, sender, portal, user=NOT_ADMIN)
    forged = sender.install(portal, access_token="0" * 70, application_token="e" * 32)
    post(client, EVENTS, forged)
    assert unchanged(token).application_token == sender.application_token(portal)


# --- item 3: replays and older pairs are ignored ---------------------------------------------
def test_the_expiry_is_read_from_the_token_itself():
    from portals.connect.pair_proof import token_expiry

    assert token_expiry(make_token(1767229200)) == 1767229200
    assert token_expiry("not-hex-at-all") is None and token_expiry("") is None


def test_the_frames_expiry_comes_from_the_token_never_from_now_plus_auth_expires(
    client, sender, portal
):
    from portals.connect.pair_proof import token_expiry

    query, form = sender.frame(portal)
    form["AUTH_EXPIRES"] = "60"
    client.post(f"{INSTALL}?DOMAIN={query['DOMAIN']}", EventSender.encode(form), content_type=FORM)
    expected = datetime.fromtimestamp(token_expiry(form["AUTH_ID"]), tz=UTC)
    assert Token.objects.get().expires_at == expected


def test_an_install_replayed_at_once_changes_nothing(client, sender, portal, caplog):
    form = sender.install(portal)
    assert post(client, EVENTS, form).status_code == 200
    token = Token.objects.get()
    with caplog.at_level(logging.INFO):
        response = post(client, EVENTS, form)
    assert (response.status_code, body(response)["result"]) == (200, "ignored")
    assert "not newer than the stored one" in caplog.text
    unchanged(token)


def test_an_install_replayed_within_the_hour_leaves_the_refreshed_pair(
    client, sender, fake_bitrix, portal
):
    form = sender.install(portal)
    post(client, EVENTS, form)
    fake_bitrix.advance(600)
    token = Token.objects.get()
    assert run_due(token) == "refreshed"
    token.refresh_from_db()
    response = post(client, INSTALL, form)  # its access token died with the strict rotation
    assert (response.status_code, body(response)["result"]) == (200, "ignored")
    unchanged(token)
    assert run_due(token) == "refreshed"  # the stored chain is still Bitrix24's live one


def test_an_older_pair_is_ignored_even_while_bitrix_still_accepts_it(
    client, sender, fake_bitrix, portal
):
    fake_bitrix.rotation = "lenient"  # the old pair stays valid: only its age tells
    form = sender.install(portal)
    post(client, EVENTS, form)
    fake_bitrix.advance(600)
    token = Token.objects.get()
    assert run_due(token) == "refreshed"
    token.refresh_from_db()
    assert body(post(client, EVENTS, form))["result"] == "ignored"
    unchanged(token)


def test_a_captured_update_replayed_later_leaves_the_newer_pair(
    client, sender, fake_bitrix, portal
):
    install(client, sender, portal)
    fake_bitrix.advance(60)
    update = sender.update(portal)
    assert body(post(client, EVENTS, update))["result"] == "accepted"
    fake_bitrix.advance(600)
    token = Token.objects.get()
    assert run_due(token) == "refreshed"
    token.refresh_from_db()
    for _ in range(2):  # within the hour, and after it
        response = post(client, EVENTS, update)
        assert (response.status_code, body(response)["result"]) == (200, "ignored")
        fake_bitrix.advance(3600)
    unchanged(token)
    assert run_due(token) == "refreshed"


def test_a_forged_expiry_does_not_make_a_replayed_pair_newer(client, sender, fake_bitrix, portal):
    form = sender.install(portal)
    post(client, EVENTS, form)
    token = Token.objects.get()
    form["auth[expires]"] = str(2**31 - 1)
    assert body(post(client, EVENTS, form))["result"] == "ignored"
    unchanged(token)


# --- item 4: events never rename; a rename never takes a live portal's address ---------------
@pytest.fixture
def two_portals(client, sender, fake_bitrix, portal):
    other = fake_bitrix.extra_host()
    return install(client, sender, portal), install(client, sender, other)


@pytest.mark.parametrize("event", ["update", "uninstall", "test"])
def test_an_event_never_renames_a_portal(client, sender, two_portals, event):
    a, b = two_portals
    if event == "test":
        form = sender.uninstall(a.portal.domain, domain=b.portal.domain)
        form["event"] = "ONAPPTEST"
    else:
        form = getattr(sender, event)(a.portal.domain, domain=b.portal.domain)
    assert post(client, EVENTS, form).status_code == 200
    assert Portal.objects.get(pk=a.portal.pk).domain == a.portal.domain
    assert Portal.objects.get(pk=b.portal.pk).domain == b.portal.domain


def test_a_verified_install_moves_a_renamed_portal(client, sender, fake_bitrix, portal):
    token = install(client, sender, portal)
    new = fake_bitrix.extra_host()
    fake_bitrix.rename_portal(portal, new)
    fake_bitrix.advance(1)  # a newer pair than the stored one
    install(client, sender, new)
    token.refresh_from_db()
    assert token.portal.domain == new and Portal.objects.count() == 1
    assert token.client_endpoint == portal_rest_url(new)


def closed_origin() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def holder(domain: str, status: str, access_token: str, server: str) -> Portal:
    """A portal row that holds `domain` in b24keeper, with one token of the app."""
    held = Portal.objects.create(domain=domain, member_id="b" * 32)
    Token.objects.create(
        portal=held, app_id=Token.objects.get().app_id, reference="held", status=status,
        access_token=access_token, refresh_token="r", server_endpoint=f"{server}/rest/",
    )  # fmt: skip
    return held


def test_a_rename_onto_a_live_portals_address_is_refused_naming_both(
    client, sender, fake_bitrix, portal, settings, caplog
):
    token = install(client, sender, portal)
    new = fake_bitrix.extra_host()
    unreachable = closed_origin()  # its app.info cannot tell: the holder counts as live
    settings.BITRIX_AUTH_SERVERS = [*settings.BITRIX_AUTH_SERVERS, unreachable]
    held = holder(new, TokenStatus.ACTIVE, "a" * 70, unreachable)
    fake_bitrix.rename_portal(portal, new)
    fake_bitrix.advance(1)
    with caplog.at_level(logging.WARNING):
        response = post(client, EVENTS, sender.install(new))
    assert (response.status_code, body(response)) == (409, {"error": "address_taken"})
    assert f"portal {portal} (member" in caplog.text  # member_ids are redacted in logs
    assert f"cannot take {new}: portal {held.pk}" in caplog.text
    assert Portal.objects.get(pk=held.pk).domain == new
    assert unchanged(token).portal.domain == portal


@pytest.mark.parametrize("dead", ["uninstalled", "app_info_fails"])
def test_a_dead_portals_address_is_taken_over_and_logged(
    client, sender, fake_bitrix, portal, dead, caplog
):
    token = install(client, sender, portal)
    new = fake_bitrix.extra_host()
    status = TokenStatus.UNINSTALLED if dead == "uninstalled" else TokenStatus.ACTIVE
    held = holder(new, status, make_token(2_000_000_000), fake_bitrix.base_url)
    fake_bitrix.rename_portal(portal, new)
    fake_bitrix.advance(1)
    with caplog.at_level(logging.WARNING):
        assert post(client, EVENTS, sender.install(new)).status_code == 200
    assert Portal.objects.get(pk=held.pk).domain == f"{'b' * 32}.renamed.invalid"
    assert Token.objects.get(pk=token.pk).portal.domain == new
    assert f"address {new} taken over" in caplog.text


@pytest.mark.parametrize("dead", [True, False])
def test_the_rest_clients_confirmed_move_takes_only_a_dead_portals_address(
    client, sender, fake_bitrix, portal, settings, dead
):
    from portals.rest import Bitrix24, RestError

    token = install(client, sender, portal)
    new = fake_bitrix.extra_host()
    if dead:
        held = holder(new, TokenStatus.UNINSTALLED, "a" * 70, fake_bitrix.base_url)
    else:
        unreachable = closed_origin()
        settings.BITRIX_AUTH_SERVERS = [*settings.BITRIX_AUTH_SERVERS, unreachable]
        held = holder(new, TokenStatus.ACTIVE, "a" * 70, unreachable)
    fake_bitrix.rename_portal(portal, new)
    if dead:
        assert Bitrix24(token.reference).call("user.current")["ID"] == "1"
        assert Portal.objects.get(pk=held.pk).domain.endswith(".renamed.invalid")
        assert Token.objects.get(pk=token.pk).portal.domain == new
    else:
        with pytest.raises(RestError) as caught:
            Bitrix24(token.reference).call("user.current")
        assert caught.value.code == "portal_moved"
        assert portal in str(caught.value) and new in str(caught.value)  # names both
        assert Portal.objects.get(pk=held.pk).domain == new
        assert Token.objects.get(pk=token.pk).portal.domain == portal


# --- item 11: one refusal for every unauthenticated event ------------------------------------
@pytest.mark.parametrize(
    "case", ["unknown_app", "unknown_member", "wrong_token", "no_token", "dead_pair"]
)
def test_every_unauthenticated_event_gets_the_same_refusal(
    client, sender, fake_bitrix, portal, case, caplog
):
    install(client, sender, portal)
    url, form = EVENTS, sender.uninstall(portal)
    if case == "unknown_app":
        url = "/bitrix/local.9999.9999/events/"
    elif case == "unknown_member":
        form = sender.uninstall(fake_bitrix.extra_host())
    elif case == "wrong_token":
        form = wrong_token(form)
    elif case == "no_token":
        del form["auth[application_token]"]
    else:
        form = sender.install(portal, access_token="0" * 70, application_token="e" * 32)
    with caplog.at_level(logging.INFO):
        response = post(client, url, form)
    assert (response.status_code, body(response)) == (403, REFUSED)
    assert "refused" in caplog.text
    assert Token.objects.get().status == TokenStatus.ACTIVE


def test_the_detail_of_a_refusal_goes_to_the_log_only(client, sender, portal, caplog):
    install(client, sender, portal)
    form = sender.uninstall(portal, member_id="not a member")
    with caplog.at_level(logging.INFO):
        response = post(client, EVENTS, form)
    assert "member" not in response.content.decode()
    assert "unknown member_id 'not a member'" in caplog.text
    assert repr(CLIENT_ID) in caplog.text
