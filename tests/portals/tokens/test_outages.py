"""Faults on the refresh path, driven through a cuttable TCP proxy between a second process
(another machine) and the real database: what the database says is what counts."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifications.models import Incident
from portals.bitrix.errors import PermanentOAuthError
from portals.models import RefreshAttempt, Token, TokenStatus
from portals.tokens import get_access_token
from tests.brokers import use_broker
from tests.conftest import BROKER_URL, CLIENT_ID, connect
from tests.fakes.tcp_proxy import TcpProxy
from tests.processes import start_python, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def through(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"


def refreshes(fake) -> int:
    return fake.count("refresh_token")


def take_stale_claim(token: Token) -> None:
    """Machine B, a lease later: the claim looks dead and the token is about to expire."""
    Token.objects.filter(pk=token.pk).update(
        refresh_started_at=timezone.now() - timedelta(minutes=5),
        expires_at=timezone.now() + timedelta(seconds=10),
    )


def test_a_pair_stored_after_another_machine_opened_an_incident_resolves_it(fake_bitrix, tmp_path):
    token = connect(fake_bitrix)
    db = connection.settings_dict
    with TcpProxy(db["HOST"], int(db["PORT"])) as proxy:
        fake_bitrix.after_grant = lambda params: proxy.cut()
        machine_a = start_python(
            "from portals.tokens import refresh\nrefresh('token')\nprint('stored')\n",
            DATABASE_URL=through(proxy),
            TOKEN_STORE_RETRY="60",
            VAR_DIR=str(tmp_path / "machine-a"),
        )
        wait_until(proxy.cut_event.is_set, 30, "machine A's refresh to cut its link")
        fake_bitrix.after_grant = None

        take_stale_claim(token)
        with pytest.raises(PermanentOAuthError, match="invalid_grant"):
            get_access_token("token")
        first = Incident.objects.get(token=token, resolved_at=None)
        assert Token.objects.get(pk=token.pk).status == TokenStatus.NEEDS_REAUTH

        proxy.heal()  # A's retry now stores the pair Bitrix24 issued to it
        out, err = machine_a.communicate(timeout=60)
    assert "stored" in out, err

    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE
    assert token.refresh_token == fake_bitrix.current_refresh_token(
        token.portal.member_id, CLIENT_ID
    )
    assert not Incident.objects.filter(token=token, resolved_at=None).exists()

    # The token's next real failure alerts: a new incident, not a repeat swallowed by the old.
    fake_bitrix.revoke_chain(token.refresh_token)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=10))
    with pytest.raises(PermanentOAuthError, match="invalid_grant"):
        get_access_token("token")
    second = Incident.objects.get(token=token, resolved_at=None)
    assert second.pk != first.pk


def skewed(seconds: int, code: str, **env: str):
    """Another process whose clock is `seconds` off the database's."""
    return start_python(code, B24K_TEST_CLOCK_SKEW=str(seconds), **env)


def test_claims_leases_and_freshness_are_judged_on_the_database_clock(fake_bitrix, tmp_path):
    token = connect(fake_bitrix)
    release = threading.Event()
    fake_bitrix.after_grant = lambda params: release.wait(30)
    # A process 90 s behind holds the refresh claim, its call to Bitrix24 still in flight.
    behind = skewed(-90, "from portals.tokens import refresh\nrefresh('token')\nprint('A done')\n")
    try:
        wait_until(lambda: refreshes(fake_bitrix) == 1, 30, "the refresh in flight")
        # A process 90 s ahead: by its clock the claim is older than the lease. It must not
        # take it over (a second refresh with the same refresh token); the token is fresh.
        ahead = skewed(
            +90, "from portals.tokens import get_access_token\nprint(get_access_token('token'))\n"
        )
        out, err = ahead.communicate(timeout=60)
        assert ahead.returncode == 0, err
        assert out.strip() == token.access_token
    finally:
        release.set()
    out, err = behind.communicate(timeout=60)
    assert "A done" in out, err
    assert refreshes(fake_bitrix) == 1
    assert not [r for r in fake_bitrix.token_requests if r["error"]]
    assert fake_bitrix.max_concurrent_refreshes == 1
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.version == 2

    # The access token expired 30 s ago (at Bitrix24 and by the database's clock); a consumer
    # 90 s behind must refresh it, not serve it.
    fake_bitrix.after_grant = None
    fake_bitrix.advance((token.expires_at - timezone.now()).total_seconds() + 30)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=30))
    consumer = skewed(
        -90,
        "from portals.tokens import get_access_token\n"
        "print(get_access_token('token', min_ttl=30))\n",
    )
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    assert fake_bitrix.access_token_valid(out.strip())
    assert refreshes(fake_bitrix) == 2


def redis_through(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/{BROKER_URL.rsplit('/', 1)[1]}"


def redis_proxy() -> TcpProxy:
    host, port = BROKER_URL.removeprefix("redis://").split("/")[0].split(":")
    return TcpProxy(host, int(port))


def test_a_silent_broker_does_not_hang_a_refresh_that_resolves_an_incident(
    fake_bitrix, broker_url, tmp_path
):
    from notifications.incidents import lifecycle
    from notifications.models import Delivery
    from tests.notifications_helpers import make_channel

    token = connect(fake_bitrix)
    channel = make_channel("telegram", covers_all_tokens=True)
    lifecycle.open_incident(token, code="http_503", message="m", permanent=False)
    Delivery.objects.filter(channel=channel).update(status=Delivery.Status.SENT)  # it was told
    Token.objects.filter(pk=token.pk).update(
        status=TokenStatus.REFRESH_FAILING,
        failure_count=1,
        expires_at=timezone.now() + timedelta(seconds=60),
    )
    with redis_proxy() as proxy:
        proxy.blackhole()  # accepts connections, never answers
        consumer = start_python(
            "import time\nfrom portals.tokens import get_access_token\n"
            "began = time.monotonic()\nget_access_token('token')\n"
            "print(f'took {time.monotonic() - began:.1f}', flush=True)\n",
            CELERY_BROKER_URL=redis_through(proxy),
            BROKER_TIMEOUT="1",
        )
        out, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 0, err
    assert float(out.split()[-1]) < 1.0, out  # it never waited on the broker
    assert "could not enqueue notifications.tasks.deliver: " in err  # the publisher's, bounded
    assert not Incident.objects.filter(token=token, resolved_at=None).exists()
    notice = Delivery.objects.get(event=Delivery.Event.RESOLVED)
    assert notice.status == Delivery.Status.QUEUED  # its row waits for the sweep


def test_claims_not_enqueued_are_released_and_the_next_sweep_takes_them(
    fake_bitrix, broker_url, settings
):
    from portals.tokens.sweep import sweep

    tokens = [
        connect(fake_bitrix, reference=f"t{i}", portal=f"p{i}.bitrix24.com") for i in range(3)
    ]
    Token.objects.update(next_refresh_at=timezone.now() - timedelta(seconds=1))
    settings.BROKER_TIMEOUT = 0.5
    with redis_proxy() as proxy, use_broker(redis_through(proxy)):
        proxy.blackhole()
        with pytest.raises(Exception):  # whatever kombu raises on a timeout
            sweep()
    assert not Token.objects.exclude(claimed_until=None).exists()
    assert sweep() == len(tokens)  # the real broker: all of them, at once


def start_machine_a(proxy: TcpProxy, tmp_path, prelude: str):
    """Machine A: a process whose database link runs through `proxy`; it refreshes 'token',
    prints what PairNotStored says on one line, and lives on with its journal loop."""
    return start_python(
        prelude + "import threading\n"
        "from portals.tokens import refresh, replayer, PairNotStored\n"
        "replayer.start()\n"
        "try:\n    refresh('token')\nexcept PairNotStored as err:\n"
        "    print(str(err).replace(chr(10), ' '), flush=True)\n"
        "threading.Event().wait()  # lives on\n",
        DATABASE_URL=through(proxy),
        TOKEN_STORE_RETRY="1",
        TOKEN_JOURNAL_RETRY="0.2",
        VAR_DIR=str(tmp_path / "machine-a"),
    )


def what_machine_a_said(machine_a, proxy: TcpProxy, fake_bitrix) -> list[str]:
    """Once A's refresh has cut its own link, A's line (its PairNotStored message)."""
    wait_until(proxy.cut_event.is_set, 30, "machine A's refresh to cut its link")
    fake_bitrix.after_grant = None
    said: list[str] = []
    threading.Thread(target=lambda: said.append(machine_a.stdout.readline())).start()
    wait_until(lambda: said, 30, "machine A to give up storing (PairNotStored)")
    return said


def test_a_living_process_applies_its_journal_once_the_database_is_back(fake_bitrix, tmp_path):
    token = connect(fake_bitrix)
    db = connection.settings_dict
    with TcpProxy(db["HOST"], int(db["PORT"])) as proxy:
        fake_bitrix.after_grant = lambda params: proxy.cut()
        # Machine A: its refresh gives up storing (PairNotStored), and the process lives on.
        machine_a = start_machine_a(proxy, tmp_path, "")
        try:
            said = what_machine_a_said(machine_a, proxy, fake_bitrix)
            assert "kept in the local journal" in said[0], said
            assert list((tmp_path / "machine-a" / "journal").glob("*.pair"))

            take_stale_claim(token)  # machine B: invalid_grant, needs re-authorization
            with pytest.raises(PermanentOAuthError, match="invalid_grant"):
                get_access_token("token")
            assert Token.objects.get(pk=token.pk).status == TokenStatus.NEEDS_REAUTH

            proxy.heal()  # the database is back for A; nobody restarts it
            restored = token.attempts.filter(outcome=RefreshAttempt.Outcome.RESTORED)
            wait_until(restored.exists, 30, "A's journal loop to store the pair")
            # The entry is removed once its pair is stored (the attempt row commits with it).
            journal_dir = tmp_path / "machine-a" / "journal"
            wait_until(lambda: not list(journal_dir.glob("*.pair")), 30, "the entry's removal")
        finally:
            machine_a.kill()
            _out, err = machine_a.communicate(timeout=30)
    assert "journal loop" in err  # it met the outage, then stored the pair
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE
    assert token.refresh_token == fake_bitrix.current_refresh_token(
        token.portal.member_id, CLIENT_ID
    )
    assert not Incident.objects.filter(token=token, resolved_at=None).exists()
    assert not list((tmp_path / "machine-a" / "journal").glob("*.pair"))


def test_a_pair_the_journal_could_not_take_waits_in_memory_and_is_stored_later(
    fake_bitrix, tmp_path
):
    token = connect(fake_bitrix)
    db = connection.settings_dict
    with TcpProxy(db["HOST"], int(db["PORT"])) as proxy:
        fake_bitrix.after_grant = lambda params: proxy.cut()
        machine_a = start_machine_a(
            proxy,
            tmp_path,
            "import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # a full disk, for A\n",
        )
        try:
            said = what_machine_a_said(machine_a, proxy, fake_bitrix)
            assert "waits in this process's memory" in said[0], said
            assert "kept in the local journal" not in said[0]
            assert not list((tmp_path / "machine-a" / "journal").glob("*.pair"))

            proxy.heal()
            restored = token.attempts.filter(outcome=RefreshAttempt.Outcome.RESTORED)
            wait_until(restored.exists, 30, "A's journal loop to store the pair from memory")
        finally:
            machine_a.kill()
            _out, err = machine_a.communicate(timeout=30)
    assert "ERROR portals.tokens.pairs" in err and "waits in memory on" in err
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE
    assert token.refresh_token == fake_bitrix.current_refresh_token(
        token.portal.member_id, CLIENT_ID
    )
