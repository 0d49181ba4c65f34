"""API keys in the admin: shown once, their own permission, and in the admin's history."""

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from api import keys
from api.models import ApiKey
from core.roles import VIEWERS

pytestmark = pytest.mark.django_db
ADD = reverse("admin:api_apikey_add")
CHANGELIST = reverse("admin:api_apikey_changelist")


@pytest.fixture
def manager(django_user_model, client):
    """Staff with api.manage_apikey (and what the form needs to list tokens)."""
    user = django_user_model.objects.create_user("mia", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS))
    user.user_permissions.add(Permission.objects.get(codename="manage_apikey"))
    client.force_login(user)
    return user


@pytest.fixture
def viewer(django_user_model, client):
    user = django_user_model.objects.create_user("vic", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS))
    client.force_login(user)
    return user


def add_form(token, **overrides) -> dict:
    return {"name": "billing", "scopes": "token", "tokens": [token.pk], "rate_per_minute": 600,
            **overrides}  # fmt: skip


def test_a_new_key_is_shown_once_and_works(client, manager, token):
    created = client.post(ADD, add_form(token))
    api_key = ApiKey.objects.get()
    assert created.status_code == 302  # post/redirect/get: a reload never posts again
    assert created["Location"] == reverse("admin:api_apikey_created", args=[api_key.pk])
    page = client.get(created["Location"])
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    html = page.content.decode()
    key = html.split('id="api-key"', 1)[1].split(">", 1)[1].split("<", 1)[0]
    assert key.startswith(api_key.prefix) and keys.digest(key) == api_key.key_hash
    assert api_key.created_by == manager and list(api_key.tokens.all()) == [token]
    entry = LogEntry.objects.get(object_id=str(api_key.pk))
    assert entry.action_flag == ADDITION and entry.user == manager
    response = client.get("/api/tokens/token/", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    change = client.get(reverse("admin:api_apikey_change", args=[api_key.pk]))
    assert key not in change.content.decode() and api_key.prefix in change.content.decode()
    assert key not in client.get(CHANGELIST).content.decode()
    again = client.get(created["Location"]).content.decode()  # the reload
    assert key not in again and 'id="key-gone"' in again
    assert ApiKey.objects.count() == 1
    assert "b24keeper_new_api_key" not in client.session


def test_a_key_must_read_something(client, manager, token):
    page = client.post(ADD, add_form(token, tokens=[]))
    assert "Choose the tokens this key may read" in page.content.decode()
    assert not ApiKey.objects.exists()
    client.post(ADD, add_form(token, tokens=[], all_tokens="on"))
    assert ApiKey.objects.get().all_tokens


def test_revoking_needs_the_permission_and_is_in_the_history(client, manager, token):
    api_key, key = keys.create_key("billing", ["token"])
    action = {"action": "revoke", "_selected_action": [api_key.pk]}
    client.post(CHANGELIST, action, follow=True)
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    entry = LogEntry.objects.get(object_id=str(api_key.pk))
    assert entry.action_flag == CHANGE and "Revoked" in entry.get_change_message()
    response = client.get("/api/tokens/token/", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


def test_viewers_see_keys_but_cannot_create_change_or_revoke_them(client, viewer, token):
    api_key, _ = keys.create_key("billing", ["token"])
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and api_key.prefix in page.content.decode()
    assert 'value="revoke"' not in page.content.decode()
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, add_form(token)).status_code == 403
    client.post(CHANGELIST, {"action": "revoke", "_selected_action": [api_key.pk]})
    change = client.post(reverse("admin:api_apikey_change", args=[api_key.pk]), add_form(token))
    assert change.status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None and ApiKey.objects.count() == 1


def test_a_new_proxy_key_shows_its_ready_webhook_url(client, manager, token, settings):
    created = client.post(ADD, add_form(token, scopes="proxy", methods="crm.lead.*"))
    html = client.get(created["Location"]).content.decode()
    api_key = ApiKey.objects.get()
    key = html.split('id="api-key"', 1)[1].split(">", 1)[1].split("<", 1)[0]
    assert f"{settings.SITE_URL}/rest/{token.pk}/{key}/" in html
    assert "Authorization: Bearer" not in html  # a proxy-only key reads no token
    assert api_key.scopes == "proxy" and api_key.methods == "crm.lead.*"


def test_a_bad_scope_or_method_pattern_is_refused_naming_the_field(client, manager, token):
    page = client.post(ADD, add_form(token, scopes="tokens", methods="crm lead/list"))
    assert page.status_code == 200 and not ApiKey.objects.exists()
    errors = page.context["adminform"].form.errors
    assert "scopes" in errors and "methods" in errors
