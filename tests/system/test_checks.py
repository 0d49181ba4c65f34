"""System checks name the setting that would otherwise fail at the first refresh or alert."""

import pytest
from django.core.checks import run_checks

# The stored-secrets check reads one value per table.
pytestmark = pytest.mark.django_db


def ids(messages) -> set[str]:
    return {message.id for message in messages}


def test_a_malformed_encryption_key_is_an_error(settings):
    settings.ENCRYPTION_KEYS = ["not-a-key"]
    found = [m for m in run_checks() if m.id == "b24keeper.E001"]
    assert found and "ENCRYPTION_KEYS" in found[0].msg


def test_a_provider_url_that_is_not_http_is_an_error(settings):
    settings.TELEGRAM_API_URL = "api.telegram.org"
    found = [m for m in run_checks() if m.id == "b24keeper.E002"]
    assert found and "TELEGRAM_API_URL" in found[0].msg


def test_plain_http_outside_tests_is_a_warning(settings):
    settings.BITRIX_ALLOW_HTTP, settings.DEBUG = False, False
    settings.MANDRILL_API_URL = "http://mandrill.example.com/api/1.0"
    assert "b24keeper.W001" in ids(run_checks())


def test_the_shipped_defaults_pass(settings):
    settings.BITRIX_ALLOW_HTTP = False
    settings.BITRIX_OAUTH_SERVER = "https://oauth.bitrix.info"
    assert not ids(run_checks()) & {"b24keeper.E001", "b24keeper.E002", "b24keeper.W001"}


def test_admins_without_an_smtp_server_is_a_warning(settings):
    settings.ADMINS, settings.EMAIL_URL = [("Ops", "ops@example.org")], ""
    found = [m for m in run_checks() if m.id == "b24keeper.W003"]
    assert found and "ADMINS is set but EMAIL_URL is not" in found[0].msg
    settings.EMAIL_URL = "smtp://127.0.0.1:25"
    assert "b24keeper.W003" not in ids(run_checks())


def test_heard_within_must_exceed_the_hold(settings):
    settings.NOTIFY_HOLD_SECONDS, settings.NOTIFY_HEARD_WITHIN = 30, 300
    assert "b24keeper.E016" not in ids(run_checks())
    settings.NOTIFY_HEARD_WITHIN = 30
    found = [m for m in run_checks() if m.id == "b24keeper.E016"]
    assert found and "NOTIFY_HEARD_WITHIN" in found[0].msg and "NOTIFY_HOLD_SECONDS" in found[0].msg


def test_the_oauth_deadline_must_be_shorter_than_the_lease(settings):
    settings.TOKEN_REFRESH_LEASE, settings.BITRIX_OAUTH_DEADLINE = 60, 30
    assert "b24keeper.E017" not in ids(run_checks())
    settings.BITRIX_OAUTH_DEADLINE = 60
    found = [m for m in run_checks() if m.id == "b24keeper.E017"]
    assert found and "TOKEN_REFRESH_LEASE" in found[0].msg
