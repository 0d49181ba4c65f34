"""Real client libraries (fast_bitrix24, b24pysdk) through b24keeper-client, against a live
b24keeper over https and the fake Bitrix24 with strict rotation: b24keeper refreshes, exactly
once where once is needed, and the libraries never ask the OAuth server."""

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta

import requests
from django.utils import timezone

from api import keys
from portals.models import Portal, Token
from tests.processes import wait_until


def line(proc) -> dict:
    text = proc.stdout.readline()
    assert text, proc.stderr.read()
    return json.loads(text)


def step(proc, expected_phase: str) -> None:
    assert line(proc) == {"phase": expected_phase}


def go_on(proc) -> None:
    proc.stdin.write("\n")
    proc.stdin.flush()


def expire(live, token_pk: int) -> None:
    """The access token expires: at the portal's clock and in b24keeper's row alike."""
    live.fake.advance(3601)
    Token.objects.filter(pk=token_pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def oauth_requests_by_libraries(live, refreshes_by_keeper: int) -> int:
    """Token requests the fake saw beyond b24keeper's own refreshes (its history counts them)."""
    return live.fake.count() - refreshes_by_keeper - 1  # the connect's code exchange


def a_minute_later(token_pk: int) -> None:
    """The renewal bound (one refresh a minute through renew) lets the next one through."""
    Token.objects.get(pk=token_pk).attempts.filter(kind="renew").update(
        finished_at=timezone.now() - timedelta(minutes=2)
    )


def refreshes(token_pk: int) -> int:
    return Token.objects.get(pk=token_pk).attempts.exclude(kind="code_exchange").count()


def expire_then_refuse(live, proc, token_pk: int) -> None:
    """Both libraries' first steps: the token expires (b24keeper refreshes it, once), then the
    portal refuses the new access token a minute later."""
    step(proc, "expire")
    expire(live, token_pk)
    go_on(proc)
    step(proc, "refuse")
    assert live.fake.count("refresh_token") == 1  # across the expiry: one, by b24keeper
    a_minute_later(token_pk)
    live.fake.refuse_access(Token.objects.get().access_token)
    go_on(proc)


def test_fast_bitrix24_with_token_func(live, live_token):
    _, key = keys.create_key("fast", ["token"])
    proc = live.start("fast", live.base_url, key, "token")
    try:
        expire_then_refuse(live, proc, live_token.pk)
        step(proc, "refuse-forever")
        assert live.fake.count("refresh_token") == 2  # refused once: one renewal, then success
        live.fake.refuse_every_access()
        a_minute_later(live_token.pk)
        go_on(proc)
        step(proc, "heal")
        live.fake.refuse_every_access(False)
        go_on(proc)
        result = line(proc)
    finally:
        proc.kill()
        proc.wait()
    assert result["first"] == result["second"] == ["1", "1", "1"]
    assert result["third"] == "ok"
    # A refusal that persists reaches the caller after at most 2 renewals, no loop ...
    assert result["fourth"].startswith("error:")
    assert live.fake.count("refresh_token") == 3  # ... and only one of them refreshed (bound)
    assert live.fake.rest_count("user.current", error="expired_token") <= 1 + 1 + 3
    # ... and the client object still works afterwards.
    assert result["fifth"] == "ok"
    assert oauth_requests_by_libraries(live, refreshes(live_token.pk)) == 0


def test_b24pysdk_with_keeper_token(live, live_token):
    _, key = keys.create_key("sdk", ["token"])
    proc = live.start("pysdk", live.base_url, key, "token")
    try:
        expire_then_refuse(live, proc, live_token.pk)
        result = line(proc)
    finally:
        proc.kill()
        proc.wait()
    assert result == {"first": ["1", "1"], "second": ["1", "1"], "third": "1"}
    assert live.fake.count("refresh_token") == 2
    assert oauth_requests_by_libraries(live, refreshes(live_token.pk)) == 0


def test_async_callers_with_bitrix_async(live, live_token):
    _, key = keys.create_key("async", ["token"])
    done = live.run("fast_async", live.base_url, key, "token")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ids": ["1", "1", "1", "1"]}


def test_through_the_proxy_call_batch_and_paging(live, live_token):
    live.fake.add_leads(live.portal, 120)
    _, key = keys.create_key("proxy", ["token"], scopes="token,proxy")
    done = live.run("proxy", live.base_url, key, "token")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"me": "1", "leads": 120, "got": 120, "sdk_me": "1"}
    assert live.fake.rest_count("batch") >= 3  # 120 commands: split by the library
    assert all(call.auth_via == "auth" for call in live.fake.rest_calls)
    assert live.fake.count("refresh_token") == 0
    assert key[12:] not in live.log.read_text()  # the access log redacts the key


def test_eight_processes_through_the_proxy_never_see_query_limit_exceeded(live, live_token):
    live.fake.set_rest_limit(20.0, 20.0, domain=live.portal)
    Portal.objects.update(rest_rate=20.0, rest_burst=20)
    _, key = keys.create_key("load", ["token"], scopes="proxy", rate_per_minute=10000)
    url = f"{live.base_url}/rest/{live_token.pk}/{key}/"
    procs = [live.start("proxy_load", url, "8") for _ in range(8)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert results == [{"calls": 8}] * 8
    assert live.fake.rest_count("user.current") == 64
    assert live.fake.rest_count(error="QUERY_LIMIT_EXCEEDED") == 0


def test_proxy_calls_waiting_for_their_turn_never_block_health(live, live_token):
    """gthread: a proxy call waiting in the portal's rate limit (up to PROXY_MAX_WAIT) holds
    a thread, so /health/ still answers at once."""
    Portal.objects.update(rest_rate=0.5, rest_burst=3)  # one request now, then one per 2 s
    _, key = keys.create_key("slow", ["token"], scopes="proxy", rate_per_minute=10000)
    url = f"{live.base_url}/rest/{live_token.pk}/{key}/user.current"
    statuses: list[int] = []

    def call() -> None:
        statuses.append(requests.get(url, timeout=30, verify=str(live.cert)).status_code)

    waiting = [threading.Thread(target=call) for _ in range(8)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: live.fake.rest_count("user.current") >= 1, 10, "the first proxy call")
    began = time.monotonic()
    health = requests.get(f"{live.base_url}/health/", timeout=10, verify=str(live.cert))
    took = time.monotonic() - began
    for thread in waiting:
        thread.join(30)
    assert health.status_code in (200, 503) and took < 1.5, took
    assert sorted(set(statuses)) <= [200, 503] and 503 in statuses  # PROXY_MAX_WAIT ran out
    assert live.fake.rest_count(error="QUERY_LIMIT_EXCEEDED") == 0


def test_the_client_package_needs_no_django():
    code = (
        "import sys, b24keeper_client, b24keeper_client.fast_bitrix24, b24keeper_client.b24pysdk;"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
