"""renew(): "the portal refused this token" — one refresh, single flight, bounded; and the
immutable view get_token() and refresh() hand out."""

import asyncio
import dataclasses
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from ops.models import Counter
from portals.models import Token, TokenStatus
from portals.tokens import (
    RenewLimited,
    TokenUnavailable,
    TokenView,
    aget_access_token,
    arenew,
    get_token,
    refresh,
    renew,
)
from tests.conftest import connect
from tests.processes import start_python


def renewals(outcome: str) -> float:
    rows = Counter.objects.filter(
        name="b24keeper_renewals_total", labels=f'{{"outcome": "{outcome}"}}'
    )
    return sum(row.value for row in rows)


@pytest.mark.django_db
def test_a_refused_token_is_refreshed_once_and_the_new_one_works(fake_bitrix, token):
    fake_bitrix.refuse_access(token.access_token)  # b24keeper still believes in it
    fresh = renew("token", token.access_token)
    assert fresh != token.access_token and fake_bitrix.access_token_valid(fresh)
    assert fake_bitrix.count("refresh_token") == 1
    assert list(token.attempts.filter(kind="renew").values_list("outcome", flat=True)) == [
        "success"
    ]
    assert renewals("refreshed") == 1
    # A caller still holding the old token gets the stored one, without a refresh.
    assert renew("token", token.access_token) == fresh
    assert fake_bitrix.count("refresh_token") == 1 and renewals("already_renewed") == 1


@pytest.mark.django_db
def test_a_refusal_that_persists_is_limited_to_one_refresh_a_minute(fake_bitrix, token):
    fake_bitrix.refuse_every_access()
    fresh = renew("token", token.access_token)
    with pytest.raises(RenewLimited) as limited:
        renew("token", fresh)
    assert 1 <= limited.value.retry_after <= 60 and "another refresh would not help" in str(
        limited.value
    )
    assert fake_bitrix.count("refresh_token") == 1 and renewals("limited") == 1
    # A minute later the bound lets one more refresh through.
    token.attempts.filter(kind="renew").update(finished_at=timezone.now() - timedelta(seconds=61))
    assert renew("token", fresh) != fresh
    assert fake_bitrix.count("refresh_token") == 2


@pytest.mark.django_db
def test_a_token_that_cannot_be_renewed_raises_what_get_access_token_raises(fake_bitrix, token):
    Token.objects.filter(pk=token.pk).update(status=TokenStatus.NEEDS_REAUTH)
    with pytest.raises(TokenUnavailable, match="connects it again") as caught:
        renew("token", token.access_token)
    assert caught.value.status == TokenStatus.NEEDS_REAUTH
    assert fake_bitrix.count("refresh_token") == 0 and renewals("failed") == 1


@pytest.mark.django_db(transaction=True)
def test_callers_in_threads_and_processes_at_once_cause_one_refresh(fake_bitrix):
    token = connect(fake_bitrix)
    fake_bitrix.refuse_access(token.access_token)
    fake_bitrix.latency = 0.5  # keep the refresh in flight while everyone piles in
    code = f"from portals.tokens import renew; print(renew('token', {token.access_token!r}))"
    children = [start_python(code) for _ in range(2)]
    results: list[str] = []

    def call() -> None:
        try:
            results.append(renew("token", token.access_token))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(out.strip())
    assert fake_bitrix.count("refresh_token") == 1
    assert len(results) == 6 and set(results) == {Token.objects.get().access_token}


@pytest.mark.django_db(transaction=True)
def test_the_async_twins_work_from_an_event_loop(fake_bitrix):
    token = connect(fake_bitrix)

    async def main() -> tuple[str, str]:
        current = await aget_access_token("token")
        fresh = await arenew("token", current)
        await sync_to_async(lambda: connection.close())()  # the worker thread's connection
        return current, fresh

    current, fresh = asyncio.run(main())
    assert current == token.access_token and fresh != current
    assert fake_bitrix.count("refresh_token") == 1


@pytest.mark.django_db
def test_get_token_and_refresh_give_an_immutable_view_without_secrets(fake_bitrix, token):
    view = get_token("token")
    assert isinstance(view, TokenView) and view.id == token.pk
    assert view.access_token == token.access_token and view.app_status == "L"
    assert view.client_endpoint == "https://acme.bitrix24.com/rest/" and view.scope == "crm,user"
    names = {f.name for f in dataclasses.fields(TokenView)}
    assert not names & {"refresh_token", "client_secret", "app", "portal", "application_token"}
    assert not hasattr(view, "__dict__")  # slots: nothing can be hung on it either
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.access_token = "x"  # type: ignore[misc]
    assert token.access_token not in repr(view)
    refreshed = refresh("token")
    assert isinstance(refreshed, TokenView) and refreshed.access_token != view.access_token
