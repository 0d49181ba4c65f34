"""Connecting a portal: the admin "Add task" form, the command, and what bad input does."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from notifications.models import Incident
from portals.connect.grants import ConnectError
from portals.models import AppCredentials, Portal, RefreshAttempt, Token, TokenStatus
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL, connect

pytestmark = pytest.mark.django_db


def assert_nothing_stored():
    assert Portal.objects.count() == 0
    assert AppCredentials.objects.count() == 0
    assert Token.objects.count() == 0
    assert RefreshAttempt.objects.count() == 0


def raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_it_connects_through_the_command_and_stores_the_token(fake_bitrix, capsys):
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    call_command(
        "connect_portal",
        "--portal", "https://ACME.bitrix24.com/crm/",
        "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET,
        "--scope", "crm, user",
        "--code", code,
    )  # fmt: skip
    token = Token.objects.get(reference="token")
    exchange = fake_bitrix.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["params"]["code"] == code
    assert token.status == TokenStatus.ACTIVE
    assert token.portal.domain == "acme.bitrix24.com"
    assert len(token.portal.member_id) == 32
    assert token.access_token and fake_bitrix.access_token_valid(token.access_token)
    assert token.refresh_token == fake_bitrix.current_refresh_token(
        token.portal.member_id, CLIENT_ID
    )
    assert token.server_endpoint == f"{fake_bitrix.base_url}/rest/"
    assert token.version == 1
    assert token.app.scope == "crm,user"
    assert "Connected acme.bitrix24.com" in capsys.readouterr().out
    assert token.owner is None
    attempt = RefreshAttempt.objects.get()
    assert (attempt.kind, attempt.outcome) == ("code_exchange", "success")


def test_it_keeps_secrets_encrypted_in_the_raw_columns(token):
    for column in ("access_token", "refresh_token"):
        raw = raw_column("portals_token", column, token.pk)
        assert raw.startswith("gAAAA")
        assert getattr(token, column) not in raw
    raw_secret = raw_column("portals_appcredentials", "client_secret", token.app.pk)
    assert CLIENT_SECRET not in raw_secret


def test_it_connects_through_the_admin_form_and_shows_only_masks(fake_bitrix, admin_client):
    url = reverse("admin:portals_token_connect")
    page = admin_client.post(url, {"portal": "acme", "client_id": CLIENT_ID, "_preview": "1"})
    assert "https://acme.bitrix24.ru/oauth/authorize/?client_id=" in page.content.decode()
    code = fake_bitrix.issue_code(CLIENT_ID, "acme.bitrix24.ru")
    form = {
        "portal": "acme",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": "token",
    }
    response = admin_client.post(url, form)
    token = Token.objects.get(reference="token")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:portals_token_change", args=[token.pk])
    assert token.owner.username == "admin"  # who connected it answers for it
    pages = [
        admin_client.get(response["Location"]),
        admin_client.get(reverse("admin:portals_token_changelist")),
        admin_client.get(reverse("admin:portals_appcredentials_change", args=[token.app.pk])),
    ]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        for secret in (token.access_token, token.refresh_token, CLIENT_SECRET):
            assert secret not in html
            assert secret[:12] not in html
    detail = pages[0].content.decode()
    assert "••••" + token.access_token[-4:] in detail
    assert "Code exchange" in detail


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"portal": "not a portal!"}, "portal", "Enter the portal as a name"),
        ({"portal": "https://"}, "portal", "is not a portal address"),
        ({"scope": "crm,telepathy"}, "scope", "Unknown scope: telepathy. Valid scopes are:"),
        ({"client_id": "x"}, "client_id", "3–50 letters"),
        ({"reference": "has space"}, "reference", "letters, digits, hyphens"),
    ],
)
def test_it_rejects_bad_input_before_spending_the_code(fake_bitrix, change, field, words):
    with pytest.raises(ValidationError) as caught:
        connect(fake_bitrix, **change)
    assert words in " ".join(caught.value.message_dict[field])
    assert fake_bitrix.count() == 0
    assert_nothing_stored()


def test_it_explains_an_expired_code_and_stores_nothing(fake_bitrix):
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    fake_bitrix.advance(31)
    with pytest.raises(ConnectError) as caught:
        connect(fake_bitrix, code=code)
    message = str(caught.value)
    assert caught.value.field == "code"
    assert "expired_token" in message and "30 seconds" in message
    assert f"https://{PORTAL}/oauth/authorize/?client_id={CLIENT_ID}" in message
    assert_nothing_stored()


def test_it_refuses_a_reused_code_and_keeps_the_first_connection(fake_bitrix):
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    token = connect(fake_bitrix, code=code)
    with pytest.raises(ConnectError) as caught:
        connect(fake_bitrix, code=code)
    assert "invalid_grant" in str(caught.value)
    token.refresh_from_db()
    assert token.version == 1 and RefreshAttempt.objects.count() == 1


def test_it_names_the_secret_when_it_is_wrong(fake_bitrix):
    with pytest.raises(ConnectError) as caught:
        connect(fake_bitrix, client_secret="wrong" * 10)
    assert caught.value.field == "client_secret"
    assert "invalid_client" in str(caught.value)
    assert "wrong" * 10 not in str(caught.value)
    assert_nothing_stored()


def test_it_names_the_client_id_when_bitrix_does_not_know_it(fake_bitrix):
    fake_bitrix.register_app("local.00000000000000.00000000", "s" * 50)
    code = fake_bitrix.issue_code("local.00000000000000.00000000", PORTAL)
    with pytest.raises(ConnectError) as caught:
        connect(fake_bitrix, client_id="local.11111111111111.11111111", code=code)
    assert caught.value.field == "client_id"
    assert "wrong_client" in str(caught.value)
    assert fake_bitrix.token_requests[-1]["status"] == 200
    assert_nothing_stored()


def test_the_command_fails_with_the_field_and_no_secret(fake_bitrix):
    with pytest.raises(CommandError) as caught:
        call_command(
            "connect_portal",
            "--portal", PORTAL,
            "--client-id", CLIENT_ID,
            "--client-secret", "wrong-secret-value-123",
            "--scope", "crm",
            "--code", fake_bitrix.issue_code(CLIENT_ID, PORTAL),
        )  # fmt: skip
    assert str(caught.value).startswith("--client-secret:")
    assert "wrong-secret-value-123" not in str(caught.value)
    assert_nothing_stored()


def test_the_admin_form_shows_bitrix_error_and_stores_nothing(fake_bitrix, admin_client):
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    fake_bitrix.advance(31)
    form = {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm",
        "code": code,
        "reference": "token",
    }
    page = admin_client.post(reverse("admin:portals_token_connect"), form)
    html = page.content.decode()
    assert page.status_code == 200
    assert "expired_token" in html and "30 seconds" in html
    assert CLIENT_SECRET not in html
    assert_nothing_stored()


def test_a_reference_of_another_portal_is_refused(fake_bitrix):
    connect(fake_bitrix)
    with pytest.raises(ValidationError) as caught:
        connect(fake_bitrix, portal="other.bitrix24.com")
    assert "already names the token of acme.bitrix24.com" in str(caught.value)


def test_reconnecting_resolves_the_open_incident(fake_bitrix):
    token = connect(fake_bitrix)
    Incident.objects.create(token=token, message="refresh failing")
    connect(fake_bitrix)
    assert Incident.objects.get().resolved_at is not None
