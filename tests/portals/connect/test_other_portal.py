"""A code from another portal (another member_id than the typed portal's) in "Add task" or
`manage.py connect_portal`: nothing is stored. The form holds the pair for staff to confirm,
as the Connect button does; the command names the portal the code came from (issue 14, item 7).
"""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from portals.models import PendingPair, Portal, Token
from tests.admin_world import login
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL

pytestmark = pytest.mark.django_db
ADD_TASK = reverse("admin:portals_token_connect")
OTHER = "other.bitrix24.com"
SECOND_APP = "local.0a1b2c3d4e5f60.00000002"


def form(code: str, client_id: str = CLIENT_ID, reference: str = "token") -> dict[str, str]:
    return {
        "portal": PORTAL,
        "client_id": client_id,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": reference,
    }


def state(token: Token) -> tuple:
    token.refresh_from_db()
    return (token.portal.domain, token.portal.member_id, token.refresh_token, token.version)


@pytest.fixture(params=["another portal", "the portal created again"])
def foreign(request, fake_bitrix):
    """(domain the code comes from, its member_id): another portal, or the typed portal's
    address after it was deleted and created again."""
    if request.param == "another portal":
        return OTHER, fake_bitrix.add_portal(OTHER)
    return PORTAL, "f" * 32


def test_add_task_holds_a_code_from_another_portal_until_confirmed(token, fake_bitrix, foreign):
    domain, member_id = foreign
    before = state(token)
    fake_bitrix.add_portal(domain, member_id=member_id)
    client = login("operator")
    response = client.post(ADD_TASK, form(fake_bitrix.issue_code(CLIENT_ID, domain)))
    pending = PendingPair.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:portals_token_pending", args=[pending.pk])
    assert state(token) == before and Portal.objects.count() == 1
    page = client.get(response["Location"]).content.decode()
    assert domain in page and member_id in page and before[1] in page
    assert pending.refresh_token not in page
    client.post(response["Location"], {"_confirm": "1"})
    assert state(token)[:2] == (domain, member_id) and token.version == 2
    assert not PendingPair.objects.exists()


def test_a_cancelled_add_task_from_another_portal_stores_nothing(token, fake_bitrix, foreign):
    domain, member_id = foreign
    before = state(token)
    fake_bitrix.add_portal(domain, member_id=member_id)
    client = login("operator")
    response = client.post(ADD_TASK, form(fake_bitrix.issue_code(CLIENT_ID, domain)))
    client.post(response["Location"], {"_cancel": "1"})
    assert state(token) == before and not PendingPair.objects.exists()


def test_the_command_refuses_a_code_from_another_portal_and_names_it(token, fake_bitrix, foreign):
    domain, member_id = foreign
    before = state(token)
    fake_bitrix.add_portal(domain, member_id=member_id)
    with pytest.raises(CommandError) as caught:
        call_command(
            "connect_portal",
            "--portal", PORTAL,
            "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET,
            "--scope", "crm,user",
            "--code", fake_bitrix.issue_code(CLIENT_ID, domain),
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith("--code:") and domain in message and member_id in message
    assert state(token) == before and Portal.objects.count() == 1
    assert not PendingPair.objects.exists()


def test_add_task_refuses_another_portal_when_no_token_can_wait(token, fake_bitrix):
    """The typed portal is connected for another app only: nothing to hold the pair against,
    and storing it would give the typed portal the other's member_id."""
    fake_bitrix.register_app(SECOND_APP, CLIENT_SECRET, scope="crm,user")
    member_id = fake_bitrix.add_portal(OTHER)
    before = state(token)
    code = fake_bitrix.issue_code(SECOND_APP, OTHER)
    page = login("superuser").post(ADD_TASK, form(code, SECOND_APP, reference="second"))
    assert page.status_code == 200
    message = " ".join(page.context["form"].errors["code"])
    assert OTHER in message and member_id in message
    assert state(token) == before and Token.objects.count() == 1
    assert not PendingPair.objects.exists()


def test_a_code_from_a_known_portal_does_not_rename_it_to_the_typed_address(token, fake_bitrix):
    """Typing an address no portal has, with a code from a connected portal, would move that
    portal (and its tokens) to the typed address: refused, naming where the code came from."""
    before = state(token)
    typed = "typo.bitrix24.com"
    with pytest.raises(CommandError) as caught:
        call_command(
            "connect_portal",
            "--portal", typed,
            "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET,
            "--scope", "crm,user",
            "--code", fake_bitrix.issue_code(CLIENT_ID, PORTAL),
            "--reference", "typo",
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith("--portal:") and PORTAL in message and typed in message
    assert state(token) == before and not Portal.objects.filter(domain=typed).exists()
