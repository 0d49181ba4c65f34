"""Tests of the fake Bitrix24 authorization server itself (no database, no Django)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fakes.bitrix import FakeBitrix
from tests.processes import wait_until

CLIENT_ID = "local.6a1b2c3d4e5f60.48151623"
SECRET = "x" * 50
PORTAL = "acme.bitrix24.com"
MEMBER_ID = "899a2d17c03592f6d43c1f601b708972"
CALLBACK = "https://keeper.example/oauth/callback/"
BODY_KEYS = [
    "access_token",
    "expires",
    "expires_in",
    "scope",
    "domain",
    "server_endpoint",
    "status",
    "client_endpoint",
    "member_id",
    "user_id",
    "refresh_token",
]


@pytest.fixture
def fake() -> Iterator[FakeBitrix]:
    with FakeBitrix().start() as server:
        server.register_app(CLIENT_ID, SECRET, scope="crm,user", redirect_uri=CALLBACK)
        server.add_portal(PORTAL, member_id=MEMBER_ID, user_id=7)
        yield server


def token(fake: FakeBitrix, timeout: float = 5, **params: str) -> requests.Response:
    return requests.get(f"{fake.base_url}/oauth/token/", params=params, timeout=timeout)


def exchange(fake: FakeBitrix, code: str) -> requests.Response:
    return token(
        fake,
        grant_type="authorization_code",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        code=code,
    )


def refresh(fake: FakeBitrix, refresh_token: str, timeout: float = 5) -> requests.Response:
    return token(
        fake,
        timeout=timeout,
        grant_type="refresh_token",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh_token=refresh_token,
    )


def seed(fake: FakeBitrix) -> dict[str, object]:
    return fake.issue_tokens(CLIENT_ID, PORTAL)


def expiry_of(tok: str) -> int:
    return int.from_bytes(bytes.fromhex(tok[:8]), "little")


def test_it_exchanges_a_code_for_a_pair_in_the_real_shape(fake: FakeBitrix) -> None:
    response = exchange(fake, fake.issue_code(CLIENT_ID, PORTAL))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert list(body) == BODY_KEYS
    host = fake.base_url.removeprefix("http://")
    assert body["domain"] == host
    assert body["server_endpoint"] == f"{fake.base_url}/rest/"
    assert body["client_endpoint"] == f"https://{PORTAL}/rest/"
    assert (body["member_id"], body["user_id"], body["status"]) == (MEMBER_ID, 7, "L")
    assert (body["scope"], body["expires_in"]) == ("crm,user", 3600)
    for key in ("access_token", "refresh_token"):
        assert len(body[key]) == 70
        assert body[key] == body[key].lower()
        int(body[key], 16)
    assert expiry_of(body["access_token"]) == body["expires"]
    assert abs(expiry_of(body["refresh_token"]) - (fake.now() + 30 * 86400)) < 5
    assert fake.access_token_valid(body["access_token"])
    assert fake.current_refresh_token(MEMBER_ID, CLIENT_ID) == body["refresh_token"]


def test_it_accepts_a_code_only_once(fake: FakeBitrix) -> None:
    code = fake.issue_code(CLIENT_ID, PORTAL)
    assert exchange(fake, code).status_code == 200

    again = exchange(fake, code)

    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_it_expires_a_code_after_30_seconds(fake: FakeBitrix) -> None:
    code = fake.issue_code(CLIENT_ID, PORTAL)
    fake.advance(31)

    response = exchange(fake, code)

    assert (response.status_code, response.json()["error"]) == (401, "expired_token")


def test_it_rejects_an_unknown_code_with_invalid_grant(fake: FakeBitrix) -> None:
    response = exchange(fake, "0" * 68)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_it_answers_an_unknown_client_with_http_200_wrong_client(fake: FakeBitrix) -> None:
    response = token(fake, grant_type="refresh_token", client_id="local.nope.1", refresh_token="x")

    assert response.status_code == 200
    assert response.json() == {"error": "wrong_client"}


@pytest.mark.parametrize("secret", [None, "wrong"])
def test_it_rejects_a_missing_or_wrong_secret(fake: FakeBitrix, secret: str | None) -> None:
    params = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": "x"}
    if secret:
        params["client_secret"] = secret

    response = token(fake, **params)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_client")


@pytest.mark.parametrize(
    ("grant_type", "error"),
    [
        (None, "invalid_request"),
        ("bogus", "invalid_request"),
        ("password", "unsupported_grant_type"),
    ],
)
def test_it_validates_the_grant_type(fake: FakeBitrix, grant_type: str | None, error: str) -> None:
    params = {"client_id": CLIENT_ID, "client_secret": SECRET}
    if grant_type:
        params["grant_type"] = grant_type

    response = token(fake, **params)

    assert (response.status_code, response.json()["error"]) == (400, error)


def test_it_names_the_missing_refresh_token_parameter(fake: FakeBitrix) -> None:
    response = token(fake, grant_type="refresh_token", client_id=CLIENT_ID, client_secret=SECRET)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": 'No "refresh_token" parameter found',
    }


def test_it_rotates_strictly_by_default(fake: FakeBitrix) -> None:
    first = seed(fake)

    second = refresh(fake, first["refresh_token"]).json()
    reused = refresh(fake, first["refresh_token"])

    assert second["refresh_token"] != first["refresh_token"]
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert not fake.access_token_valid(first["access_token"])
    assert fake.access_token_valid(second["access_token"])
    assert fake.current_refresh_token(MEMBER_ID, CLIENT_ID) == second["refresh_token"]


def test_it_keeps_the_old_refresh_token_alive_in_lenient_mode(fake: FakeBitrix) -> None:
    fake.rotation = "lenient"
    first = seed(fake)

    second = refresh(fake, first["refresh_token"]).json()
    reused = refresh(fake, first["refresh_token"])

    assert reused.status_code == 200
    assert fake.access_token_valid(first["access_token"])
    assert fake.current_refresh_token(MEMBER_ID, CLIENT_ID) == reused.json()["refresh_token"]
    assert reused.json()["refresh_token"] != second["refresh_token"]


def test_it_expires_refresh_tokens_after_their_lifetime(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.advance(30 * 86400 + 1)

    response = refresh(fake, pair["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (401, "expired_token")
    assert fake.current_refresh_token(MEMBER_ID, CLIENT_ID) is None


def test_it_can_report_an_expired_refresh_token_as_invalid_grant(fake: FakeBitrix) -> None:
    fake.expired_refresh_error = "invalid_grant"
    fake.refresh_lifetime = 60
    pair = seed(fake)
    fake.advance(61)

    response = refresh(fake, pair["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_it_rejects_a_refresh_token_of_another_client(fake: FakeBitrix) -> None:
    fake.register_app("local.other.1", "other-secret")
    foreign = fake.issue_tokens("local.other.1", PORTAL)

    response = refresh(fake, foreign["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_it_expires_access_tokens_after_an_hour(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.advance(3600)

    assert not fake.access_token_valid(pair["access_token"])


def test_it_answers_not_installed_and_payment_required(fake: FakeBitrix) -> None:
    pair = seed(fake)
    code = fake.issue_code(CLIENT_ID, PORTAL)

    fake.set_paid(CLIENT_ID, PORTAL, False)
    unpaid = refresh(fake, pair["refresh_token"]).json()
    fake.set_installed(CLIENT_ID, PORTAL, False)
    uninstalled = refresh(fake, pair["refresh_token"]).json()
    uninstalled_exchange = exchange(fake, code)

    assert unpaid == {"error": "PAYMENT_REQUIRED", "error_description": "Payment required"}
    assert uninstalled == {
        "error": "NOT_INSTALLED",
        "error_description": "Application not installed",
    }
    assert uninstalled_exchange.status_code == 401
    assert uninstalled_exchange.json()["error"] == "NOT_INSTALLED"


def test_it_accepts_a_post_form_and_lets_the_query_win(fake: FakeBitrix) -> None:
    pair = seed(fake)
    form = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": "wrong-in-the-form",
        "refresh_token": pair["refresh_token"],
    }

    response = requests.post(
        f"{fake.base_url}/oauth/token/", params={"client_secret": SECRET}, data=form, timeout=5
    )

    assert response.status_code == 200
    assert fake.token_requests[-1]["method"] == "POST"
    assert fake.token_requests[-1]["params"]["client_secret"] == SECRET


def test_it_revokes_a_chain(fake: FakeBitrix) -> None:
    pair = seed(fake)

    fake.revoke_chain(pair["refresh_token"])

    assert refresh(fake, pair["refresh_token"]).json()["error"] == "invalid_grant"
    assert fake.current_refresh_token(MEMBER_ID, CLIENT_ID) is None


def test_it_records_every_token_request(fake: FakeBitrix) -> None:
    pair = seed(fake)
    refresh(fake, pair["refresh_token"])
    refresh(fake, pair["refresh_token"])

    entry = fake.token_requests[0]
    assert (entry["method"], entry["grant_type"], entry["client_id"]) == (
        "GET",
        "refresh_token",
        CLIENT_ID,
    )
    assert (entry["status"], entry["error"]) == (200, None)
    assert fake.token_requests[1]["error"] == "invalid_grant"
    assert abs(entry["t"] - fake.now()) < 5
    assert (
        fake.count(),
        fake.count("refresh_token", ok_only=True),
        fake.count("authorization_code"),
    ) == (2, 1, 0)

    fake.reset_observations()

    assert fake.count() == 0


def test_it_redirects_the_authorize_page_to_the_registered_uri(fake: FakeBitrix) -> None:
    response = requests.get(
        f"{fake.base_url}/oauth/authorize/",
        params={"client_id": CLIENT_ID, "response_type": "code", "state": "s-1", "domain": PORTAL},
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert list(query) == ["code", "state", "domain", "member_id", "scope", "server_domain"]
    assert (query["state"], query["domain"], query["member_id"]) == ("s-1", PORTAL, MEMBER_ID)
    assert query["server_domain"] == fake.base_url.removeprefix("http://")
    assert exchange(fake, query["code"]).status_code == 200


@pytest.mark.parametrize("client_id", ["local.unknown.1", CLIENT_ID])
def test_it_shows_an_error_page_instead_of_redirecting(fake: FakeBitrix, client_id: str) -> None:
    fake.set_installed(CLIENT_ID, PORTAL, False)

    response = requests.get(
        f"{fake.base_url}/oauth/authorize/",
        params={"client_id": client_id, "domain": PORTAL},
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


def test_it_serves_app_info_for_a_live_token(fake: FakeBitrix) -> None:
    pair = seed(fake)

    response = requests.get(
        f"{fake.base_url}/rest/app.info", params={"auth": pair["access_token"]}, timeout=5
    )

    result = response.json()["result"]
    assert response.status_code == 200
    assert (result["client_id"], result["user_id"]) == (CLIENT_ID, 7)
    assert result["install"]["installed"] is True
    assert result["install"]["member_id"] == MEMBER_ID
    assert "time" in response.json()


def test_it_rejects_app_info_for_dead_or_unknown_tokens(fake: FakeBitrix) -> None:
    rotated = seed(fake)
    refresh(fake, rotated["refresh_token"])
    url = f"{fake.base_url}/rest/app.info"

    dead = requests.post(url, data={"auth": rotated["access_token"]}, timeout=5)
    unknown = requests.get(url, params={"auth": "f" * 70}, timeout=5)

    assert dead.status_code == 401
    assert dead.json() == {
        "error": "expired_token",
        "error_description": "The access token provided has expired",
    }
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_token")


@pytest.mark.parametrize(
    ("status", "error"), [(500, "INTERNAL_SERVER_ERROR"), (503, "QUERY_LIMIT_EXCEEDED")]
)
def test_it_injects_status_faults_in_order(fake: FakeBitrix, status: int, error: str) -> None:
    pair = seed(fake)
    fake.fail_next("status", count=2, status=status)

    failures = [refresh(fake, pair["refresh_token"]) for _ in range(2)]
    success = refresh(fake, pair["refresh_token"])

    assert [(r.status_code, r.json()["error"]) for r in failures] == [(status, error)] * 2
    assert success.status_code == 200
    assert [e["status"] for e in fake.token_requests] == [status, status, 200]


def test_it_injects_a_timeout(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.timeout_sleep = 1.0
    fake.fail_next("timeout")

    with pytest.raises(requests.Timeout):
        refresh(fake, pair["refresh_token"], timeout=0.2)

    assert refresh(fake, pair["refresh_token"]).status_code == 200
    assert fake.token_requests[0]["status"] is None


def test_it_stops_promptly_while_a_timeout_fault_sleeps() -> None:
    fake = FakeBitrix().start()
    fake.register_app(CLIENT_ID, SECRET)
    pair = seed(fake)
    fake.fail_next("timeout")  # default timeout_sleep is 20 s
    errors: list[Exception] = []

    def call() -> None:
        try:
            refresh(fake, pair["refresh_token"], timeout=5)
        except requests.RequestException as err:
            errors.append(err)

    worker = threading.Thread(target=call)
    worker.start()
    wait_until(lambda: fake.count() == 1, 5, "the request to reach the fake")

    started = time.monotonic()
    fake.stop()
    worker.join(5)

    assert time.monotonic() - started < 2
    assert not worker.is_alive()
    assert isinstance(errors[0], requests.ConnectionError)


@pytest.mark.parametrize("kind", ["html", "garbage"])
def test_it_injects_unreadable_bodies(fake: FakeBitrix, kind: str) -> None:
    pair = seed(fake)
    fake.fail_next(kind)

    response = refresh(fake, pair["refresh_token"])

    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()
    assert fake.current_refresh_token(MEMBER_ID, CLIENT_ID) == pair["refresh_token"]


def test_it_injects_a_success_body_without_tokens_and_keeps_the_chain(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.fail_next("missing_fields")

    body = refresh(fake, pair["refresh_token"]).json()

    assert "access_token" not in body
    assert "refresh_token" not in body
    assert body["member_id"] == MEMBER_ID
    assert refresh(fake, pair["refresh_token"]).status_code == 200


def test_it_rotates_but_drops_the_response(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.fail_next("drop_response")

    with pytest.raises(requests.ConnectionError):
        refresh(fake, pair["refresh_token"])

    newest = fake.current_refresh_token(MEMBER_ID, CLIENT_ID)
    assert newest not in (None, pair["refresh_token"])
    assert refresh(fake, pair["refresh_token"]).json()["error"] == "invalid_grant"
    assert fake.count(ok_only=True) == 1


def test_it_rejects_an_unknown_fault_kind(fake: FakeBitrix) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        fake.fail_next("meteor")


def test_it_measures_concurrent_refreshes_of_one_chain(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.latency = 0.3
    results: list[requests.Response] = []
    workers = [
        threading.Thread(target=lambda: results.append(refresh(fake, pair["refresh_token"])))
        for _ in range(3)
    ]

    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert fake.max_concurrent_refreshes == 3
    assert sorted(r.status_code for r in results) == [200, 400, 400]


def test_it_sees_no_overlap_for_sequential_refreshes(fake: FakeBitrix) -> None:
    pair = seed(fake)
    fake.latency = 0.05

    for _ in range(3):
        pair = refresh(fake, pair["refresh_token"]).json()

    assert fake.max_concurrent_refreshes == 1
    assert fake.count(ok_only=True) == 3


def test_it_counts_concurrency_per_chain(fake: FakeBitrix) -> None:
    pairs = [seed(fake), seed(fake)]
    fake.latency = 0.2
    workers = [threading.Thread(target=refresh, args=(fake, p["refresh_token"])) for p in pairs]

    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert fake.max_concurrent_refreshes == 1
