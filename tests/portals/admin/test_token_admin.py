"""The token admin: states in words and colours, actions, and a constant number of queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.models import Incident
from portals.models import AppCredentials, Token, TokenStatus
from tests.conftest import CLIENT_SECRET, connect

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:portals_token_changelist"


def list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    return len(queries)


def test_the_token_list_costs_the_same_queries_for_2_or_30_tokens(fake_bitrix, admin_client):
    for i in range(2):
        connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com")
    few = list_queries(admin_client)
    for i in range(2, 30):
        connect(fake_bitrix, f"t{i}", portal=f"p{i}.bitrix24.com")
    Incident.objects.create(token=Token.objects.first(), message="x")
    assert list_queries(admin_client) == few


def test_the_token_list_shows_status_expiry_failures_and_incidents(fake_bitrix, admin_client):
    token = connect(fake_bitrix)
    Token.objects.filter(pk=token.pk).update(
        status=TokenStatus.REFRESH_FAILING, failure_count=3, last_error="Bitrix24 answered 503"
    )
    Incident.objects.create(token=token, message="failing")
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Refresh failing (3×)" in html and "#fd7e14" in html
    assert "59 min" in html or "60 min" in html
    assert '<span class="incident-open">open</span>' in html  # a word, not a ✔ or ✖ icon
    assert "icon-yes.svg" not in html and "icon-no.svg" not in html
    assert "Add task (connect a portal)" in html
    filtered = admin_client.get(reverse(CHANGELIST), {"status__exact": "active"})
    assert "acme.bitrix24.com" not in filtered.content.decode().split("result_list")[-1]


def test_refresh_now_goes_through_the_refresh_service(fake_bitrix, admin_client):
    token = connect(fake_bitrix)
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "refresh_now", "index": 0, "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Refreshed “token”." in response.content.decode()
    token.refresh_from_db()
    assert token.version == 2
    assert token.attempts.filter(kind="manual", outcome="success").exists()
    page = admin_client.get(reverse("admin:portals_token_change", args=[token.pk]))
    assert "Manual" in page.content.decode() and "Code exchange" in page.content.decode()


def test_refresh_now_reports_bitrix_error(fake_bitrix, admin_client):
    token = connect(fake_bitrix)
    fake_bitrix.revoke_chain(token.refresh_token)
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "refresh_now", "index": 0, "_selected_action": [token.pk]},
        follow=True,
    )
    assert "invalid_grant" in response.content.decode()


def test_disable_and_enable(fake_bitrix, admin_client):
    token = connect(fake_bitrix)
    for action, status in (("disable", TokenStatus.DISABLED), ("enable", TokenStatus.ACTIVE)):
        admin_client.post(
            reverse(CHANGELIST), {"action": action, "index": 0, "_selected_action": [token.pk]}
        )
        token.refresh_from_db()
        assert token.status == status
    assert token.next_refresh_at is not None


def test_app_credentials_secret_is_write_only(admin_client):
    url = reverse("admin:portals_appcredentials_add")
    form = {
        "name": "CRM sync",
        "client_id": "local.6a1b2c3d4e5f60.48151623",
        "scope": "crm,user",
        "refresh_policy": "before_expiry",
        "refresh_interval_minutes": 25,
        "refresh_before_expiry_minutes": 10,
        "keepalive_days": 7,
    }
    page = admin_client.post(url, form)
    assert "Enter the client secret" in page.content.decode()
    admin_client.post(url, {**form, "new_client_secret": CLIENT_SECRET})
    app = AppCredentials.objects.get()
    assert app.client_secret == CLIENT_SECRET
    change = reverse("admin:portals_appcredentials_change", args=[app.pk])
    html = admin_client.get(change).content.decode()
    assert CLIENT_SECRET not in html and "••••" + CLIENT_SECRET[-4:] in html
    admin_client.post(change, {**form, "new_client_secret": ""})
    app.refresh_from_db()
    assert app.client_secret == CLIENT_SECRET  # an empty field keeps the stored secret


def test_the_sweep_is_one_periodic_task_editable_in_the_admin(admin_client):
    from django_celery_beat.models import PeriodicTask

    sweep = PeriodicTask.objects.get(task="portals.tasks.sweep_due_tokens")
    assert sweep.interval.every == 60 and sweep.enabled
    page = admin_client.get(
        reverse("admin:django_celery_beat_periodictask_change", args=[sweep.pk])
    )
    assert page.status_code == 200 and "Sweep due tokens" in page.content.decode()
