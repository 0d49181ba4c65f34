"""One call to the authorization server ends by BITRIX_OAUTH_DEADLINE, however its answer
arrives: requests' timeout bounds each read, and an answer dripping a byte at a time passes
every one of them (issue 16 item 9)."""

import threading
import time

import pytest

from portals.bitrix.errors import OAuthError
from portals.bitrix.oauth import BitrixOAuthClient
from tests.conftest import CLIENT_ID, CLIENT_SECRET, connect

pytestmark = pytest.mark.django_db


def test_a_dripping_answer_ends_at_the_deadline(fake_bitrix, settings):
    token = connect(fake_bitrix)
    settings.BITRIX_READ_TIMEOUT = 2.0
    settings.BITRIX_OAUTH_DEADLINE = 1.5
    fake_bitrix.drip_interval = 0.2  # every read well within 2 s; the whole body in minutes
    fake_bitrix.fail_next("drip")
    client = BitrixOAuthClient(server=fake_bitrix.base_url)
    outcome: dict[str, object] = {}

    def call() -> None:
        began = time.monotonic()
        try:
            client.refresh(CLIENT_ID, CLIENT_SECRET, token.refresh_token)
        except OAuthError as err:
            outcome["code"] = err.code
        outcome["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "the call outlived its deadline by far"
    assert outcome["code"] == "timeout"
    assert outcome["seconds"] < 1.5 + 2.0  # the deadline, plus at most one read


def test_a_prompt_answer_is_read_whole(fake_bitrix, settings):
    token = connect(fake_bitrix)
    settings.BITRIX_OAUTH_DEADLINE = 1.5
    grant = BitrixOAuthClient(server=fake_bitrix.base_url).refresh(
        CLIENT_ID, CLIENT_SECRET, token.refresh_token
    )
    assert fake_bitrix.access_token_valid(grant.access_token)
