"""Uninstalls must really arrive (issue 14): after every connect b24keeper binds ONAPPUNINSTALL and
ONAPPUPDATE to its event handler with event.bind (event.get first), a failed bind shows on the
token's page, a daily task binds again, and an uninstall of a token connected by code is
believed only when a refresh answers NOT_INSTALLED."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications.models import Incident
from portals.connect import eventbind, uninstall
from portals.models import Token, TokenStatus
from portals.tokens.sweep import refresh_if_due
from tests.conftest import CLIENT_ID, connect
from tests.events_helpers import EVENTS, REFUSED, frame, install, post
from tests.fakes.bitrix_state import portal_rest_url

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.events_fixtures"]
HANDLER = f"http://127.0.0.1:8000/bitrix/{CLIENT_ID}/events/"  # SITE_URL in the tests


def bound(fake, portal: str) -> list[tuple[str, str]]:
    return sorted((h.event, h.handler) for h in fake.handlers(CLIENT_ID, portal))


BOTH = [("ONAPPUNINSTALL", HANDLER), ("ONAPPUPDATE", HANDLER)]


@pytest.fixture(autouse=True)
def binding(settings):
    """On here (tests/settings.py turns it off: most tests' portals must never be called)."""
    settings.BITRIX_BIND_EVENTS = True


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run what a connect does once its transaction commits (the binding)."""

    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)

    return run


@pytest.mark.parametrize("how", ["install", "frame", "code"])
def test_a_connect_binds_the_uninstall_and_update_handlers(
    client, sender, fake_bitrix, portal, committed, how
):
    if how == "install":
        committed(install, client, sender, portal)
    elif how == "frame":
        committed(frame, client, sender, portal)
    else:
        committed(connect, fake_bitrix, portal=portal)
    assert bound(fake_bitrix, portal) == BOTH
    token = Token.objects.get()
    assert token.events_bound_at is not None and token.events_bind_error == ""
    [get] = [c for c in fake_bitrix.rest_calls if c.method == "event.get"]
    assert get.host == portal  # asked at the portal's REST root, with the token's pair


def test_binding_again_binds_only_what_is_missing(client, sender, fake_bitrix, portal, committed):
    committed(install, client, sender, portal)
    fake_bitrix.advance(1)
    committed(post, client, EVENTS, sender.update(portal))
    fake_bitrix.advance(1)
    committed(install, client, sender, portal)
    assert fake_bitrix.rest_count("event.get") == 3
    assert fake_bitrix.rest_count("event.bind") == 2  # none refused as a duplicate
    assert bound(fake_bitrix, portal) == BOTH


def test_an_accepted_update_binds_the_dropped_handlers_again(
    client, sender, fake_bitrix, portal, committed
):
    committed(install, client, sender, portal)
    fake_bitrix.drop_handlers(CLIENT_ID, portal)  # Bitrix24 drops them on an app update
    fake_bitrix.advance(1)
    response = committed(post, client, EVENTS, sender.update(portal))
    assert json.loads(response.content)["result"] == "accepted"
    assert bound(fake_bitrix, portal) == BOTH


def test_the_connect_callback_binds_too(admin_client, fake_bitrix, portal, app, committed):
    from tests.portals.connect.test_callback import authorize, start_new

    fake_bitrix.register_app(
        CLIENT_ID, app.client_secret, scope="crm,user",
        redirect_uri=f"http://testserver/bitrix/{CLIENT_ID}/callback/",
    )  # fmt: skip
    query = start_new(admin_client, app, portal=portal)
    response = committed(admin_client.get, authorize(fake_bitrix, query, domain=portal))
    assert response.status_code == 302
    assert bound(fake_bitrix, portal) == BOTH


def test_a_failed_bind_never_fails_the_connect_and_the_token_page_says_why(
    admin_client, fake_bitrix, portal, committed
):
    fake_bitrix.rest_fail_next("insufficient_scope", method="event.get")
    token = committed(connect, fake_bitrix, portal=portal)
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.events_bound_at is None
    assert token.events_bind_error.startswith("insufficient_scope")
    page = admin_client.get(reverse("admin:portals_token_change", args=[token.pk]))
    html = page.content.decode()
    assert 'id="events-warning"' in html
    assert "Uninstall events not bound: insufficient_scope" in html


def test_without_a_usable_site_url_the_token_page_says_uninstall_events_cannot_arrive(
    admin_client, fake_bitrix, portal, committed, settings
):
    token = committed(connect, fake_bitrix, portal=portal)
    settings.SITE_URL, settings.BITRIX_ALLOW_HTTP = "http://keeper.example.com", False
    html = admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content.decode()
    assert "Uninstall events cannot arrive: SITE_URL (http://keeper.example.com)" in html
    assert html.count('id="events-warning"') == 1


def test_nothing_is_bound_where_the_portal_could_not_call_back(fake_bitrix, committed, caplog):
    # SITE_URL is local (http://127.0.0.1:8000): a portal elsewhere could never post to it.
    token = committed(connect, fake_bitrix, portal="localhost.example.com")
    assert fake_bitrix.rest_count() == 0
    assert Token.objects.get(pk=token.pk).events_bind_error == ""
    assert "a portal elsewhere cannot reach it" in eventbind.notice(token).text


def test_with_binding_off_nothing_is_bound_and_the_page_says_so(
    admin_client, fake_bitrix, portal, committed, settings
):
    settings.BITRIX_BIND_EVENTS = False
    token = committed(connect, fake_bitrix, portal=portal)
    assert fake_bitrix.rest_count("event.get") == 0
    html = admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content.decode()
    assert f"BITRIX_BIND_EVENTS is off: bind ONAPPUNINSTALL to {HANDLER} yourself" in html


def test_the_daily_check_binds_dropped_handlers_again(
    client, sender, fake_bitrix, portal, committed
):
    from portals.connect.tasks import check_event_bindings

    committed(install, client, sender, portal)
    fake_bitrix.drop_handlers(CLIENT_ID, portal)  # an update whose ONAPPUPDATE never came
    assert check_event_bindings() == 1
    assert bound(fake_bitrix, portal) == BOTH
    assert check_event_bindings.name == "portals.tasks.check_event_bindings"
    task = PeriodicTask.objects.get(task=check_event_bindings.name)  # the data migration's
    assert task.enabled and task.interval.every == 24 * 3600 and task.interval.period == "seconds"


# --- an uninstall of a token connected by code ---------------------------------------------------
@pytest.fixture
def code_token(fake_bitrix, portal):
    return connect(fake_bitrix, portal=portal)


def test_an_uninstall_of_a_code_token_is_checked_by_one_refresh(
    client, sender, fake_bitrix, portal, code_token
):
    fake_bitrix.set_installed(CLIENT_ID, portal, False)
    before = timezone.now()
    for _ in range(2):
        response = post(client, EVENTS, sender.uninstall(portal, clean=True))
        assert (response.status_code, json.loads(response.content)) == (403, REFUSED)
    token = Token.objects.get()
    assert token.status == TokenStatus.ACTIVE and token.refresh_token  # nothing believed yet
    assert before <= token.uninstall_checked_at <= token.next_refresh_at <= timezone.now()
    assert refresh_if_due(token.pk) == "failed"
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED and token.last_error_code == "NOT_INSTALLED"
    assert token.refresh_token  # data[CLEAN] counts only with the stored application_token
    assert Incident.objects.get(token=token).permanent


def test_a_forged_uninstall_of_a_code_token_changes_nothing(
    client, sender, fake_bitrix, portal, code_token
):
    post(client, EVENTS, sender.uninstall(portal))
    assert refresh_if_due(code_token.pk) == "refreshed"  # Bitrix24: still installed
    assert Token.objects.get().status == TokenStatus.ACTIVE


def test_the_uninstall_check_runs_at_most_once_per_ten_minutes(
    client, sender, fake_bitrix, portal, code_token
):
    post(client, EVENTS, sender.uninstall(portal))
    refresh_if_due(code_token.pk)
    for minutes, due in ((9, False), (11, True)):
        checked = timezone.now() - timedelta(minutes=minutes)
        Token.objects.filter(pk=code_token.pk).update(uninstall_checked_at=checked)
        post(client, EVENTS, sender.uninstall(portal))
        token = Token.objects.get()
        assert (token.next_refresh_at <= timezone.now()) is due
    assert timedelta(minutes=10) == uninstall.CHECK_EVERY


def test_an_uninstall_with_the_stored_application_token_is_believed_at_once(
    client, sender, fake_bitrix, portal
):
    token = install(client, sender, portal)
    response = post(client, EVENTS, sender.uninstall(portal, clean=True))
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.status == TokenStatus.UNINSTALLED and token.refresh_token == ""
    assert token.client_endpoint == portal_rest_url(portal)
