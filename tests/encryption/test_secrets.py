"""Secrets at rest and in logs: encryption with rotating keys, and nothing in log records."""

import logging
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from encryption.crypto import DecryptionError
from portals.bitrix.errors import PermanentOAuthError, TransientOAuthError
from portals.models import AppCredentials, Token
from portals.tokens import TokenUnavailable, get_access_token, refresh
from tests.conftest import CLIENT_SECRET, connect
from tests.processes import ROOT, child_env

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def readable_with(key: str, ciphertext: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(ciphertext.encode())
    except Exception:
        return False
    return True


@pytest.mark.django_db
def test_new_and_old_keys_read_old_rows_and_write_with_the_new_key(fake_bitrix, settings):
    settings.ENCRYPTION_KEYS = [OLD_KEY]
    token = connect(fake_bitrix)
    assert readable_with(OLD_KEY, raw("portals_token", "refresh_token", token.pk))
    settings.ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert Token.objects.get().refresh_token == token.refresh_token  # old rows still read
    refresh("token")
    ciphertext = raw("portals_token", "refresh_token", token.pk)
    assert readable_with(NEW_KEY, ciphertext) and not readable_with(OLD_KEY, ciphertext)


@pytest.mark.django_db
def test_reencrypt_secrets_moves_every_value_to_the_newest_key(fake_bitrix, settings, capsys):
    settings.ENCRYPTION_KEYS = [OLD_KEY]
    token = connect(fake_bitrix)
    settings.ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("reencrypt_secrets")
    for table, column, pk in [
        ("portals_token", "access_token", token.pk),
        ("portals_token", "refresh_token", token.pk),
        ("portals_appcredentials", "client_secret", token.app.pk),
    ]:
        assert readable_with(NEW_KEY, raw(table, column, pk)), column
    settings.ENCRYPTION_KEYS = [NEW_KEY]  # the old key can now go
    assert AppCredentials.objects.get().client_secret == CLIENT_SECRET
    assert "3 value(s) now use the newest key" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_wrong_key_raises_instead_of_returning_ciphertext(fake_bitrix, settings):
    connect(fake_bitrix)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError) as caught:
        Token.objects.get()
    assert "ENCRYPTION_KEYS" in str(caught.value)
    assert "gAAAA" not in str(caught.value)


def test_the_service_refuses_to_start_without_a_key_when_debug_is_off():
    env = child_env(ENCRYPTION_KEYS="", DEBUG="false", DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ENCRYPTION_KEYS is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr


@pytest.mark.django_db
def test_no_secret_appears_in_any_log_record(fake_bitrix, caplog, settings):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "portals", "django.db.backends"):
        caplog.set_level(logging.DEBUG, logger=name)
    settings.BITRIX_READ_TIMEOUT = 0.5
    fake_bitrix.timeout_sleep = 1
    token = connect(fake_bitrix)
    secrets = {CLIENT_SECRET, token.access_token, token.refresh_token}
    secrets |= {r["params"].get("code", "") for r in fake_bitrix.token_requests} - {""}
    refresh("token")
    for fault in ("timeout", "html", "status"):
        fake_bitrix.fail_next(fault)
        with pytest.raises(TransientOAuthError):
            refresh("token")
    fake_bitrix.revoke_chain(Token.objects.get().refresh_token)
    with pytest.raises(PermanentOAuthError):
        refresh("token")
    with pytest.raises(TokenUnavailable):  # it needs re-authorization now
        get_access_token("token", min_ttl=99999)
    for request in fake_bitrix.token_requests:
        secrets |= {request["params"].get("refresh_token", "")} - {""}
    token = Token.objects.get()
    secrets |= {token.access_token, token.refresh_token}
    assert len(caplog.records) > 5  # urllib3 and our own lines were captured
    for record in caplog.records:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        for secret in secrets:
            assert secret not in text, f"{record.name}: {text}"
