"""Fixtures of the install and event tests: the app, a portal the fake serves REST for, and the
fake portal's event sender. A test module loads them with
`pytest_plugins = ["tests.events_fixtures"]`; plain helpers are in tests/events_helpers.py."""

import pytest

from portals.models import AppCredentials
from tests.conftest import CLIENT_ID, CLIENT_SECRET, local_host
from tests.fakes.bitrix_events import EventSender


@pytest.fixture
def app(fake_bitrix):
    return AppCredentials.objects.create(
        name="CRM sync", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )


@pytest.fixture
def sender(fake_bitrix, app):
    return EventSender(fake_bitrix, CLIENT_ID)


@pytest.fixture
def portal(fake_bitrix) -> str:
    """A portal whose REST API (user.admin, event.bind, ...) the fake answers."""
    return local_host(fake_bitrix)
