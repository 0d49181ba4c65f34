"""Helpers of the install and event tests (fixtures: tests/events_fixtures.py)."""

from django.test import Client

from portals.models import Token
from tests.conftest import CLIENT_ID
from tests.fakes.bitrix_events import FORM, EventSender

EVENTS = f"/bitrix/{CLIENT_ID}/events/"
INSTALL = f"/bitrix/{CLIENT_ID}/install/"
REFUSED = {"error": "not_authenticated"}


def post(client: Client, url: str, form: dict[str, str]):
    return client.post(url, EventSender.encode(form), content_type=FORM)


def install(client: Client, sender: EventSender, domain: str, url: str = EVENTS) -> Token:
    """ONAPPINSTALL as the portal's administrator; the token it stored."""
    response = post(client, url, sender.install(domain))
    assert response.status_code == 200, response.content
    return Token.objects.get(portal__domain=domain)


def frame(client: Client, sender: EventSender, domain: str, user: int | None = None):
    query, form = sender.frame(domain, user)
    url = f"{INSTALL}?DOMAIN={query['DOMAIN']}&LANG=en"
    return client.post(url, EventSender.encode(form), content_type=FORM), form
