"""Token answers whose side fields do not fit our columns: the pair is kept, the field dropped.

Bitrix24 answers with a user id, a member_id and endpoints beside the tokens. A value our
columns cannot hold (a user id beyond 32 bits, a 40-character member_id) used to fail the
store after the code was spent: a 500 on connect, a lost pair on refresh.
"""

import pytest
from django.urls import reverse

from portals.connect.grants import ConnectError
from portals.models import Token, TokenStatus
from portals.tokens import refresh
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL, connect, serve_fake
from tests.fakes.bitrix import FakeBitrix
from tests.fakes.bitrix_state import App, Body, Grant, Portal

pytestmark = pytest.mark.django_db


class SkewedBitrix(FakeBitrix):
    """The fake authorization server, with some fields of its success answers replaced."""

    def __init__(self) -> None:
        super().__init__()
        self.replaced: dict[str, object] = {}

    def _success_body(self, app: App, portal: Portal, grant: Grant | None) -> Body:
        return super()._success_body(app, portal, grant) | self.replaced


@pytest.fixture
def skewed_bitrix(settings):
    fake = serve_fake(settings, SkewedBitrix)
    yield fake
    fake.stop()


@pytest.mark.parametrize(
    ("replaced", "dropped"),
    [
        ({"user_id": 2**31}, "user_id"),
        ({"user_id": -1}, "user_id"),
        ({"member_id": "a" * 40}, "member_id"),
        ({"client_endpoint": f"https://{PORTAL}/rest/{'x' * 200}/"}, "client_endpoint"),
    ],
)
def test_it_connects_and_drops_a_side_field_that_does_not_fit(
    skewed_bitrix, admin_client, replaced, dropped
):
    skewed_bitrix.replaced = replaced
    code = skewed_bitrix.issue_code(CLIENT_ID, PORTAL)
    form = {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": "token",
    }
    response = admin_client.post(reverse("admin:portals_token_connect"), form)
    assert response.status_code == 302
    token = Token.objects.select_related("portal").get(reference="token")
    assert token.status == TokenStatus.ACTIVE
    assert skewed_bitrix.access_token_valid(token.access_token)
    stored = {
        "user_id": token.user_id,
        "member_id": token.portal.member_id,
        "client_endpoint": token.client_endpoint,
    }
    assert stored[dropped] in (None, "")


def test_a_refresh_keeps_the_new_pair_when_the_user_id_does_not_fit(skewed_bitrix):
    token = connect(skewed_bitrix)
    assert token.user_id == 1
    skewed_bitrix.replaced = {"user_id": 2**40}
    refresh("token")
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.version == 2
    assert token.refresh_token == skewed_bitrix.current_refresh_token(
        token.portal.member_id, CLIENT_ID
    )
    assert token.user_id == 1


def test_it_explains_an_expiry_beyond_the_calendar_and_stores_nothing(skewed_bitrix):
    skewed_bitrix.replaced = {"expires": 10**20}
    with pytest.raises(ConnectError) as caught:
        connect(skewed_bitrix)
    assert "malformed numbers" in str(caught.value)
    assert Token.objects.count() == 0
