"""Each role on the new pages and buttons: a staff user with no permission, a viewer, an
operator and a superuser (core/roles.py). Every view checks a permission, not is_staff."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from core.roles import OPERATORS, VIEWERS
from portals.models import Token, TokenStatus
from tests.notifications_helpers import make_channel

# Fixtures: fakes (the providers' fake servers).
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
OK = (200, 302)


def login(role: str) -> Client:
    user = get_user_model().objects.create_user(role, password="pw-" + role * 3, is_staff=True)
    if role == "superuser":
        user.is_superuser = True
        user.save()
    elif role in ("viewer", "operator"):
        user.groups.add(Group.objects.get(name=VIEWERS if role == "viewer" else OPERATORS))
    client = Client()
    client.force_login(user)
    return client


def pages(token: Token, channel_pk: int) -> dict[str, tuple[str, str]]:
    """(method, url) of every new view, by the permission it needs."""
    return {
        "home": ("get", "/"),
        "add_task": ("get", reverse("admin:portals_token_connect")),
        "connect_new": ("get", reverse("admin:portals_token_connect_new")),
        "reconnect": ("post", reverse("admin:portals_token_reconnect", args=[token.pk])),
        "pending": ("get", reverse("admin:portals_token_pending", args=[1])),
        "refresh": ("post", reverse("admin:portals_token_refresh", args=[token.pk])),
        "toggle": ("post", reverse("admin:portals_token_toggle", args=[token.pk])),
        "send_test": ("post", reverse("admin:notifications_channel_test", args=[channel_pk])),
        "channel_toggle": (
            "post",
            reverse("admin:notifications_channel_toggle", args=[channel_pk]),
        ),
    }


ALLOWED = {
    "none": set(),
    "viewer": {"home"},
    "operator": {
        "home",
        "add_task",
        "connect_new",
        "reconnect",
        "pending",
        "refresh",
        "toggle",
        "send_test",
        "channel_toggle",
    },
}
ALLOWED["superuser"] = ALLOWED["operator"]


@pytest.mark.parametrize("role", ["none", "viewer", "operator", "superuser"])
def test_each_role_reaches_exactly_its_pages(role, token, fakes):
    client = login(role)
    channel = make_channel("telegram")
    for name, (method, url) in pages(token, channel.pk).items():
        data = {"_confirm": "1"} if name == "toggle" else {}  # Disable asks first
        status = getattr(client, method)(url, data).status_code
        if name in ALLOWED[role]:
            assert status in OK, f"{role} should reach {name}: HTTP {status}"
        else:
            assert status == 403, f"{role} must not reach {name}: HTTP {status}"
    token.refresh_from_db()
    expected = TokenStatus.DISABLED if "toggle" in ALLOWED[role] else TokenStatus.ACTIVE
    assert token.status == expected


@pytest.mark.parametrize("role", ["none", "viewer"])
def test_the_callback_needs_the_connect_permission(role, fake_bitrix):
    client = login(role)
    response = client.get("/bitrix/local.6a1b2c3d4e5f60.48151623/callback/?state=x&code=y")
    assert response.status_code == 403
    assert "connect portals" in response.content.decode()
