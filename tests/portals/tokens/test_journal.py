"""A pair Bitrix24 issued reaches the database through a database outage: the local journal,
retries on a fresh connection, and replay at start and before the next refresh."""

import logging
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from notifications.models import Incident
from portals.bitrix.errors import PermanentOAuthError
from portals.bitrix.oauth import BitrixOAuthClient
from portals.models import RefreshAttempt, Token, TokenStatus
from portals.tokens import TokenConfigurationError, get_access_token, journal, refresh, replayer
from portals.tokens.sweep import refresh_if_due
from tests.conftest import CLIENT_ID, CLIENT_SECRET, connect
from tests.fakes.tcp_proxy import TcpProxy
from tests.processes import start_python

pytestmark = pytest.mark.django_db(transaction=True)


def terminate_backend(pid: int) -> None:
    """What a failover or a database restart does to one connection."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def chain_head(fake, token: Token) -> str:
    return fake.current_refresh_token(token.portal.member_id, CLIENT_ID)


def test_a_pair_is_stored_when_the_connection_dies_during_the_call(fake_bitrix, settings, caplog):
    token = connect(fake_bitrix)
    settings.TOKEN_STORE_RETRY = 20
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    fake_bitrix.after_grant = lambda params: terminate_backend(pid)

    refresh("token")

    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.version == 2
    assert token.refresh_token == chain_head(fake_bitrix, token)
    assert token.refresh_started_at is None
    attempt = token.attempts.get(kind="manual")
    assert attempt.outcome == "success" and attempt.store_retries >= 1
    assert "storing the new pair failed" in caplog.text
    assert list(journal.entries()) == []


def test_a_pair_survives_an_outage_longer_than_the_retry_and_is_restored_at_start(
    fake_bitrix, settings, tmp_path
):
    token = connect(fake_bitrix)
    db = connection.settings_dict
    with TcpProxy(db["HOST"], int(db["PORT"])) as proxy:
        fake_bitrix.after_grant = lambda params: proxy.cut()
        machine_a = {
            "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
            "TOKEN_STORE_RETRY": "1",
            "VAR_DIR": str(tmp_path / "machine-a"),
        }
        child = start_python(
            "from portals.tokens import refresh, PairNotStored\n"
            "try:\n    refresh('token')\nexcept PairNotStored:\n    print('kept in journal')\n",
            **machine_a,
        )
        out, err = child.communicate(timeout=60)
    assert "kept in journal" in out, err
    fake_bitrix.after_grant = None
    entries = list((tmp_path / "machine-a" / "journal").glob("*.pair"))
    assert len(entries) == 1

    # Machine B, a lease later: the claim looks dead, the stored refresh token is refused.
    Token.objects.filter(pk=token.pk).update(
        refresh_started_at=timezone.now() - timedelta(minutes=5),
        expires_at=timezone.now() + timedelta(seconds=10),
    )
    with pytest.raises(PermanentOAuthError, match="invalid_grant"):
        get_access_token("token")
    token.refresh_from_db()
    assert token.status == TokenStatus.NEEDS_REAUTH
    assert Incident.objects.filter(token=token, resolved_at=None).exists()

    # Machine A starts again: its journal restores the pair and closes the incident.
    restart = start_python(
        "from portals.tokens.startup import on_process_start; on_process_start()",
        VAR_DIR=str(tmp_path / "machine-a"),
    )
    out, err = restart.communicate(timeout=60)
    assert restart.returncode == 0, err
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE
    assert token.refresh_token == chain_head(fake_bitrix, token)
    assert fake_bitrix.access_token_valid(token.access_token)
    assert not Incident.objects.filter(token=token, resolved_at=None).exists()
    assert token.attempts.filter(outcome=RefreshAttempt.Outcome.RESTORED).count() == 1
    assert not list((tmp_path / "machine-a" / "journal").glob("*.pair"))


def issue_pair_elsewhere(token: Token):
    """A pair Bitrix issued to a process that died before storing it: its journal entry."""
    grant = BitrixOAuthClient(server=fake_server(token)).refresh(
        CLIENT_ID, CLIENT_SECRET, token.refresh_token
    )
    return journal.write(token.pk, token.version, grant), grant


def fake_server(token: Token) -> str:
    return token.server_endpoint.removesuffix("/rest/")


def test_the_journal_is_replayed_before_this_machine_refreshes_the_token(fake_bitrix):
    token = connect(fake_bitrix)
    _, _grant = issue_pair_elsewhere(token)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=60))

    access = get_access_token("token")

    token.refresh_from_db()
    # The journal's pair was restored first, then refreshed from it: no invalid_grant.
    assert token.version == 3 and access == token.access_token
    assert token.refresh_token == chain_head(fake_bitrix, token)
    assert not any(r["error"] for r in fake_bitrix.token_requests)
    assert list(journal.entries()) == []


def test_a_replay_is_discarded_when_a_newer_pair_was_stored(fake_bitrix):
    token = connect(fake_bitrix)
    issue_pair_elsewhere(token)
    reconnected = connect(fake_bitrix)  # a new chain: version moves on

    start = start_python("from portals.tokens.startup import on_process_start; on_process_start()")
    _out, err = start.communicate(timeout=60)

    assert start.returncode == 0, err
    token.refresh_from_db()
    assert token.version == reconnected.version
    assert token.refresh_token == reconnected.refresh_token
    assert list(journal.entries()) == []


def test_journal_entries_are_encrypted(fake_bitrix):
    token = connect(fake_bitrix)
    entry, grant = issue_pair_elsewhere(token)
    text = entry.path.read_text()
    assert grant.refresh_token not in text and grant.access_token not in text
    assert entry.read().refresh_token == grant.refresh_token
    assert oct(entry.path.stat().st_mode & 0o777) == "0o600"


def set_read_only(on: bool) -> None:
    """What the address shows after a failover: a standby that refuses writes (25006)."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
    ) as other:
        value = (
            "SET default_transaction_read_only = on"
            if on
            else "RESET default_transaction_read_only"
        )
        other.execute(f'ALTER DATABASE "{db["NAME"]}" {value}')


class PrimaryBackOnRetry(logging.Handler):
    """The new primary takes the address once the store has met the read-only standby."""

    def emit(self, record: logging.LogRecord) -> None:
        if "storing the new pair failed (InternalError)" in record.getMessage():
            set_read_only(False)


def test_a_read_only_standby_after_a_failover_is_retried_like_a_lost_connection(
    fake_bitrix, settings
):
    token = connect(fake_bitrix)
    settings.TOKEN_STORE_RETRY = 20
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def failover(params) -> None:
        set_read_only(True)
        terminate_backend(pid)

    fake_bitrix.after_grant = failover
    handler = PrimaryBackOnRetry()
    logging.getLogger("portals.tokens.pairs").addHandler(handler)
    try:
        refresh("token")
    finally:
        logging.getLogger("portals.tokens.pairs").removeHandler(handler)
        set_read_only(False)
        connection.close()  # a session opened while read-only stays so: the next one is not
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.version == 2
    assert token.refresh_token == chain_head(fake_bitrix, token)
    assert token.attempts.get(kind="manual").store_retries >= 2


def test_an_unreadable_journal_is_a_configuration_error_with_an_incident(
    fake_bitrix, settings, tmp_path
):
    token = connect(fake_bitrix)
    where = tmp_path / "var-journal"
    where.write_text("a file where the folder should be")
    settings.TOKEN_JOURNAL_DIR = where

    with pytest.raises(TokenConfigurationError, match="VAR_DIR/journal"):
        refresh("token")

    token.refresh_from_db()
    assert token.status == TokenStatus.CONFIG_ERROR and "cannot be read" in token.last_error
    assert Incident.objects.filter(token=token, resolved_at=None).exists()


def test_a_scheduled_refresh_with_an_unreadable_journal_is_a_configuration_error(
    fake_bitrix, settings, tmp_path
):
    token = connect(fake_bitrix)
    Token.objects.filter(pk=token.pk).update(next_refresh_at=timezone.now() - timedelta(minutes=1))
    where = tmp_path / "var-journal"
    where.write_text("a file where the folder should be")
    settings.TOKEN_JOURNAL_DIR = where

    assert refresh_if_due(token.pk) == "failed"  # the sweep's task, not a crash

    token.refresh_from_db()
    assert token.status == TokenStatus.CONFIG_ERROR and "cannot be read" in token.last_error
    assert Incident.objects.filter(token=token, resolved_at=None).exists()


def test_the_journal_loop_leaves_an_entry_its_refresh_may_still_be_storing(fake_bitrix, settings):
    token = connect(fake_bitrix)
    entry, grant = issue_pair_elsewhere(token)
    settings.TOKEN_STORE_RETRY = 60  # the refresh that wrote it may retry its store this long

    assert replayer.replay_pending() == 0  # too young: its own refresh stores it
    assert entry.exists() and Token.objects.get(pk=token.pk).version == 1

    settings.TOKEN_STORE_RETRY = 0  # past it, the refresh has given up (or died)
    assert replayer.replay_pending() == 1
    assert Token.objects.get(pk=token.pk).refresh_token == grant.refresh_token
    assert not entry.exists()
