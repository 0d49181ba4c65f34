"""Who may do what: every admin action and custom view checks a permission, for each role —
a staff user with no permission, a viewer, an operator and a superuser."""

import re

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from core.roles import OPERATORS, VIEWERS
from notifications.models import Channel
from portals.models import Token, TokenStatus
from tests import admin_world
from tests.conftest import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.django_db
ROLES = ("none", "viewer", "operator", "superuser")
TOKENS = "admin:portals_token_changelist"
CHANNELS = "admin:notifications_channel_changelist"


@pytest.fixture
def as_role(client):
    def login(role: str):
        user = User.objects.create_user(
            role, password="x", is_staff=True, is_superuser=role == "superuser"
        )
        group = {"viewer": VIEWERS, "operator": OPERATORS}.get(role)
        if group:
            user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def channel(db):
    channel = Channel(kind="telegram", name="Ann", destination="987654321")
    channel.set_credentials({"bot_token": "123456:ABCdefGhIJKlmNoPQRstuVWxyz"})
    channel.save()
    return channel


def post_action(client, url: str, action: str, pk: int):
    return client.post(reverse(url), {"action": action, "index": 0, "_selected_action": [pk]})


def test_the_two_groups_exist_with_their_permissions():
    viewers = set(Group.objects.get(name=VIEWERS).permissions.values_list("codename", flat=True))
    operators = set(
        Group.objects.get(name=OPERATORS).permissions.values_list("codename", flat=True)
    )
    assert {"view_token", "view_channel", "view_incident", "view_delivery"} <= viewers
    assert not any(code.startswith(("change_", "add_", "delete_")) for code in viewers)
    custom = {"connect_portal", "refresh_token", "toggle_token", "toggle_channel"}
    assert custom | {"send_test_message"} <= operators
    assert not custom & viewers


@pytest.mark.parametrize("role", ROLES)
def test_disable_needs_the_toggle_permission(as_role, token, role):
    client = as_role(role)
    response = post_action(client, TOKENS, "disable", token.pk)
    token.refresh_from_db()
    allowed = role in ("operator", "superuser")
    assert (token.status == TokenStatus.DISABLED) is allowed
    if role == "none":
        assert response.status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_refresh_now_needs_the_refresh_permission(as_role, token, role):
    post_action(as_role(role), TOKENS, "refresh_now", token.pk)
    token.refresh_from_db()
    assert (token.version == 2) is (role in ("operator", "superuser"))


@pytest.mark.parametrize("role", ROLES)
def test_the_connect_view_needs_the_connect_permission(as_role, fake_bitrix, role):
    client = as_role(role)
    url = reverse("admin:portals_token_connect")
    form = {
        "portal": "acme.bitrix24.com",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": fake_bitrix.issue_code(CLIENT_ID, "acme.bitrix24.com"),
        "reference": "token",
    }
    page, posted = client.get(url), client.post(url, form)
    allowed = role in ("operator", "superuser")
    assert (page.status_code == 200) is allowed and (posted.status_code == 302) is allowed
    assert Token.objects.exists() is allowed
    listing = client.get(reverse(TOKENS))
    assert ("Add task (connect a portal)" in listing.content.decode()) is allowed


@pytest.mark.parametrize("role", ROLES)
def test_disabling_a_channel_needs_the_toggle_permission(as_role, channel, role):
    post_action(as_role(role), CHANNELS, "disable", channel.pk)
    channel.refresh_from_db()
    assert channel.enabled is not (role in ("operator", "superuser"))


@pytest.mark.parametrize("role", ROLES)
def test_a_test_message_needs_its_permission(as_role, channel, role, settings):
    settings.TELEGRAM_API_URL = "http://127.0.0.1:9"  # nothing listens: the send is refused
    post_action(as_role(role), CHANNELS, "send_test_message", channel.pk)
    tried = bool(Channel.objects.get().last_error)
    assert tried is (role in ("operator", "superuser"))


@pytest.mark.parametrize("role", ROLES)
def test_the_token_page_is_read_only_for_viewers(as_role, token, role):
    client = as_role(role)
    url = reverse("admin:portals_token_change", args=[token.pk])
    page = client.get(url)
    assert page.status_code == (403 if role == "none" else 200)
    client.post(url, {"reference": "renamed", "owner": "", "notes": ""})
    token.refresh_from_db()
    assert (token.reference == "renamed") is (role == "superuser")


def test_a_viewer_sees_no_none_where_a_secret_input_would_be(token):
    """A viewer's pages show the stored secrets' masked ends, never "None" for the write-only
    inputs they cannot use."""
    rows = admin_world.build(token)
    viewer = admin_world.login("viewer")
    for label in ("portals.appcredentials", "notifications.channel"):
        app, model = label.split(".")
        html = viewer.get(f"/admin/{app}/{model}/{rows[label].pk}/change/").content.decode()
        readonly = re.findall(r'<div class="readonly">([^<]*)</div>', html)
        assert "None" not in readonly, label
        assert "••••" in html, label  # the stored secret's end is still shown
