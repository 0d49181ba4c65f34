"""Who may change an app's credentials through "Add task": only someone with
portals.change_appcredentials (and `manage.py connect_portal`, run on the machine). An operator
connects with the stored secret and scope, or creates a new app; a different secret or scope is
refused before the code is spent (issue 14)."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from portals.connect import states
from portals.models import AppCredentials, Token
from tests.admin_world import login
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL

pytestmark = pytest.mark.django_db
ADD_TASK = reverse("admin:portals_token_connect")
# The secret after someone rotated it in the app's card in Bitrix24.
ROTATED = "Rt7yU8iO9pA0sD1fG2hJ3kL4zX5cV6bN7mQ8wE9rT0yU1iO2pA"


def add_task(client, fake, **changes: str):
    form = {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": fake.issue_code(CLIENT_ID, PORTAL),
        "reference": "token",
        **changes,
    }
    return client.post(ADD_TASK, form)


def errors(page, field: str) -> str:
    assert page.status_code == 200, page.status_code
    return " ".join(page.context["form"].errors.get(field, []))


@pytest.fixture
def rotated(fake_bitrix):
    """Bitrix24 now knows the app by the rotated secret: a code exchange with it succeeds."""
    fake_bitrix.register_app(CLIENT_ID, ROTATED, scope="crm,user,task")
    return fake_bitrix


def test_an_operator_cannot_change_the_app_secret_through_add_task(token, rotated):
    operator = login("operator")
    exchanges = rotated.count()
    page = add_task(operator, rotated, client_secret=ROTATED)
    message = errors(page, "client_secret")
    assert "App credentials" in message and "permission to change app credentials" in message
    assert ROTATED not in page.content.decode()
    assert rotated.count() == exchanges  # the code was not spent
    app = AppCredentials.objects.get()
    assert app.client_secret == CLIENT_SECRET
    assert Token.objects.get().version == 1
    assert states.HELD_SECRET_KEY not in operator.session  # a refused secret is not kept


def test_an_operator_cannot_change_the_app_scope_through_add_task(token, fake_bitrix):
    operator = login("operator")
    exchanges = fake_bitrix.count()
    page = add_task(operator, fake_bitrix, scope="crm,user,task")
    message = errors(page, "scope")
    assert "crm,user" in message and "App credentials" in message
    assert fake_bitrix.count() == exchanges
    assert AppCredentials.objects.get().scope == "crm,user"


def test_an_operator_connects_with_the_stored_secret_and_scope(token, fake_bitrix):
    page = add_task(login("operator"), fake_bitrix, scope="user, crm")
    assert page.status_code == 302, errors(page, "__all__")
    assert Token.objects.get().version == 2
    assert AppCredentials.objects.get().scope == "crm,user"


def test_an_operator_creates_a_new_app_through_add_task(fake_bitrix):
    page = add_task(login("operator"), fake_bitrix)
    assert page.status_code == 302
    assert AppCredentials.objects.get().client_secret == CLIENT_SECRET


def test_a_superuser_changes_the_app_through_add_task(token, rotated):
    page = add_task(login("superuser"), rotated, client_secret=ROTATED, scope="crm,user,task")
    assert page.status_code == 302
    app = AppCredentials.objects.get()
    assert (app.client_secret, app.scope) == (ROTATED, "crm,user,task")


def test_the_command_changes_the_app(token, rotated):
    call_command(
        "connect_portal",
        "--portal", PORTAL,
        "--client-id", CLIENT_ID,
        "--client-secret", ROTATED,
        "--scope", "crm,user,task",
        "--code", rotated.issue_code(CLIENT_ID, PORTAL),
    )  # fmt: skip
    app = AppCredentials.objects.get()
    assert (app.client_secret, app.scope) == (ROTATED, "crm,user,task")


def test_the_refusal_speaks_russian(token, rotated):
    form = {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": ROTATED,
        "scope": "crm,user",
        "code": rotated.issue_code(CLIENT_ID, PORTAL),
        "reference": "token",
    }
    page = login("operator").post(ADD_TASK, form, HTTP_ACCEPT_LANGUAGE="ru")
    assert "«Учётные данные приложения»" in page.content.decode()
