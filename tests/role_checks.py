"""How tests/roles/test_role_matrix.py asks one URL and judges the answer for one role.

Each request runs inside a transaction that is rolled back afterwards, so an allowed POST (a
delete, a refresh) leaves the world as it was for the next one; before the rollback the admin
tables are compared, and a GET, a refused POST or an anonymous call must have changed none.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import reverse

from tests import admin_world

LOGIN = "/admin/login/"
CLIENT_ERRORS = tuple(range(400, 500))
Status = int | tuple[int, ...] | str  # "login": a redirect to the login page


@dataclass(frozen=True)
class Expect:
    """Who may (`who`, signed-in roles) and the answers: `allowed` to them (a POST they may
    make answers 200 or 302), `refused` to the other signed-in roles, `anonymous` to nobody."""

    who: frozenset[str]
    allowed: Status = 200
    refused: Status = 403
    anonymous: Status = "login"

    @classmethod
    def client_error(cls) -> "Expect":
        """Nobody's session counts: a 4xx for everyone, and nothing changes."""
        return cls(frozenset(), refused=CLIENT_ERRORS, anonymous=CLIENT_ERRORS)

    def answer(self, role: str, method: str) -> Status:
        if role == "anonymous":
            return self.anonymous
        if role not in self.who:
            return self.refused
        return (200, 302) if method == "post" else self.allowed


@dataclass(frozen=True)
class Call:
    method: str  # "get" or "post"
    url: str
    expect: Expect
    body: dict | Callable[[], dict] | None = None  # a callable: built when sent (a fresh code)

    def may_change(self, role: str) -> bool:
        return self.method == "post" and role in self.expect.who


def ask(client: Client, method: str, url: str, body: object) -> tuple[object, list[str]]:
    """The response, and the admin tables it changed (rolled back either way)."""
    client.cookies.pop("messages", None)  # judge only this request's messages
    session = client.cookies.get(settings.SESSION_COOKIE_NAME)
    data = body() if callable(body) else body or {}
    with transaction.atomic():
        before = admin_world.snapshot()
        response = client.get(url) if method == "get" else client.post(url, data)
        changed = admin_world.changed(before, admin_world.snapshot())
        transaction.set_rollback(True)
    if session is not None:  # a new session key (a password change) was rolled back too
        client.cookies[settings.SESSION_COOKIE_NAME] = session.value
    return response, changed


def status_matches(response, expected: Status) -> bool:
    if expected == "login":
        location = response.get("Location", "") if response.status_code == 302 else ""
        return location.startswith(LOGIN)
    wanted = expected if isinstance(expected, tuple) else (expected,)
    return response.status_code in wanted


def check_call(client: Client, role: str, call: Call) -> str | None:
    """None if the answer is the expected one, else what went wrong."""
    response, changed = ask(client, call.method, call.url, call.body)
    expected = call.expect.answer(role, call.method)
    where = f"{role} {call.method.upper()} {call.url}"
    if not status_matches(response, expected):
        return f"{where}: HTTP {response.status_code}, not {expected}"
    if changed and not call.may_change(role):
        return f"{where} changed {changed}"
    return None


def superuser_actions(model_admin) -> list[str]:
    """The names of every action the page offers to someone who may do everything."""
    request = RequestFactory().get("/admin/")
    request.user = User(username="root", is_superuser=True, is_active=True, is_staff=True)
    return list(model_admin.get_actions(request))


def check_action(
    client: Client, role: str, label: str, action: str, pk: int, may: bool
) -> str | None:
    """POST `action` on row `pk` to the model's list: did it run exactly when it `may`?"""
    url = reverse(f"admin:{label.replace('.', '_')}_changelist")
    body = {"action": action, "index": 0, "_selected_action": [pk]}
    response, changed = ask(client, "post", url, body)
    where = f"{role} action {action} on {label}"
    if role == "anonymous":
        ok = status_matches(response, "login") and not changed
        return None if ok else f"{where}: HTTP {response.status_code}, changed {changed}"
    done = [m for m in get_messages(response.wsgi_request) if m.level != messages.WARNING]
    confirming = any(
        t.name and t.name.endswith("delete_selected_confirmation.html")
        for t in getattr(response, "templates", [])
    )
    ran = bool(done or confirming or changed)
    if ran != may:
        return f"{where}: ran={ran} (HTTP {response.status_code}, {done}, changed {changed})"
    return None
