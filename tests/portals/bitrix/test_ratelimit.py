"""The shared leaky bucket (portals.bitrix.ratelimit) on each store, and 8 processes at one
portal."""

import subprocess
import sys
import threading
import uuid

import pytest
from django.db import transaction
from django.urls import reverse

from portals.bitrix import ratelimit
from portals.models import Portal
from tests.conftest import BROKER_URL, connect
from tests.processes import ROOT, child_env


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


def _redis_store() -> ratelimit.RedisStore:
    return ratelimit.RedisStore(BROKER_URL)


STORES = {
    "local": lambda: ratelimit.LocalStore(),
    "database": lambda: ratelimit.DatabaseStore(),
    "redis": _redis_store,
}


@pytest.fixture(params=list(STORES))
def make_store(request, db):
    made: list = []

    def make():
        made.append(STORES[request.param]())
        return made[-1]

    yield make
    for store in made:
        if isinstance(store, ratelimit.DatabaseStore):
            store.close()


def test_a_bucket_gives_its_burst_at_once_then_queues_callers_at_its_rate(make_store, key):
    store = make_store()
    waits = [store.reserve(key, rate=10, burst=5, max_wait=60).wait for _ in range(8)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    # Each later caller is given the next free turn: 0.1 s apart at 10 a second.
    for position, wait in enumerate(waits[5:], start=1):
        assert 0.1 * position - 0.05 < wait <= 0.1 * position + 0.001


def test_a_turn_beyond_max_wait_is_refused_and_not_taken(make_store, key):
    store = make_store()
    for _ in range(3):
        store.reserve(key, rate=1, burst=3, max_wait=60)
    refused = store.reserve(key, rate=1, burst=3, max_wait=0.5)
    assert not refused.granted and 0.9 < refused.wait <= 1.0
    granted = store.reserve(key, rate=1, burst=3, max_wait=60)
    assert granted.granted and 0.9 < granted.wait <= 1.0  # the refused turn was not taken


def test_a_bucket_drains_at_its_rate(make_store, key):
    store = make_store()
    first = store.reserve(key, rate=1000, burst=1, max_wait=60)
    second = store.reserve(key, rate=1000, burst=1, max_wait=60)
    assert first.wait == 0 and second.wait <= 0.001


def test_buckets_are_separate(make_store, key):
    store = make_store()
    store.reserve(key, rate=1, burst=1, max_wait=60)
    assert store.reserve(key + "-other", rate=1, burst=1, max_wait=60).wait == 0


@pytest.mark.parametrize("kind", ["database", "redis"])
def test_two_machines_share_one_bucket(db, kind, key):
    first, second = STORES[kind](), STORES[kind]()  # two connections, as two machines have
    try:
        for _ in range(4):
            first.reserve(key, rate=2, burst=4, max_wait=60)
        assert 0.4 < second.reserve(key, rate=2, burst=4, max_wait=60).wait <= 0.5
    finally:
        for store in (first, second):
            if isinstance(store, ratelimit.DatabaseStore):
                store.close()


def test_the_database_bucket_is_not_held_by_the_callers_transaction(db, key):
    store = ratelimit.DatabaseStore()
    done = threading.Event()

    def other_process():
        store.reserve(key, rate=1, burst=10, max_wait=60)
        done.set()

    try:
        with transaction.atomic():
            store.reserve(key, rate=1, burst=10, max_wait=60)
            thread = threading.Thread(target=other_process)
            thread.start()
            assert done.wait(10), "the second reservation waited for our transaction"
            thread.join()
    finally:
        store.close()


def test_the_store_follows_the_settings(settings, db):
    settings.REDIS_URL = ""
    assert isinstance(ratelimit.store(), ratelimit.DatabaseStore)
    settings.REDIS_URL = BROKER_URL
    assert isinstance(ratelimit.store(), ratelimit.RedisStore)


# --- 8 processes at one portal ----------------------------------------------------------------

CHILD = """
import sys
import django
django.setup()
from portals.rest import Bitrix24, RestError
b24 = Bitrix24("token")
print("ready", flush=True)
sys.stdin.readline()
seen = []
for _ in range(25):
    try:
        b24.call("user.current")
    except RestError as err:
        seen.append(err.code)
print("errors:", ",".join(seen) or "none", flush=True)
"""


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_8_processes_at_one_portal_never_meet_its_limit(transactional_db, fake_bitrix, backend):
    host = f"localhost:{fake_bitrix.server_host.rsplit(':', 1)[1]}"
    token = connect(fake_bitrix, portal=host)
    # A faster limit than the cloud's 2/s, the same on both sides, to keep the test short.
    fake_bitrix.set_rest_limit(rate=40, burst=80)
    Portal.objects.filter(pk=token.portal_id).update(rest_rate=40, rest_burst=80)
    redis_url = BROKER_URL if backend == "redis" else ""
    env = child_env(REDIS_URL=redis_url)
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(8)
    ]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:  # all at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "errors: none" in out, err[-3000:]
    bucket = fake_bitrix.bucket(host)
    limited = fake_bitrix.rest_count(error="QUERY_LIMIT_EXCEEDED")
    assert limited == 0, f"{limited} QUERY_LIMIT_EXCEEDED; bucket reached {bucket.max_level:.1f}"
    assert fake_bitrix.rest_count("user.current") == 200
    assert bucket.max_level > 30  # the burst was used, not wasted


def test_staff_set_a_portals_limit_in_the_admin(fake_bitrix, admin_client):
    portal = connect(fake_bitrix).portal
    page = reverse("admin:portals_portal_change", args=[portal.pk])
    assert "REST requests per second" in admin_client.get(page).content.decode()
    data = {"domain": portal.domain, "member_id": portal.member_id, "auth_server": ""}
    response = admin_client.post(page, {**data, "rest_rate": "5", "rest_burst": "250"})
    assert response.status_code == 302
    portal.refresh_from_db()
    assert (portal.rest_rate, portal.rest_burst) == (5, 250)  # Enterprise
    refused = admin_client.post(page, {**data, "rest_rate": "0", "rest_burst": "0"})
    assert "Enter at least 0.1 requests per second." in refused.content.decode()


@pytest.mark.parametrize("redis_url", ["", BROKER_URL])
def test_reserve_many_takes_buckets_in_order_and_stops_at_the_first_refused(
    settings, db, key, redis_url
):
    """One round trip on Redis (the REST proxy: the key's limit and the portal's bucket);
    the same answers on the database store."""
    settings.REDIS_URL = redis_url
    first, second = f"{key}:a", f"{key}:b"
    both = [(first, 1.0, 2.0, 0.0), (second, 1.0, 1.0, 0.0)]
    assert [t.granted for t in ratelimit.reserve_many(both)] == [True, True]
    # The second bucket is full: refused; the first keeps the unit it gave.
    assert [t.granted for t in ratelimit.reserve_many(both)] == [True, False]
    # Now the first is full too: refused there, the second not even tried.
    turns = ratelimit.reserve_many(both)
    assert [t.granted for t in turns] == [False] and turns[0].wait > 0
    ratelimit.close()
