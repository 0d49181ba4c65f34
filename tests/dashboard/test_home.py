"""The staff home page at `/`: who may see it, what it shows, and a constant number of queries
whatever the number of tokens."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Delivery, Incident
from portals.models import AppCredentials, Portal, RefreshAttempt, Token, TokenStatus
from tests.notifications_helpers import make_channel

pytestmark = pytest.mark.django_db


def make_tokens(count: int, start: int = 0) -> list[Token]:
    """Tokens straight in the database, with a spread of statuses and expiries."""
    app = AppCredentials.objects.first() or AppCredentials.objects.create(
        name="CRM sync", client_id="local.6a1b2c3d4e5f60.48151623", client_secret="s" * 40
    )
    portals = Portal.objects.bulk_create(
        [Portal(domain=f"p{i}.bitrix24.com") for i in range(start, start + count)]
    )
    statuses = [TokenStatus.ACTIVE] * 7 + [TokenStatus.REFRESH_FAILING, TokenStatus.NEEDS_REAUTH]
    now = timezone.now()
    return Token.objects.bulk_create(
        [
            Token(
                portal=portal,
                app=app,
                reference=f"token-{start + i}",
                status=statuses[i % len(statuses)],
                expires_at=now + timedelta(minutes=5 + i % 60),
                failing_since=None if i % len(statuses) < 7 else now - timedelta(minutes=i % 90),
                access_token="a1" * 35,
                refresh_token="b2" * 35,
            )
            for i, portal in enumerate(portals)
        ]
    )


def history(tokens: list[Token]) -> None:
    now = timezone.now()
    RefreshAttempt.objects.bulk_create(
        [
            RefreshAttempt(
                token=token,
                kind=RefreshAttempt.Kind.SCHEDULED,
                outcome="success" if i % 5 else "transient_error",
                started_at=now - timedelta(minutes=37 * i % 1400),
                finished_at=now,
            )
            for i, token in enumerate(tokens)
        ]
    )


def page_queries(client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_anonymous_users_go_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_admins_view_site_link_leads_home(admin_client):
    assert 'href="/"' in admin_client.get("/admin/").content.decode()


def test_it_shows_statuses_incidents_soonest_tokens_and_failed_deliveries(admin_client):
    tokens = make_tokens(20)
    history(tokens)
    Incident.objects.create(token=tokens[7], error_code="invalid_grant", message="x")
    channel = make_channel("telegram")
    Delivery.objects.create(
        incident=Incident.objects.get(),
        channel=channel,
        event="opened",
        status="failed",
        error="Telegram says: bot was blocked by the user (403).",
    )
    _, html = page_queries(admin_client)
    assert "/admin/portals/token/?status__exact=active" in html
    assert "Open incidents (1)" in html and "invalid_grant" in html
    assert "Failed deliveries (1)" in html and "bot was blocked" in html
    assert "token-0" in html  # expires soonest
    assert "<svg" in html and "refreshed" in html
    assert 'http-equiv="refresh"' in html
    assert "a1" * 35 not in html


def test_it_costs_the_same_queries_for_10_or_10000_tokens(admin_client):
    history(make_tokens(10))
    few, _ = page_queries(admin_client)
    history(make_tokens(9990, start=10))
    many, html = page_queries(admin_client)
    assert many == few, f"{few} queries with 10 tokens, {many} with 10,000"
    assert ">7778<" in html  # active tokens among the 10,000
