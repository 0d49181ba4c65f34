"""Add app credentials: one required client_secret field (nothing stored yet to keep); the
change page shows the stored secret's end and an optional new one."""

import re

import pytest
from django.urls import reverse

from portals.models import AppCredentials
from tests.conftest import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.django_db


def test_the_add_form_has_one_required_client_secret(admin_client):
    html = admin_client.get(reverse("admin:portals_appcredentials_add")).content.decode()
    assert len(re.findall(r'name="new_client_secret"', html)) == 1
    assert "field-masked_secret" not in html and "leave empty" not in html.lower()
    assert re.search(r'<label class="required" for="id_new_client_secret">', html)
    form = {
        "name": "CRM", "client_id": CLIENT_ID, "scope": "crm", "refresh_policy": "interval",
        "refresh_interval_minutes": 25, "refresh_before_expiry_minutes": 10, "keepalive_days": 7,
    }  # fmt: skip
    page = admin_client.post(reverse("admin:portals_appcredentials_add"), form)
    assert "Enter the client secret from the app" in page.content.decode()
    assert not AppCredentials.objects.exists()
    form["new_client_secret"] = CLIENT_SECRET
    assert admin_client.post(reverse("admin:portals_appcredentials_add"), form).status_code == 302
    app = AppCredentials.objects.get()
    change = admin_client.get(reverse("admin:portals_appcredentials_change", args=[app.pk]))
    html = change.content.decode()
    assert "field-masked_secret" in html and "Leave empty to keep" in html
