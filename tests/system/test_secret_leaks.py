"""Secrets stay out of error pages and log lines, whatever fails.

With DEBUG=true Django's technical 500 page shows the POST data and every frame's local
variables; a forced 500 on a view that receives a secret must show neither the secret nor the
code. The 500s here are real failures below our code (the database refusing a row, a malformed
setting), reached through the same views and the wire-level fakes as production.
"""

import io
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from core.error_reports import SecretsExceptionReporterFilter
from core.logging import RedactSecretsFilter
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL
from tests.fakes import provider_twilio as tw

pytestmark = pytest.mark.django_db
HIDDEN = "********************"  # what Django's reporter filter puts instead of a value
# A Bitrix24 token or code: a long run of lowercase hex (docs/bitrix24-protocol.md §3.2).
TOKEN_SHAPED = re.compile(r"\b[0-9a-f]{60,}\b")


def refuse_new_rows(table: str) -> None:
    """Make the database refuse every new or changed row of `table`, as a constraint added by
    an operator or a failing disk would. Rolled back with the test's transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT test_refuses_rows CHECK (false) NOT VALID"
        )


@pytest.fixture
def debug_client(settings, admin_user) -> Client:
    """A logged-in admin who sees Django's technical 500 page, as with DEBUG=true."""
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    return client


def assert_technical_500(response, error: str) -> str:
    page = response.content.decode()
    assert response.status_code == 500
    assert "Traceback" in page and error in page  # the page that shows locals and POST
    assert HIDDEN in page
    return page


def connect_form(code: str) -> dict[str, str]:
    return {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": "token",
    }


def break_app_credentials_rows(settings) -> str:
    refuse_new_rows("portals_appcredentials")
    return "IntegrityError"


def break_token_rows(settings) -> str:
    refuse_new_rows("portals_token")
    return "IntegrityError"


def break_encryption_key(settings) -> str:
    settings.ENCRYPTION_KEYS = ["not-a-fernet-key"]
    return "ImproperlyConfigured"


@pytest.mark.parametrize(
    "break_something", [break_app_credentials_rows, break_token_rows, break_encryption_key]
)
def test_a_500_on_connect_shows_neither_the_secret_nor_the_code(
    fake_bitrix, debug_client, settings, break_something
):
    error = break_something(settings)
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    response = debug_client.post(reverse("admin:portals_token_connect"), connect_form(code))
    page = assert_technical_500(response, error)
    assert fake_bitrix.count("authorization_code", ok_only=True) == 1  # it failed after Bitrix
    assert CLIENT_SECRET not in page
    assert code not in page
    assert TOKEN_SHAPED.findall(page) == []  # neither the code nor the new tokens


def test_a_500_on_the_app_credentials_form_does_not_show_the_secret(debug_client):
    refuse_new_rows("portals_appcredentials")
    form = {
        "name": "Acme CRM",
        "client_id": CLIENT_ID,
        "new_client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "refresh_policy": "interval",
        "refresh_interval_minutes": 25,
        "refresh_before_expiry_minutes": 10,
        "keepalive_days": 7,
    }
    response = debug_client.post(reverse("admin:portals_appcredentials_add"), form)
    page = assert_technical_500(response, "IntegrityError")
    assert CLIENT_SECRET not in page


def test_a_500_on_the_channel_form_does_not_show_its_credentials(debug_client):
    refuse_new_rows("notifications_channel")
    form = {
        "name": "Ann's phone",
        "kind": "twilio",
        "destination": "+14155550100",
        "enabled": "on",
        "covers_all_tokens": "on",
        "max_per_hour": 20,
        "remind_every_minutes": 0,
        "twilio__account_sid": tw.ACCOUNT_SID,
        "twilio__auth_token": tw.AUTH_TOKEN,
        "twilio__sender": tw.SENDER,
    }
    response = debug_client.post(reverse("admin:notifications_channel_add"), form)
    page = assert_technical_500(response, "IntegrityError")
    assert tw.AUTH_TOKEN not in page


def test_the_error_page_hides_settings_that_hold_a_password(settings):
    settings.CELERY_BROKER_URL = "redis://:broker-password@127.0.0.1:6379/0"
    safe = SecretsExceptionReporterFilter().get_safe_settings()
    assert safe["CELERY_BROKER_URL"] == HIDDEN
    assert safe["ENCRYPTION_KEYS"] == HIDDEN and safe["SECRET_KEY"] == HIDDEN


# --- Log lines ------------------------------------------------------------------------------
ACCESS_TOKEN = "0a1b2c3d" + "4e5f6a7b" * 7 + "9c"  # the shape of a Bitrix24 token


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING) writes, captured."""
    handler = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactSecretsFilter) for f in h.filters)
    )
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def fail_with_a_secret_in_the_text() -> None:
    try:
        raise ConnectionError(f"POST failed: client_secret={CLIENT_SECRET}&code=C0DE{CLIENT_ID}")
    except ConnectionError as err:
        raise RuntimeError("refresh failed") from err


def test_a_logged_traceback_comes_out_redacted(console):
    try:
        fail_with_a_secret_in_the_text()
    except RuntimeError:
        logging.getLogger("b24keeper.test").exception("the refresh of %s failed", "token")
    output = console.getvalue()
    assert "the refresh of token failed" in output
    assert "Traceback (most recent call last)" in output and "RuntimeError" in output
    assert "client_secret=[redacted]" in output
    assert CLIENT_SECRET not in output and f"C0DE{CLIENT_ID}" not in output


def test_a_token_in_an_exception_repr_comes_out_redacted(console):
    try:
        raise KeyError({"refresh_token": "Zq" + CLIENT_SECRET, "access_token": ACCESS_TOKEN})
    except KeyError:
        logging.getLogger("celery.app.trace").error("Task failed", exc_info=True)
    output = console.getvalue()
    assert "KeyError" in output
    assert ACCESS_TOKEN not in output and CLIENT_SECRET not in output


def test_a_traceback_formatted_before_the_filter_ran_is_redacted_too(console):
    logger = logging.getLogger("b24keeper.test")
    try:
        raise ValueError(f"bad answer for access_token={ACCESS_TOKEN}")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    record.exc_text = logging.Formatter().formatException(record.exc_info)  # another handler
    record.stack_info = f"Stack (most recent call last):\n  call(token={ACCESS_TOKEN})"
    logger.handle(record)
    output = console.getvalue()
    assert "ValueError" in output and "Stack (most recent call last)" in output
    assert ACCESS_TOKEN not in output
