"""POST /api/tokens/<reference>/renew/, GET /api/tokens/?member_id=|domain=, and the API key
cache (API_KEY_CACHE_SECONDS)."""

import hashlib
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from api import keys
from api.models import ApiKey
from tests.conftest import PORTAL, connect
from tests.processes import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(token) -> str:
    return keys.create_key("billing", ["token"])[1]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def post_renew(client, key: str, body: object, reference: str = "token", **extra):
    return client.post(
        f"/api/tokens/{reference}/renew/",
        body,
        content_type=extra.pop("content_type", "application/json"),
        headers={"Authorization": f"Bearer {key}"},
    )


def test_renew_refreshes_a_refused_token_once_and_answers_like_get(client, fake_bitrix, token, key):
    fake_bitrix.refuse_access(token.access_token)
    response = post_renew(client, key, {"rejected": sha(token.access_token)})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    got = client.get("/api/tokens/token/", headers={"Authorization": f"Bearer {key}"}).json()
    assert body.keys() == got.keys() and body["access_token"] == got["access_token"]
    assert body["access_token"] != token.access_token
    assert fake_bitrix.access_token_valid(body["access_token"])
    # Asking again with the old token's hash: the stored one, no second refresh.
    again = post_renew(client, key, {"rejected": sha(token.access_token).upper()})
    assert again.json()["access_token"] == body["access_token"]
    assert fake_bitrix.count("refresh_token") == 1


def test_a_refusal_that_persists_gets_429_renew_limited(client, fake_bitrix, token, key):
    fake_bitrix.refuse_every_access()
    fresh = post_renew(client, key, {"rejected": sha(token.access_token)}).json()["access_token"]
    response = post_renew(client, key, {"rejected": sha(fresh)})
    assert response.status_code == 429 and response.json()["error"] == "renew_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert fake_bitrix.count("refresh_token") == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"rejected": "abc"}, "application/json"),
        ({}, "application/json"),
        ("rejected=" + "a" * 64, "application/x-www-form-urlencoded"),
        ("{not json", "application/json"),
    ],
)
def test_a_renew_without_a_sha256_is_400_naming_the_field(client, token, key, body, content_type):
    response = post_renew(client, key, body, content_type=content_type)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert "rejected" in response.json()["detail"]


def test_renew_keeps_the_token_apis_statuses(client, token, key):
    good = {"rejected": sha(token.access_token)}
    assert post_renew(client, "b24k_" + "x" * 43, good).status_code == 401
    assert post_renew(client, key, good, reference="other").status_code == 403
    got = client.get("/api/tokens/token/renew/", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 405 and got["Allow"] == "POST"


def test_lookup_by_member_id_or_domain_lists_the_keys_tokens_without_access_tokens(
    client, fake_bitrix, token, key
):
    other = connect(fake_bitrix, reference="other", portal="other.bitrix24.com")
    headers = {"Authorization": f"Bearer {key}"}
    by_member = client.get("/api/tokens/", {"member_id": token.portal.member_id}, headers=headers)
    assert by_member.status_code == 200
    listed = by_member.json()["tokens"]
    assert listed == [
        {
            "reference": "token",
            "domain": PORTAL,
            "member_id": token.portal.member_id,
            "status": "active",
            "expires": int(token.expires_at.timestamp()),
        }
    ]
    by_domain = client.get("/api/tokens/", {"domain": PORTAL.upper()}, headers=headers).json()
    assert by_domain["tokens"] == listed
    # Not this key's token: not listed (the same answer as an unknown portal).
    hidden = client.get("/api/tokens/", {"domain": other.portal.domain}, headers=headers)
    assert hidden.json() == {"tokens": []}
    both = client.get("/api/tokens/", {"domain": PORTAL, "member_id": "x"}, headers=headers)
    assert both.status_code == 400 and "exactly one" in both.json()["detail"]


def test_a_proxy_only_key_may_not_read_tokens(client, token):
    _, proxy_key = keys.create_key("proxy", ["token"], scopes="proxy")
    response = client.get("/api/tokens/token/", headers={"Authorization": f"Bearer {proxy_key}"})
    assert response.status_code == 403 and "scope" in response.json()["detail"]


def test_a_revoked_key_stops_within_api_key_cache_seconds(settings, client, token, key):
    settings.API_KEY_CACHE_SECONDS = 1
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/tokens/token/", headers=headers).status_code == 200
    # Revoked by another process (not through this one's keys.revoke()): this process sees it
    # when its cached check runs out, not at once, and not later.
    revoked_at = time.monotonic()
    ApiKey.objects.update(revoked_at=timezone.now())
    assert client.get("/api/tokens/token/", headers=headers).status_code == 200  # cached
    wait_until(
        lambda: client.get("/api/tokens/token/", headers=headers).status_code == 401,
        5,
        "the revocation to take effect",
    )
    assert time.monotonic() - revoked_at <= settings.API_KEY_CACHE_SECONDS + 0.5


def test_revoking_through_keys_revoke_takes_effect_at_once_in_this_process(client, token, key):
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/tokens/token/", headers=headers).status_code == 200
    keys.revoke(ApiKey.objects.values_list("pk", flat=True))
    assert client.get("/api/tokens/token/", headers=headers).status_code == 401


def test_a_cached_key_still_stops_at_its_expiry(settings, client, token, key):
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/tokens/token/", headers=headers).status_code == 200
    keys.forget_cached()
    ApiKey.objects.update(expires_at=timezone.now() + timedelta(seconds=0.3))
    assert client.get("/api/tokens/token/", headers=headers).status_code == 200  # cached now
    wait_until(
        lambda: client.get("/api/tokens/token/", headers=headers).status_code == 401,
        3,
        "the key's expiry",
    )
