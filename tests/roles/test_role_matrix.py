"""The role matrix: every admin URL and every public URL we ship, for an anonymous caller, a
viewer, an operator and a superuser (README "Who may do what"), GET and state-changing POST.

URLs are enumerated from the URL resolvers and the admin registry, so a page added later is
covered at once: a model's pages follow the generic rule below, and a custom page or a public
address that is in no table here fails `test_every_url_has_an_expectation` until someone
decides who may use it. Each request runs in a transaction that is rolled back, so an allowed
POST (a delete, a refresh) does not change what the next request sees; a refused one must
change no row of any admin table.

The generic rule for a model's pages: anonymous → the login page; a viewer or an operator sees
(list, page, history: 200) the models of VIEWED_APPS and nothing else (403), and adds, changes
or deletes nothing (403); a superuser may do everything the model admin allows at all (NOBODY
lists what it does not). Install and events (server-to-server,
tests/portals/connect/test_install.py) are here only as "a staff session changes nothing there".
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver

from portals.bitrix.oauth import BitrixOAuthClient
from portals.connect import states
from portals.models import PendingPair
from tests import admin_world
from tests.admin_world import ROLES
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL
from tests.fakes.bitrix import FakeBitrix
from tests.role_checks import Call, Expect, check_action, check_call, superuser_actions

pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
STAFF = frozenset({"viewer", "operator", "superuser"})
OPS = frozenset({"operator", "superuser"})
ROOT = frozenset({"superuser"})
VIEWED_APPS = {"portals", "notifications", "django_celery_beat", "api"}
# What the model admin allows nobody, a superuser included (rows written by b24keeper).
NOBODY = {
    "portals.token": {"add"},  # tokens come from connecting a portal
    "portals.refreshattempt": {"add", "change"},
    "notifications.delivery": {"add", "change", "delete"},
    "notifications.incident": {"add", "change", "delete"},
    "axes.accessattempt": {"add"},
    "axes.accesslog": {"add"},
    "axes.accessfailurelog": {"add"},
}
# Deleting these would delete incidents and deliveries, which nobody deletes: refused while
# they have any (the world here gives them one), a superuser included.
KEPT_BY_HISTORY = {"portals.token", "notifications.channel"}
# The only actions an operator may run (its custom permissions).
OPERATOR_ACTIONS = {
    ("portals.token", "refresh_now"),
    ("portals.token", "disable"),
    ("portals.token", "enable"),
    ("notifications.channel", "send_test_message"),
    ("notifications.channel", "enable"),
    ("notifications.channel", "disable"),
}


@dataclass
class World:
    rows: dict  # one row of each admin model (tests/admin_world.py)
    pending_pk: int  # a re-connect waiting for the signed-in user
    fake: FakeBitrix


class Custom(NamedTuple):
    """A page of ours or of Django's site: a "page" answers GET 200 to `who`; a "button" is
    POST only (GET: 405 for everyone). `pk` and `body` are built from the world."""

    kind: str
    who: frozenset[str]
    pk: Callable[[World], int] | None = None
    body: Callable[[World], dict] | None = None


def add_task_form(world: World) -> dict[str, str]:
    return {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": world.fake.issue_code(CLIENT_ID, PORTAL),
        "reference": "token",
    }


def token_pk(world: World) -> int:
    return world.rows["portals.token"].pk


def channel_pk(world: World) -> int:
    return world.rows["notifications.channel"].pk


CUSTOM = {
    "portals_token_connect": Custom("page", OPS, body=add_task_form),
    "portals_token_connect_new": Custom(
        "page", OPS, body=lambda w: {"app": w.rows["portals.appcredentials"].pk, "portal": PORTAL}
    ),
    "portals_token_reconnect": Custom("button", OPS, token_pk),
    "portals_token_refresh": Custom("button", OPS, token_pk),
    "portals_token_toggle": Custom("button", OPS, token_pk),
    "portals_token_pending": Custom(
        "page", OPS, lambda w: w.pending_pk, body=lambda w: {"_confirm": "1"}
    ),
    "notifications_channel_test": Custom("button", OPS, channel_pk),
    # The page a new API key is shown on once (api.manage_apikey: the superuser here).
    "api_apikey_created": Custom("page", ROOT, lambda w: w.rows["api.apikey"].pk),
    "notifications_channel_toggle": Custom("button", OPS, channel_pk),
    "auth_user_password_change": Custom(
        "page",
        ROOT,
        lambda w: w.rows["auth.user"].pk,
        lambda w: {"password1": "An0ther-pass-phrase", "password2": "An0ther-pass-phrase"},
    ),
    # Django's admin site: every staff user's own pages.
    "index": Custom("page", STAFF),
    "password_change": Custom("page", STAFF),
    "password_change_done": Custom("page", STAFF),
    "jsi18n": Custom("page", STAFF),
}
# Site pages whose answer is not "200 to who may, 403 to the others".
SPECIAL = {"login", "logout", "autocomplete", "view_on_site", "app_list", None}


def admin_routes() -> list[tuple[str | None, str]]:
    """(URL name, route) of every admin URL, the registry's custom ones included."""

    def walk(patterns: list, prefix: str):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield pattern.name, prefix + str(pattern.pattern)

    return list(walk(admin.site.get_urls(), "/admin/"))


def model_of(route: str) -> str | None:
    """'/admin/portals/token/<path:object_id>/change/' → 'portals.token' (None: not a model's)."""
    parts = route.split("/")
    label = f"{parts[2]}.{parts[3]}" if len(parts) > 3 else ""
    registered = {m._meta.label_lower for m in admin.site._registry}
    return label if label in registered else None


MODEL_PAGES = {"changelist", "add", "history", "delete", "change", "redirect"}


def page_kind(name: str | None, label: str) -> str:
    """'portals_token_change' → 'change'; the unnamed '<id>/' → 'redirect'."""
    return name.removeprefix(label.replace(".", "_") + "_") if name else "redirect"


def model_calls(name: str | None, route: str, label: str, world: World) -> list[Call]:
    """The generic rule for one of a model's pages."""
    pk = world.rows[label].pk
    url = route.replace("<path:object_id>", str(pk))
    kind = page_kind(name, label)
    if kind == "redirect":  # '<id>/' redirects to the change page for everyone signed in
        return [Call("get", url, Expect(STAFF, allowed=302, refused=302))]
    sees = STAFF if label.split(".")[0] in VIEWED_APPS else ROOT
    may = frozenset() if kind in NOBODY.get(label, ()) else ROOT
    if kind in ("changelist", "history"):
        return [Call("get", url, Expect(sees))]
    if kind == "change":
        return [Call("get", url, Expect(sees)), Call("post", url, Expect(may), body={})]
    if kind == "delete":
        posting = frozenset() if label in KEPT_BY_HISTORY else may
        return [Call("get", url, Expect(may)), Call("post", url, Expect(posting), {"post": "yes"})]
    return [Call("get", url, Expect(may)), Call("post", url, Expect(may), body={})]


def custom_calls(name: str, route: str, world: World) -> list[Call]:
    page = CUSTOM[name]
    url = route
    if page.pk is not None:
        pk = str(page.pk(world))
        url = route.replace("<int:pk>", pk).replace("<id>", pk)
    if page.kind == "button":
        return [
            Call("get", url, Expect(STAFF, allowed=405, refused=405)),
            Call("post", url, Expect(page.who), body={}),
        ]
    calls = [Call("get", url, Expect(page.who))]
    if (body := page.body) is not None:  # built when sent: an Add task code lives 30 s
        calls.append(Call("post", url, Expect(page.who), body=lambda: body(world)))
    return calls


def special_calls(name: str | None, route: str, world: World) -> list[Call]:
    if name == "login":  # signed-in staff are sent on to the index
        return [Call("get", route, Expect(STAFF, allowed=302, anonymous=200))]
    if name == "logout":  # POST only (Django 5); nobody signed in is sent to the index
        return [Call("get", route, Expect(STAFF, allowed=405, refused=405, anonymous=302))]
    if name == "autocomplete":  # the token's owner: needs the view permission on users
        query = urlencode({"app_label": "portals", "model_name": "token", "field_name": "owner"})
        return [Call("get", f"{route}?{query}", Expect(ROOT))]
    if name == "view_on_site":  # no model of ours has a page outside the admin
        token = world.rows["portals.token"]
        kind = ContentType.objects.get_for_model(token)
        url = f"/admin/r/{kind.pk}/{token.pk}/"
        return [Call("get", url, Expect(STAFF, allowed=404, refused=404))]
    if name == "app_list":
        labels = sorted({m._meta.app_label for m in admin.site._registry})
        return [
            Call(
                "get",
                f"/admin/{label}/",
                Expect(STAFF if label in VIEWED_APPS else ROOT, refused=404),
            )
            for label in labels
        ]
    return [Call("get", "/admin/no-such-page/", Expect(STAFF, allowed=404, refused=404))]


def all_admin_calls(world: World) -> list[Call]:
    calls: list[Call] = []
    for name, route in admin_routes():
        label = model_of(route)
        if name in CUSTOM:
            calls += custom_calls(name, route, world)
        elif label is not None and page_kind(name, label) in MODEL_PAGES:
            calls += model_calls(name, route, label, world)
        elif name in SPECIAL:
            calls += special_calls(name, route, world)
        else:
            raise AssertionError(f"admin URL {name} ({route}) is in no table of this module")
    return calls


# Public addresses: (route as the resolver spells it) → calls with their expectations.
def public_calls(world: World) -> dict[str, list[Call]]:
    token_api = "/api/tokens/token/"
    proxy = f"/rest/{world.rows['portals.token'].pk}/not-a-key/user.current.json"
    callback = f"/bitrix/{CLIENT_ID}/callback/"
    events = f"/bitrix/{CLIENT_ID}/events/"
    install = f"/bitrix/{CLIENT_ID}/install/"
    unauthenticated_event = {"event": "ONAPPUNINSTALL", "auth[member_id]": "0" * 32}
    return {
        "": [Call("get", "/", Expect(STAFF, anonymous="login"))],
        "health/": [
            Call("get", "/health/", Expect(STAFF, allowed=(200, 503), anonymous=(200, 503)))
        ],
        "metrics": [Call("get", "/metrics", Expect(STAFF, anonymous=401))],
        "metrics/": [Call("get", "/metrics/", Expect(STAFF, anonymous=401))],
        # A staff session is no API key: everyone without one gets 401, and POST is 405.
        "api/tokens/<str:reference>/": [
            Call("get", token_api, Expect(frozenset(), refused=401, anonymous=401)),
            Call("post", token_api, Expect(frozenset(), refused=405, anonymous=405), body={}),
        ],
        "api/tokens/": [
            Call("get", "/api/tokens/?domain=x", Expect(frozenset(), refused=401, anonymous=401)),
        ],
        "api/tokens/<str:reference>/renew/": [
            Call("post", f"{token_api}renew/", Expect(frozenset(), refused=401, anonymous=401)),
            Call("get", f"{token_api}renew/", Expect(frozenset(), refused=405, anonymous=405)),
        ],
        # The REST proxy: the key is in the path; a staff session is no key.
        "^rest/(?P<token_id>[0-9]{1,12})/(?P<key>[^/]{1,200})/(?P<method>[^/]{1,200})/?$": [
            Call("get", proxy, Expect(frozenset(), refused=401, anonymous=401)),
            Call("post", proxy, Expect(frozenset(), refused=401, anonymous=401), body={}),
        ],
        "api/^(?P<path>.*)$": [
            Call("get", "/api/nothing/", Expect(frozenset(), refused=404, anonymous=404))
        ],
        # The callback: signed-in staff who may connect get "no state" (400), nobody else in.
        "bitrix/<str:client_id>/callback/": [
            Call("get", callback, Expect(OPS, allowed=400, anonymous=403)),
            Call("post", callback, Expect(frozenset(), refused=405, anonymous=405), body={}),
        ],
        "bitrix/<str:client_id>/install/": [
            Call("get", install, Expect(frozenset(), refused=405, anonymous=405)),
            Call("post", install, Expect.client_error(), body=unauthenticated_event),
        ],
        # The header's language switch: anyone may choose a language; it sends them back.
        "i18n/setlang/": [
            Call("get", "/i18n/setlang/", Expect(frozenset(), refused=302, anonymous=302)),
            Call(
                "post",
                "/i18n/setlang/",
                Expect(frozenset(), refused=302, anonymous=302),
                body={"language": "ru"},
            ),
        ],
        "bitrix/<str:client_id>/events/": [
            Call("get", events, Expect(frozenset(), refused=405, anonymous=405)),
            Call("post", events, Expect.client_error(), body=unauthenticated_event),
        ],
    }


def public_routes() -> list[str]:
    def walk(patterns: list, prefix: str):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern) != "admin/":
                    yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    return list(walk(get_resolver().url_patterns, ""))


@pytest.fixture
def world(token, fake_bitrix, fakes):
    rows = admin_world.build(token)
    fake_bitrix.add_portal("other.bitrix24.com")
    return World(rows=rows, pending_pk=0, fake=fake_bitrix)


def hold_a_pair(world: World, client, role: str) -> None:
    """A re-connect from another portal waiting for this user, in this browser session."""
    if role == "anonymous":
        world.pending_pk = 1
        return
    grant = BitrixOAuthClient(server=world.fake.base_url).exchange_code(
        CLIENT_ID, CLIENT_SECRET, world.fake.issue_code(CLIENT_ID, "other.bitrix24.com")
    )
    user = get_user_model().objects.get(username=f"{role}-user")
    token = world.rows["portals.token"]
    pending = states.hold_pair(token, grant, "other.bitrix24.com", client.session, user.pk)
    world.pending_pk = pending.pk


def test_every_url_has_an_expectation(world):
    routes = {route for _name, route in admin_routes()}
    assert "/admin/portals/token/<int:pk>/refresh/" in routes  # custom URLs are walked
    assert all_admin_calls(world)
    unknown = set(public_routes()) - set(public_calls(world))
    assert not unknown, f"public URLs with no expectation in this module: {unknown}"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_on_every_admin_url(role, world):
    client = admin_world.login(role)
    hold_a_pair(world, client, role)
    failures = [f for call in all_admin_calls(world) if (f := check_call(client, role, call))]
    assert PendingPair.objects.filter(pk=world.pending_pk).exists() or role == "anonymous"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_on_every_admin_action(role, world):
    client = admin_world.login(role)
    failures = []
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        for action in superuser_actions(model_admin):
            may = role == "superuser" or (
                role == "operator" and (label, action) in OPERATOR_ACTIONS
            )
            pk = world.rows[label].pk
            if failure := check_action(client, role, label, action, pk, may):
                failures.append(failure)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_on_every_public_url(role, world):
    client = admin_world.login(role)
    failures = [
        f
        for calls in public_calls(world).values()
        for call in calls
        if (f := check_call(client, role, call))
    ]
    assert not failures, "\n".join(failures)
