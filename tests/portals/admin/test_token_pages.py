"""What staff tried, fixed: the "Add task" form keeps the secret and drops the spent code, the
buttons on a token's and a channel's page, a failed token's way back, and words that match
the token's state."""

import re
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications.models import Delivery, Incident
from portals.connect import states
from portals.models import AppCredentials, Token, TokenStatus
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL, connect
from tests.notifications_helpers import make_channel

# Fixtures: fakes (the providers' fake servers).
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db
ADD_TASK = "admin:portals_token_connect"


def form(code: str, **changes: str) -> dict[str, str]:
    data = {
        "portal": PORTAL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": "token",
    }
    return {**data, **changes}


def code_input(html: str) -> str:
    return re.search(r"<input[^>]*name=\"code\"[^>]*>", html).group(0)


def test_a_failed_attempt_keeps_the_secret_and_drops_the_spent_code(admin_client, fake_bitrix):
    stale = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    fake_bitrix.advance(31)
    page = admin_client.post(reverse(ADD_TASK), form(stale)).content.decode()
    assert "expired_token" in page
    assert CLIENT_SECRET not in page and stale not in page
    assert "value=" not in code_input(page)  # the spent code is gone
    assert "kept (encrypted, for 10 minutes)" in page
    stored = admin_client.session[states.HELD_SECRET_KEY]["ciphertext"]
    assert stored.startswith("gAAAA") and CLIENT_SECRET not in stored
    fresh = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    response = admin_client.post(reverse(ADD_TASK), form(fresh, client_secret=""))
    assert response.status_code == 302  # connected without retyping the secret
    assert Token.objects.get().app.client_secret == CLIENT_SECRET
    assert states.HELD_SECRET_KEY not in admin_client.session


def test_a_wrong_secret_is_not_kept(admin_client, fake_bitrix):
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    page = admin_client.post(reverse(ADD_TASK), form(code, client_secret="w" * 50))
    assert "invalid_client" in page.content.decode()
    assert "This code was spent" in page.content.decode() and code not in page.content.decode()
    assert states.HELD_SECRET_KEY not in admin_client.session
    again = admin_client.post(reverse(ADD_TASK), form("x", client_secret=""))
    assert "This field is required" in again.content.decode()


def test_a_kept_secret_expires_after_10_minutes(admin_client, fake_bitrix):
    admin_client.post(reverse(ADD_TASK), form("", portal="not a portal!"))
    session = admin_client.session
    session[states.HELD_SECRET_KEY]["at"] = time.time() - 601
    session.save()
    page = admin_client.get(reverse(ADD_TASK)).content.decode()
    assert "kept (encrypted" not in page


def test_the_form_says_where_the_code_appears_and_counts_down(admin_client):
    page = admin_client.get(reverse(ADD_TASK)).content.decode()
    assert "the code= parameter" in page
    assert 'id="code-countdown"' in page and 'target="_blank"' in page
    assert "Connect a new portal" in page


def test_add_task_is_filled_in_for_a_token_to_reconnect(admin_client, token):
    Token.objects.filter(pk=token.pk).update(status=TokenStatus.NEEDS_REAUTH)
    html = admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content
    html = html.decode()
    assert 'id="reconnect-banner"' in html and 'form="reconnect-form"' in html
    link = re.search(r'href="(/admin/portals/token/connect/\?[^"]+)"', html).group(1)
    prefilled = admin_client.get(link.replace("&amp;", "&")).content.decode()
    assert f'value="{PORTAL}"' in prefilled and f'value="{CLIENT_ID}"' in prefilled


def test_the_token_page_buttons_refresh_disable_and_enable(admin_client, token):
    page = admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content
    for button in ("refresh-now", "toggle-token", "reconnect"):
        assert f'id="{button}"' in page.decode()
    url = reverse("admin:portals_token_refresh", args=[token.pk])
    done = admin_client.post(url, follow=True).content.decode()
    assert "Refreshed “token”." in done
    toggle = reverse("admin:portals_token_toggle", args=[token.pk])
    asked = admin_client.post(toggle).content.decode()  # one click only asks
    assert 'id="disable-warning"' in asked and "every program" in asked
    assert Token.objects.get().status == TokenStatus.ACTIVE
    confirmed = admin_client.post(toggle, {"_confirm": "1"}, follow=True).content.decode()
    assert "Disabled “token”" in confirmed
    assert Token.objects.get().status == TokenStatus.DISABLED
    assert "Enabled “token”" in admin_client.post(toggle, follow=True).content.decode()
    assert Token.objects.get().status == TokenStatus.ACTIVE
    assert admin_client.get(url).status_code == 405  # buttons are POST only


def test_reconnect_sends_staff_to_the_portal_with_a_state(admin_client, token):
    response = admin_client.post(reverse("admin:portals_token_reconnect", args=[token.pk]))
    assert response["Location"].startswith(f"https://{PORTAL}/oauth/authorize/?client_id=")
    assert "&state=" in response["Location"]


def test_each_token_page_names_its_own_reference(admin_client, fake_bitrix):
    token = connect(fake_bitrix, reference="crm-sync")
    page = admin_client.get(reverse("admin:portals_token_change", args=[token.pk]))
    assert 'get_access_token("crm-sync")' in page.content.decode()


def test_a_dead_token_does_not_say_when_it_expires(admin_client, token):
    listing = reverse("admin:portals_token_changelist")
    assert re.search(
        r"field-expires_in_display\">\d+ min", admin_client.get(listing).content.decode()
    )
    Token.objects.filter(pk=token.pk).update(status=TokenStatus.NEEDS_REAUTH)
    html = admin_client.get(listing).content.decode()
    assert 'field-expires_in_display">—<' in html


def test_dates_and_empty_values_look_the_same_everywhere(admin_client, token):
    html = admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content
    html = html.decode()
    stamp = timezone.localtime(token.attempts.get().started_at).strftime("%Y-%m-%d %H:%M")
    assert html.count(stamp) >= 2  # the attempt history and the fields alike
    assert "a.m." not in html and "p.m." not in html
    listing = admin_client.get(reverse("admin:notifications_incident_changelist")).content
    assert ">-<" not in listing.decode()


def test_the_app_is_named_once(token):
    assert str(token.app) == CLIENT_ID
    AppCredentials.objects.filter(pk=token.app.pk).update(name="CRM sync")
    token.app.refresh_from_db()
    assert str(token.app) == f"CRM sync ({CLIENT_ID})"


def test_the_app_page_shows_the_three_handler_addresses(admin_client, token, settings):
    settings.SITE_URL = "https://keeper.example.com"
    url = reverse("admin:portals_appcredentials_change", args=[token.app.pk])
    html = admin_client.get(url).content.decode()
    for handler in ("callback", "install", "events"):
        address = f"https://keeper.example.com/bitrix/{CLIENT_ID}/{handler}/"
        assert f'data-url="{address}"' in html
    assert html.count('class="button copy-url"') == 3
    assert "Redirect URI" in html and "ONAPPUNINSTALL" in html


def test_the_channel_page_buttons_send_a_test_and_toggle(admin_client, fakes):
    channel = make_channel("telegram")
    page = admin_client.get(reverse("admin:notifications_channel_change", args=[channel.pk]))
    assert 'id="send-test"' in page.content.decode()
    send = reverse("admin:notifications_channel_test", args=[channel.pk])
    assert "delivered message 4711" in admin_client.post(send, follow=True).content.decode()
    fakes.telegram.fail_next("bot_blocked")
    failed = admin_client.post(send, follow=True).content.decode()
    assert "The test message was not sent" in failed and "stays enabled" in failed
    assert "re-enable" not in failed
    toggle = reverse("admin:notifications_channel_toggle", args=[channel.pk])
    assert "Disabled “telegram on-call”" in admin_client.post(toggle, follow=True).content.decode()
    channel.refresh_from_db()
    assert not channel.enabled


def test_a_queued_alert_says_why_it_waits(admin_client, token, settings):
    channel = make_channel("telegram")
    incident = Incident.objects.create(token=token, message="x")
    Delivery.objects.create(
        incident=incident,
        channel=channel,
        event="opened",
        next_attempt_at=timezone.now() + timedelta(seconds=30),
    )
    html = admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()
    assert "held until" in html and "go out together as one message" in html
    assert "NOTIFY_HOLD_SECONDS" in html  # the setting behind it, in the title
    channel.enabled = False
    channel.save()
    html = admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()
    assert "waits until the channel is enabled" in html


def test_connect_new_refuses_a_taken_reference(admin_client, token):
    response = admin_client.post(
        reverse("admin:portals_token_connect_new"),
        {"app": token.app.pk, "portal": "other.bitrix24.com", "reference": "token"},
    )
    assert "“token” is taken" in response.content.decode()


def test_reconnect_by_add_task_uses_the_stored_secret_and_scope(admin_client, fake_bitrix):
    token = connect(fake_bitrix)
    Token.objects.filter(pk=token.pk).update(status=TokenStatus.NEEDS_REAUTH)
    html = admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content
    link = re.search(r'href="(/admin/portals/token/connect/\?[^"]+)"', html.decode()).group(1)
    prefilled = admin_client.get(link.replace("&amp;", "&")).content.decode()
    assert 'name="client_secret"' not in prefilled and 'name="scope"' not in prefilled
    assert 'id="stored-credentials"' in prefilled
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    data = form(code)
    del data["client_secret"], data["scope"]
    response = admin_client.post(reverse(ADD_TASK), data)
    assert response.status_code == 302
    assert Token.objects.get().version == 2
    assert fake_bitrix.token_requests[-1]["params"]["code"] == code


def test_a_form_error_keeps_everything_typed_the_code_included(admin_client, fake_bitrix):
    code = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    exchanges = fake_bitrix.count()
    page = admin_client.post(reverse(ADD_TASK), form(code, reference="has space"))
    html = page.content.decode()
    assert f'value="{code}"' in code_input(html)  # not spent: nothing was sent
    assert f'value="{PORTAL}"' in html and 'value="crm,user"' in html
    assert fake_bitrix.count() == exchanges


def test_a_failed_exchange_clears_only_the_code_and_says_so(admin_client, fake_bitrix):
    token = connect(fake_bitrix)
    stale = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    fake_bitrix.advance(31)
    data = {**form(stale), "reference": token.reference}
    del data["client_secret"], data["scope"]
    html = admin_client.post(reverse(ADD_TASK), data).content.decode()
    assert "value=" not in code_input(html)
    assert "work once" in html and "expired_token" in html
    assert f'value="{PORTAL}"' in html and f'value="{CLIENT_ID}"' in html
    assert 'name="client_secret"' not in html  # still the stored one, not asked for
    assert Token.objects.get().version == 1
