"""End to end, over real HTTP: b24keeper binds its uninstall handler on the fake portal, an
administrator removes the app there, and the fake's event queue posts ONAPPUNINSTALL to the live
server, which marks the token *app uninstalled* with one incident. For a token connected by
code, a real Celery worker runs the refresh that proves it."""

import pytest

from notifications.models import Incident
from portals.models import Token, TokenStatus
from tests.conftest import CLIENT_ID, connect
from tests.events_helpers import EVENTS
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.events_fixtures"]


@pytest.fixture
def site(live_server, settings) -> str:
    """b24keeper, reachable by the fake portal at SITE_URL, binding its handlers there."""
    settings.SITE_URL = live_server.url
    settings.BITRIX_BIND_EVENTS = True
    return live_server.url


def handlers(fake, portal: str) -> list[tuple[str, str]]:
    return sorted((h.event, h.handler) for h in fake.handlers(CLIENT_ID, portal))


def test_an_uninstall_in_the_portal_reaches_b24keeper(site, sender, fake_bitrix, portal):
    status, body = sender.post(f"{site}{EVENTS}", sender.install(portal))
    assert (status, body["result"]) == (200, "accepted")
    handler = f"{site}/bitrix/{CLIENT_ID}/events/"
    assert handlers(fake_bitrix, portal) == [("ONAPPUNINSTALL", handler), ("ONAPPUPDATE", handler)]
    [(to, status, body)] = sender.uninstall_app(portal)
    assert (to, status, body["result"]) == (handler, 200, "accepted")
    token = Token.objects.get()
    assert token.status == TokenStatus.UNINSTALLED
    assert Incident.objects.filter(token=token).count() == 1


@pytest.mark.celery
def test_an_uninstall_of_a_token_connected_by_code_is_proved_by_a_refresh(
    site, sender, fake_bitrix, portal, celery
):
    token = connect(fake_bitrix, portal=portal)  # no application_token: nothing proves an event
    bound = [event for event, _ in handlers(fake_bitrix, portal)]
    assert bound == ["ONAPPUNINSTALL", "ONAPPUPDATE"]
    celery.worker()
    [(_, status, _)] = sender.uninstall_app(portal)
    assert status == 403  # not authenticated, so it is checked with Bitrix24 instead
    wait_until(
        lambda: Token.objects.get(pk=token.pk).status == TokenStatus.UNINSTALLED,
        30,
        "the worker's refresh to answer NOT_INSTALLED",
    )
    assert Token.objects.get(pk=token.pk).last_error_code == "NOT_INSTALLED"
    # The incident commits a moment after the status (its deliveries with it).
    wait_until(lambda: Incident.objects.filter(token=token).count() == 1, 30, "the incident")
    assert fake_bitrix.count("refresh_token") == 1
