"""Key rotation under load: `manage.py reencrypt_secrets` while a real worker and beat keep
refreshing, then the old key goes and every token (and the local journal) still works."""

import json
import threading
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from encryption import rotation
from notifications.models import Channel
from portals.bitrix.oauth import BitrixOAuthClient
from portals.models import RefreshAttempt, Token, TokenStatus
from portals.tokens import journal, refresh
from portals.tokens.load import load as load_token
from tests.conftest import CLIENT_ID, CLIENT_SECRET, connect
from tests.notifications_helpers import make_channel
from tests.processes import CeleryProcesses, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def chain_head(fake, token: Token) -> str:
    return fake.current_refresh_token(token.portal.member_id, CLIENT_ID)


def versions() -> dict[str, int]:
    return dict(Token.objects.values_list("reference", "version"))


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_a_token_rotated_between_read_and_write_keeps_its_new_pair(fake_bitrix, settings):
    """The compare-and-set, made to race for certain: re-encryption has read the old access
    token and waits on the row while a refresh stores a new pair; its write then matches
    nothing, and the new pair stands."""
    settings.ENCRYPTION_KEYS = [OLD_KEY]
    token = connect(fake_bitrix)
    settings.ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    outcome: dict[str, rotation.Rotation] = {}

    def reencrypt() -> None:
        try:
            outcome["token"] = rotation.reencrypt_model(Token)
        finally:
            connection.close()

    with transaction.atomic():
        Token.objects.select_for_update().get(pk=token.pk)  # hold the row
        racer = threading.Thread(target=reencrypt)
        racer.start()
        wait_until(waiting_on_a_lock, 10, "re-encryption blocked on the row")
        refresh("token")  # rotates at Bitrix and stores the new pair, then commits
    racer.join(10)
    assert outcome["token"].changed_meanwhile == 1
    assert outcome["token"].current == 1  # the refresh token, already stored under the new key
    call_command("reencrypt_secrets", stdout=StringIO())  # the app's client secret, and a check
    settings.ENCRYPTION_KEYS = [NEW_KEY]  # the old key goes
    token = load_token(pk=token.pk)
    assert token.version == 2
    assert token.refresh_token == chain_head(fake_bitrix, token)
    refresh("token")  # Bitrix accepts the stored refresh token: nothing was lost
    assert rotation.stale_values() == {}


def test_it_refuses_to_bless_removing_the_old_key_while_values_remain_unreadable(
    fake_bitrix, settings
):
    settings.ENCRYPTION_KEYS = [OLD_KEY]
    connect(fake_bitrix)
    settings.ENCRYPTION_KEYS = [NEW_KEY]  # the old key removed too early
    with pytest.raises(CommandError, match="cannot be decrypted with any key"):
        call_command("reencrypt_secrets", stdout=StringIO())


class KeepDue(threading.Thread):
    """Makes the tokens due again and again, so beat and the worker refresh them all the
    time (their real interval is at least a minute)."""

    def __init__(self, references: list[str]) -> None:
        super().__init__(daemon=True)
        self.references, self.stop = references, threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.wait(0.3):
                Token.objects.filter(reference__in=self.references).update(
                    next_refresh_at=timezone.now()
                )
        finally:
            connection.close()


def test_the_rotation_drill_under_load_then_without_the_old_key(
    fake_bitrix, tmp_path, broker_url, sweep_schedule, settings
):
    settings.ENCRYPTION_KEYS = [OLD_KEY]
    tokens = [connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com") for i in range(30)]
    make_channel("telegram")
    parked = connect(fake_bitrix, "parked", portal="parked.bitrix24.com")
    Token.objects.filter(pk=parked.pk).update(next_refresh_at=None)
    fake_bitrix.latency = 0.1

    # 1. The new key goes first everywhere; web, workers and beat restart with it.
    settings.ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    with CeleryProcesses(tmp_path, broker_url) as celery:
        celery.worker(concurrency=2)
        celery.beat()
        # A pair Bitrix issued that this machine's journal holds (its process died before
        # storing it), written under the old key.
        grant = BitrixOAuthClient(server=parked.server_endpoint.removesuffix("/rest/")).refresh(
            CLIENT_ID, CLIENT_SECRET, parked.refresh_token
        )
        settings.ENCRYPTION_KEYS = [OLD_KEY]
        journal.write(parked.pk, parked.version, grant)
        settings.ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
        load = KeepDue([t.reference for t in tokens])
        load.start()
        try:
            busy = [t.reference for t in tokens]
            wait_until(lambda: max(versions()[r] for r in busy) >= 2, 60, "refreshing")
            # 2. Re-encrypt while they refresh (most still hold old-key values), in small
            # batches to stretch the run.
            out = StringIO()
            call_command("reencrypt_secrets", batch_size=2, stdout=out)
            during = versions()
            wait_until(
                lambda: all(versions()[t.reference] > during[t.reference] for t in tokens),
                60,
                "refreshes after the re-encryption",
            )
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{celery.logs()}") from None
        finally:
            load.stop.set()
            load.join(10)
        assert "The old key may be removed" in out.getvalue(), out.getvalue()
        assert "local journal: 1 pair(s) re-encrypted" in out.getvalue()

    # 3. The old key goes. Everything stored, and the journal, reads with the new key alone.
    settings.ENCRYPTION_KEYS = [NEW_KEY]
    assert rotation.stale_values() == {}
    for token in Token.objects.all():
        assert load_token(pk=token.pk).status == TokenStatus.ACTIVE
    assert Channel.objects.get().get_credentials()
    [entry] = journal.entries()
    assert entry.read().refresh_token == grant.refresh_token

    # 4. A worker and beat with only the new key: the journal is replayed at start, and every
    # token refreshes with the pair the database holds (Bitrix refuses any older one).
    fake_bitrix.reset_observations()
    before = versions()
    with CeleryProcesses(tmp_path / "after", broker_url, LOG_FORMAT="json") as celery:
        (tmp_path / "after").mkdir()
        celery.worker(concurrency=2)
        celery.beat()
        try:
            restored = parked.attempts.filter(outcome=RefreshAttempt.Outcome.RESTORED)
            wait_until(restored.exists, 30, "the journal replayed (its attempt is written last)")
            Token.objects.update(next_refresh_at=timezone.now())
            wait_until(lambda: all(versions()[r] > before[r] + (r == "parked") for r in before),
                       60, "every token refreshed")  # fmt: skip
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{celery.logs()}") from None
        logs = celery.log("w1")
    refreshes = [r for r in fake_bitrix.token_requests if r["grant_type"] == "refresh_token"]
    assert len(refreshes) >= len(before)
    assert all(r["error"] is None for r in refreshes), "a stored refresh token was stale"
    for token in Token.objects.all():
        assert token.refresh_token == chain_head(fake_bitrix, token)
    assert_json_logs(logs, tokens)


def assert_json_logs(logs: str, tokens: list[Token]) -> None:
    """LOG_FORMAT=json: the worker's log records are JSON lines naming token and task."""
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert records
    assert {"time", "level", "logger", "message", "token", "task_id"} <= set(records[0])
    about_tokens = {r["token"] for r in records if r["token"] and r["task_id"]}
    assert about_tokens & {t.reference for t in tokens}
    for token in Token.objects.all():
        assert token.refresh_token not in logs and token.access_token not in logs
    assert CLIENT_SECRET not in logs
