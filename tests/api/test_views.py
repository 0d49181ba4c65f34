"""The token API (GET /api/tokens/<reference>/) and its API keys."""

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from api import keys
from api.models import ApiKey
from core.logging import redact
from portals.models import Token, TokenStatus
from portals.tokens import state
from tests.conftest import PORTAL, connect

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(token) -> str:
    """A key for the token "token"."""
    return keys.create_key("billing", ["token"])[1]


def get(client, reference: str, key: str | None = None, secure: bool = False, **query):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.get(f"/api/tokens/{reference}/", query, headers=headers, secure=secure)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code and body["detail"].endswith((".", ")"))
    return body


def test_it_returns_the_token_and_where_to_use_it(client, token, key):
    response = get(client, "token", key)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    token.refresh_from_db()
    assert body == {
        "id": token.pk,
        "reference": "token",
        "access_token": token.access_token,
        "expires_at": token.expires_at.isoformat(),
        "expires": int(token.expires_at.timestamp()),
        "expires_in": body["expires_in"],
        "domain": PORTAL,
        "member_id": token.portal.member_id,
        "client_endpoint": f"https://{PORTAL}/rest/",
        "server_endpoint": token.server_endpoint,
        "scope": "crm,user",
        "status": "active",
        "app_status": "L",
        "user_id": token.user_id,
    }
    assert 3500 < body["expires_in"] <= 3600 and token.server_endpoint.endswith("/rest/")


def test_client_endpoint_is_a_usable_rest_root_even_when_none_was_stored(client, token, key):
    Token.objects.filter(pk=token.pk).update(client_endpoint="")
    assert get(client, "token", key).json()["client_endpoint"] == f"https://{PORTAL}/rest/"


def test_it_refreshes_first_when_the_token_expires_within_min_ttl(client, fake_bitrix, token, key):
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=200))
    assert get(client, "token", key, min_ttl=100).json()["access_token"] == token.access_token
    assert fake_bitrix.count("refresh_token") == 0
    body = get(client, "token", key).json()  # min_ttl 300 by default
    assert fake_bitrix.count("refresh_token") == 1
    assert body["access_token"] != token.access_token and body["expires_in"] > 3500


@pytest.mark.parametrize("min_ttl", ["-1", "3001", "soon", ""])
def test_a_min_ttl_outside_0_to_3000_is_a_bad_request(client, token, key, min_ttl):
    body = assert_error(get(client, "token", key, min_ttl=min_ttl), 400, "bad_request")
    assert "min_ttl" in body["detail"]


def test_min_ttl_0_and_3000_are_accepted(client, token, key):
    assert get(client, "token", key, min_ttl=0).status_code == 200
    assert get(client, "token", key, min_ttl=3000).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer b24k_not-a-key", "Basic dXNlcjpwYXNz", "b24k_without_scheme"],
)
def test_no_or_unknown_key_is_unauthorized(client, token, key, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/api/tokens/token/", headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_or_expired_key_is_unauthorized(settings, client, token, key):
    settings.API_KEY_CACHE_SECONDS = 0  # the database changes below bypass keys.revoke()
    api_key = ApiKey.objects.get()
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now())
    assert_error(get(client, "token", key), 401, "unauthorized")
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=None)
    assert get(client, "token", key).status_code == 200
    keys.revoke([api_key.pk])
    assert_error(get(client, "token", key), 401, "unauthorized")


def test_a_reference_outside_the_keys_tokens_is_forbidden_whether_it_exists_or_not(
    client, fake_bitrix, token, key
):
    connect(fake_bitrix, reference="other", portal="other.bitrix24.com")
    existing = assert_error(get(client, "other", key), 403, "forbidden")
    missing = assert_error(get(client, "nope", key), 403, "forbidden")
    assert existing["detail"].replace("other", "X") == missing["detail"].replace("nope", "X")


def test_a_key_for_every_token_gets_404_for_an_unknown_reference(client, token):
    _, every = keys.create_key("ops", None)
    assert get(client, "token", every).status_code == 200
    assert_error(get(client, "nope", every), 404, "not_found")


@pytest.mark.parametrize(
    "status", [TokenStatus.DISABLED, TokenStatus.NEEDS_REAUTH, TokenStatus.UNINSTALLED]
)
def test_a_token_that_needs_a_person_is_409_with_its_status(client, token, key, status):
    Token.objects.filter(pk=token.pk).update(status=status)
    body = assert_error(get(client, "token", key), 409, "token_unavailable")
    assert body["status"] == status
    # A sentence a developer can act on: what is wrong, and who does what about it.
    assert " is needs " not in body["detail"] and " is app " not in body["detail"]
    assert any(word in body["detail"] for word in ("connects it again", "install", "enable"))


def test_a_refresh_refused_for_good_is_409_with_the_new_status(client, fake_bitrix, token, key):
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=10))
    fake_bitrix.revoke_chain(token.refresh_token)
    body = assert_error(get(client, "token", key), 409, "token_unavailable")
    assert body["status"] == TokenStatus.NEEDS_REAUTH


def test_a_transient_refresh_failure_on_an_expired_token_is_502(client, fake_bitrix, token, key):
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    fake_bitrix.fail_next("status", status=503)
    body = assert_error(get(client, "token", key), 502, "refresh_failed")
    assert "QUERY_LIMIT_EXCEEDED" in body["detail"]


def test_a_transient_refresh_failure_with_time_left_serves_the_current_token(
    client, fake_bitrix, token, key
):
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=120))
    fake_bitrix.fail_next("status", status=500)
    assert get(client, "token", key).json()["access_token"] == token.access_token


def test_a_refresh_in_flight_elsewhere_too_long_is_503_with_retry_after(
    settings, client, token, key
):
    settings.TOKEN_REFRESH_WAIT = 0.3
    Token.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() + timedelta(seconds=10), refresh_started_at=timezone.now()
    )
    response = get(client, "token", key)
    assert_error(response, 503, "refresh_busy")
    assert int(response["Retry-After"]) > 0


def test_a_key_over_its_rate_gets_429_with_retry_after(client, token):
    _, slow = keys.create_key("slow", ["token"], rate_per_minute=2)
    assert [get(client, "token", slow).status_code for _ in range(2)] == [200, 200]
    response = get(client, "token", slow)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 30


def test_renaming_the_reference_keeps_the_key_working(settings, client, token, key):
    settings.API_KEY_CACHE_SECONDS = 0  # a rename is seen within the cache's seconds
    state.update_staff_fields(token.pk, reference="billing-token")
    assert get(client, "billing-token", key).json()["reference"] == "billing-token"
    assert_error(get(client, "token", key), 403, "forbidden")


def test_last_use_is_written_at_most_once_a_minute(client, token, key):
    get(client, "token", key)
    api_key = ApiKey.objects.get()
    first = api_key.last_used_at
    assert first is not None and api_key.last_used_from == "127.0.0.1"
    get(client, "token", key)
    assert ApiKey.objects.get().last_used_at == first
    ApiKey.objects.update(last_used_at=first - timedelta(minutes=2))
    keys.forget_cached()  # as a minute later: this process's own note of the last write
    get(client, "token", key)
    assert ApiKey.objects.get().last_used_at > first


def test_behind_the_proxy_the_last_address_is_the_one_the_proxy_saw(settings, token, key):
    settings.HTTPS, settings.TRUSTED_PROXY_COUNT = True, 1
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7")
    get(client, "token", key, secure=True)
    assert ApiKey.objects.get().last_used_from == "198.51.100.7"


def test_other_methods_and_paths_answer_json(client, token, key):
    response = client.post("/api/tokens/token/", headers={"Authorization": f"Bearer {key}"})
    assert_error(response, 405, "method_not_allowed")
    assert_error(client.get("/api/nothing/"), 404, "not_found")


def test_no_key_value_in_the_database_or_the_logs(client, token, caplog):
    caplog.set_level(logging.DEBUG)
    api_key, key = keys.create_key("billing", ["token"])
    get(client, "token", key)
    get(client, "token", key + "x")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_apikey")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert key not in stored and key[len(keys.PREFIX) :] not in stored
    assert api_key.key_hash in stored and api_key.prefix == key[:12]
    assert key[12:] not in caplog.text
    # And if a library ever logs the header, the log filter blanks it.
    assert key[12:] not in redact(f"GET /api/tokens/token/ Authorization: Bearer {key}")


# --- the command ------------------------------------------------------------------------------


def test_the_command_prints_a_working_key_once(client, token):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "--name", "billing", "--reference", "token", stdout=out,
                 stderr=err)  # fmt: skip
    key = out.getvalue().strip()
    assert key.startswith(keys.PREFIX) and key not in err.getvalue()
    assert "reads token" in err.getvalue()
    assert get(client, "token", key).status_code == 200
    api_key = ApiKey.objects.get()
    assert not api_key.all_tokens and list(api_key.tokens.all()) == [token]


def test_the_command_without_a_reference_makes_a_key_for_every_token(client, token):
    out = StringIO()
    call_command("create_api_key", "--name", "ops", stdout=out, stderr=StringIO())
    assert ApiKey.objects.get().all_tokens
    assert get(client, "token", out.getvalue().strip()).status_code == 200


def test_the_command_refuses_an_unknown_reference_and_creates_nothing(token):
    with pytest.raises(CommandError, match="nope"):
        call_command("create_api_key", "--name", "x", "--reference", "token", "--reference",
                     "nope", stdout=StringIO(), stderr=StringIO())  # fmt: skip
    assert not ApiKey.objects.exists()


def test_the_command_makes_a_proxy_key_with_method_patterns(client, token):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "--name", "crm", "--reference", "token", "--scope",
                 "token,proxy", "--methods", "crm.lead.*,user.current", stdout=out,
                 stderr=err)  # fmt: skip
    api_key = ApiKey.objects.get()
    assert api_key.scopes == "token,proxy" and api_key.methods.split() == [
        "crm.lead.*",
        "user.current",
    ]
    assert out.getvalue().strip() not in err.getvalue() and "proxy" in err.getvalue()


def test_existing_and_default_keys_keep_the_token_scope_only(token):
    call_command("create_api_key", "--name", "x", stdout=StringIO(), stderr=StringIO())
    assert ApiKey.objects.get().scopes == "token"


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--scope", "tokens", "Scopes"), ("--methods", "crm lead/list", "method pattern")],
)
def test_the_command_refuses_a_bad_scope_or_pattern_and_creates_nothing(
    token, option, value, named
):
    with pytest.raises(CommandError, match=named):
        call_command("create_api_key", "--name", "x", option, value, stdout=StringIO(),
                     stderr=StringIO())  # fmt: skip
    assert not ApiKey.objects.exists()
