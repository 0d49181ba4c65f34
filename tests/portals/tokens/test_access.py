"""The refresh service: rotation, single flight, failures that store nothing, crash detection."""

import signal
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from portals.bitrix.errors import PermanentOAuthError, TransientOAuthError
from portals.models import Token, TokenStatus
from portals.tokens import TokenUnavailable, get_access_token, refresh
from tests.conftest import CLIENT_ID, connect
from tests.processes import start_python, wait_until


def stored(token: Token) -> tuple[str, str, int]:
    token.refresh_from_db()
    return token.access_token, token.refresh_token, token.version


def expire_soon(token: Token, seconds: int = 60) -> None:
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=seconds))


@pytest.mark.django_db
def test_refresh_rotates_and_stores_both_tokens(fake_bitrix, token):
    old_access, old_refresh, _ = stored(token)
    refreshed = refresh("token")
    access, refresh_token, version = stored(token)
    assert refreshed.access_token == access and version == 2
    assert access != old_access and refresh_token != old_refresh
    assert refresh_token == fake_bitrix.current_refresh_token(token.portal.member_id, CLIENT_ID)
    assert fake_bitrix.access_token_valid(access)
    assert not fake_bitrix.access_token_valid(old_access)
    sent = fake_bitrix.token_requests[-1]
    assert sent["method"] == "POST" and sent["params"]["refresh_token"] == old_refresh
    assert token.expires_at > timezone.now() + timedelta(minutes=59)
    attempt = token.attempts.order_by("-started_at").first()
    assert (attempt.kind, attempt.outcome) == ("manual", "success")


@pytest.mark.django_db
def test_a_rotated_refresh_token_is_never_sent_again(fake_bitrix, token):
    for _ in range(4):
        refresh("token")
    sent = [r["params"]["refresh_token"] for r in fake_bitrix.token_requests[1:]]
    assert len(sent) == len(set(sent)) == 4
    assert all(r["error"] is None for r in fake_bitrix.token_requests)


@pytest.mark.django_db
def test_get_access_token_serves_a_fresh_token_without_calling_bitrix(fake_bitrix, token):
    fake_bitrix.reset_observations()
    assert get_access_token("token") == token.access_token
    assert fake_bitrix.count() == 0


@pytest.mark.django_db
def test_get_access_token_refreshes_a_token_about_to_expire(fake_bitrix, token):
    expire_soon(token, 200)
    access = get_access_token("token", min_ttl=300)
    assert access != token.access_token and fake_bitrix.access_token_valid(access)
    assert token.attempts.filter(kind="on_demand", outcome="success").count() == 1


@pytest.mark.django_db
def test_get_access_token_names_an_unknown_reference(fake_bitrix):
    with pytest.raises(LookupError, match="check the reference"):
        get_access_token("nope")


@pytest.mark.django_db(transaction=True)
def test_eight_threads_and_two_processes_cause_exactly_one_refresh(fake_bitrix, settings):
    token = connect(fake_bitrix)
    expire_soon(token)
    fake_bitrix.latency = 0.5  # keep the refresh in flight while everyone piles in
    fake_bitrix.reset_observations()
    children = [
        start_python("from portals.tokens import get_access_token as g; print(g('token'))")
        for _ in range(2)
    ]
    results: list[str] = []

    def call() -> None:
        try:
            results.append(get_access_token("token"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        results.append(out.strip())
    assert fake_bitrix.count(grant_type="refresh_token") == 1
    assert fake_bitrix.max_concurrent_refreshes == 1
    assert len(results) == 10 and len(set(results)) == 1
    assert results[0] == Token.objects.get().access_token


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("status", "INTERNAL_SERVER_ERROR"),
        ("html", "unreadable_body"),
        ("garbage", "unreadable_body"),
        ("missing_fields", "incomplete_body"),
        ("timeout", "timeout"),
    ],
)
def test_a_transient_error_leaves_the_stored_token_untouched(
    fake_bitrix, token, settings, kind, code
):
    settings.BITRIX_READ_TIMEOUT = 0.5
    fake_bitrix.timeout_sleep = 2
    before = stored(token)
    fake_bitrix.fail_next(kind)
    with pytest.raises(TransientOAuthError) as caught:
        refresh("token")
    assert caught.value.code == code
    assert stored(token) == before
    token.refresh_from_db()
    assert token.status == TokenStatus.REFRESH_FAILING and token.failure_count == 1
    assert token.next_refresh_at > timezone.now()
    assert token.refresh_started_at is None
    # The same refresh token still works afterwards: nothing was lost.
    refresh("token")
    assert stored(token)[2] == before[2] + 1


@pytest.mark.django_db
def test_get_access_token_serves_the_current_token_through_a_blip(fake_bitrix, token):
    expire_soon(token, 200)
    fake_bitrix.fail_next("status", status=503)
    assert get_access_token("token") == token.access_token


@pytest.mark.django_db(transaction=True)
def test_invalid_grant_after_another_worker_rotated_is_not_an_incident(fake_bitrix, settings):
    token = connect(fake_bitrix)
    fake_bitrix.latency = 1.0
    winner = threading.Thread(target=lambda: (refresh("token"), connection.close()))
    winner.start()
    in_flight = Token.objects.filter(refresh_started_at__isnull=False)
    wait_until(in_flight.exists, 10, "the winner's claim")
    # The winner's claim looks dead to us, so we refresh with the same refresh token; Bitrix
    # answers invalid_grant because the winner rotated it first.
    settings.TOKEN_REFRESH_LEASE = 0
    result = refresh("token")
    winner.join(10)
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.version == 2
    assert result.access_token == token.access_token
    assert [r["error"] for r in fake_bitrix.token_requests[1:]] == [None, "invalid_grant"]
    outcomes = set(token.attempts.values_list("outcome", flat=True))
    assert outcomes == {"success", "rotated_elsewhere", "interrupted"}
    assert not token.incidents.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "code", "status"),
    [
        (lambda f, t: f.revoke_chain(t.refresh_token), "invalid_grant", "needs_reauth"),
        (lambda f, t: f.set_installed(CLIENT_ID, t.portal.domain, False), "NOT_INSTALLED",
         "uninstalled"),
        (lambda f, t: f.set_paid(CLIENT_ID, t.portal.domain, False), "PAYMENT_REQUIRED",
         "payment_required"),
    ],
)  # fmt: skip
def test_a_permanent_error_stops_refreshing(fake_bitrix, token, setup, code, status):
    setup(fake_bitrix, token)
    before = stored(token)
    with pytest.raises(PermanentOAuthError) as caught:
        refresh("token")
    assert caught.value.code == code
    token.refresh_from_db()
    assert token.status == status and token.next_refresh_at is None
    assert stored(token) == before
    with pytest.raises(TokenUnavailable):
        get_access_token("token", min_ttl=99999)


@pytest.mark.django_db(transaction=True)
def test_a_crash_between_rotation_and_commit_is_detected(fake_bitrix, settings):
    token = connect(fake_bitrix)
    fake_bitrix.timeout_sleep = 60
    fake_bitrix.fail_next("hang_after_processing")
    child = start_python("from portals.tokens import refresh; refresh('token')")
    reached = lambda: fake_bitrix.count(grant_type="refresh_token", ok_only=True) >= 1  # noqa: E731
    wait_until(reached, 20, "the child to reach Bitrix")
    child.send_signal(signal.SIGKILL)  # Bitrix rotated; our process dies before storing
    child.wait(10)
    token.refresh_from_db()
    assert token.refresh_started_at is not None  # the claim outlived its process
    settings.TOKEN_REFRESH_LEASE = 0
    with pytest.raises(PermanentOAuthError) as caught:
        refresh("token")
    token.refresh_from_db()
    assert token.status == TokenStatus.NEEDS_REAUTH
    assert "interrupted" in str(caught.value) and "interrupted" in token.last_error
    outcomes = list(token.attempts.values_list("outcome", flat=True))
    assert "interrupted" in outcomes and "permanent_error" in outcomes
    # And it is not retried forever: the scheduler no longer picks it up.
    assert not Token.objects.due(timezone.now() + timedelta(days=1)).exists()
