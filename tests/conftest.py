"""Shared fixtures: the wire-level fake Bitrix24 server and a connected token."""

import pytest

from portals.connect import ConnectInput, connect_portal
from tests.fakes.bitrix import FakeBitrix

CLIENT_ID = "local.6a1b2c3d4e5f60.48151623"
CLIENT_SECRET = "Zx9QeVwPl3sT8mNc2RbK7uYhG4dFa1Jo6iLk5ErTy0WqA3sDf8"
PORTAL = "acme.bitrix24.com"


@pytest.fixture
def fake_bitrix(settings):
    """A fake authorization server on 127.0.0.1, reached through the real settings."""
    fake = FakeBitrix().start()
    fake.register_app(CLIENT_ID, CLIENT_SECRET, scope="crm,user")
    settings.BITRIX_OAUTH_SERVER = fake.base_url
    settings.BITRIX_ALLOW_HTTP = True
    yield fake
    fake.stop()


def connect(fake: FakeBitrix, reference: str = "token", portal: str = PORTAL, **overrides):
    code = fake.issue_code(CLIENT_ID, portal)
    data = {
        "portal": portal,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": reference,
        **overrides,
    }
    return connect_portal(ConnectInput(**data))


@pytest.fixture
def token(fake_bitrix, db):
    """A token connected through the real code exchange."""
    return connect(fake_bitrix)
