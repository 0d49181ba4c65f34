"""Secrets go only to Bitrix's authorization servers (BITRIX_AUTH_SERVERS): not from an edited
field, not from an answer that names another server, not at refresh time."""

import pytest
from django.core.checks import run_checks
from django.urls import reverse

from portals.bitrix import authservers
from portals.connect.grants import ConnectError
from portals.models import Portal, Token, TokenStatus
from portals.tokens import TokenConfigurationError, refresh
from tests.conftest import CLIENT_ID, CLIENT_SECRET, connect
from tests.fakes.bitrix import FakeBitrix

pytestmark = pytest.mark.django_db


@pytest.fixture
def capture():
    """A server on 127.0.0.1 that is not an authorization server: it records what reaches it."""
    server = FakeBitrix().start()
    yield server
    server.stop()


def test_a_refresh_never_goes_to_a_server_outside_the_list(fake_bitrix, token, capture):
    Token.objects.filter(pk=token.pk).update(server_endpoint=f"{capture.base_url}/rest/")
    with pytest.raises(TokenConfigurationError) as raised:
        refresh("token")
    assert raised.value.setting == "BITRIX_AUTH_SERVERS"
    assert capture.count() == 0
    token.refresh_from_db()
    assert token.status == TokenStatus.CONFIG_ERROR and token.refresh_started_at is None


def test_a_connect_answer_naming_another_server_stores_nothing(fake_bitrix, capture):
    fake_bitrix.base_url = capture.base_url  # its answers now name the capture server
    with pytest.raises(ConnectError, match="BITRIX_AUTH_SERVERS"):
        connect(fake_bitrix)
    assert not Token.objects.exists() and not Portal.objects.exists()


def test_a_refresh_answer_naming_another_server_keeps_the_pair_but_not_the_server(
    fake_bitrix, token, capture
):
    real_server = token.server_endpoint
    fake_bitrix.base_url = capture.base_url
    refresh("token")
    token.refresh_from_db()
    assert token.refresh_token == fake_bitrix.current_refresh_token(
        token.portal.member_id, CLIENT_ID
    )
    assert token.server_endpoint == real_server
    refresh("token")
    assert capture.count() == 0


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:1", "https://169.254.169.254", "https://localhost:5432"]
)
def test_the_portal_form_refuses_an_authorization_server_outside_the_list(
    admin_client, token, server
):
    portal = token.portal
    url = reverse("admin:portals_portal_change", args=[portal.pk])
    form = {"domain": portal.domain, "member_id": portal.member_id, "auth_server": server}
    page = admin_client.post(url, form)
    assert page.status_code == 200 and "BITRIX_AUTH_SERVERS" in page.content.decode()
    portal.refresh_from_db()
    assert portal.auth_server != server


def test_origins_must_match_scheme_host_and_port(settings):
    settings.BITRIX_AUTH_SERVERS = ["https://oauth.bitrix.info", "https://oauth.bitrix24.tech"]
    settings.BITRIX_ALLOW_HTTP = False
    assert authservers.is_allowed("https://oauth.bitrix.info/rest/")
    assert authservers.is_allowed("https://oauth.bitrix.info:443")
    assert authservers.is_allowed("oauth.bitrix24.tech")  # a callback's server_domain
    for refused in (
        "http://oauth.bitrix.info",
        "https://oauth.bitrix.info:8443",
        "https://oauth.bitrix.info.evil.example",
        "https://evil.example/?https://oauth.bitrix.info",
        "evil.example",
        "",
    ):
        assert not authservers.is_allowed(refused), refused


def test_the_first_exchange_server_must_be_in_the_list(settings):
    settings.BITRIX_AUTH_SERVERS = ["https://oauth.bitrix24.tech"]
    settings.BITRIX_OAUTH_SERVER = "https://oauth.bitrix.info"
    assert "b24keeper.E005" in {m.id for m in run_checks()}


def test_nothing_is_sent_when_the_first_exchange_server_is_outside_the_list(
    fake_bitrix, settings, capture
):
    settings.BITRIX_OAUTH_SERVER = capture.base_url
    with pytest.raises(ConnectError, match="BITRIX_AUTH_SERVERS"):
        connect(fake_bitrix)
    assert capture.count() == 0 and not Token.objects.exists()
    assert CLIENT_SECRET not in str(capture.token_requests)
