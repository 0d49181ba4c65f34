"""Connecting and looking around the way staff do, in a real Chromium at 1366 × 768: the
Connect button through the fake portal's authorize page, the "Add task" form after a wrong
secret and a stale code, the 30-second countdown, the home page, and lists that fit the screen.
Screenshots land in var/test-artifacts/<test>/."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from notifications.models import Delivery, Incident
from portals.models import AppCredentials, RefreshAttempt, Token, TokenStatus
from tests.browser_fixtures import LAPTOP
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PORTAL, connect
from tests.notifications_helpers import make_channel

# Fixtures: page, artifacts (Chromium through Playwright).
pytest_plugins = ["tests.browser_fixtures"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, next_url: str) -> None:
    get_user_model().objects.create_superuser("staff", "", "staff-pass-1")
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-1")
    page.click("input[type=submit]")


def test_connect_button_goes_through_the_portal_and_back(page, live_server, fake_bitrix, artifacts):
    app = AppCredentials.objects.create(
        name="CRM sync", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )
    callback = f"{live_server.url}/bitrix/{CLIENT_ID}/callback/"
    fake_bitrix.register_app(CLIENT_ID, CLIENT_SECRET, scope="crm,user", redirect_uri=callback)
    log_in(page, live_server, "/admin/portals/token/")
    page.click("#connect-new")
    page.select_option("#id_app", str(app.pk))
    page.fill("#id_portal", fake_bitrix.server_host)  # the fake portal, http://127.0.0.1:PORT
    page.screenshot(path=str(artifacts / "1-connect-new.png"), full_page=True)
    with page.expect_navigation(url=re.compile(r"/admin/portals/token/\d+/change/")):
        page.click("#connect-button")  # → the portal's authorize page → 302 → the callback
    page.wait_for_selector(f"text=Connected {fake_bitrix.server_host}")
    page.screenshot(path=str(artifacts / "2-token-page.png"), full_page=True)
    token = Token.objects.get()
    assert token.status == TokenStatus.ACTIVE
    assert "Active" in page.locator(".field-status_badge").inner_text()
    assert fake_bitrix.token_requests[-1]["grant_type"] == "authorization_code"
    assert page.locator("#refresh-now").is_visible() and page.locator("#reconnect").is_visible()


def test_add_task_after_a_wrong_secret_and_a_stale_code_needs_no_retyping(
    page, live_server, fake_bitrix, artifacts
):
    log_in(page, live_server, "/admin/portals/token/connect/")
    page.fill("#id_portal", PORTAL)
    page.fill("#id_client_id", CLIENT_ID)
    page.fill("#id_client_secret", "w" * 50)
    page.fill("#id_code", fake_bitrix.issue_code(CLIENT_ID, PORTAL))
    page.click("input[name=_connect]")
    assert "invalid_client" in page.locator(".errorlist").first.inner_text()
    page.screenshot(path=str(artifacts / "1-wrong-secret.png"), full_page=True)

    stale = fake_bitrix.issue_code(CLIENT_ID, PORTAL)
    fake_bitrix.advance(31)
    assert page.input_value("#id_code") == ""  # the spent code is gone
    page.fill("#id_client_secret", CLIENT_SECRET)  # the corrected secret, typed once
    page.fill("#id_code", stale)
    page.click("input[name=_connect]")
    assert "expired_token" in page.locator(".errorlist").first.inner_text()
    assert page.input_value("#id_client_secret") == "" and page.input_value("#id_code") == ""
    assert "kept" in page.locator(".field-client_secret, .form-row").nth(2).inner_text()
    page.screenshot(path=str(artifacts / "2-stale-code.png"), full_page=True)

    page.fill("#id_code", fake_bitrix.issue_code(CLIENT_ID, PORTAL))  # no secret this time
    page.click("input[name=_connect]")
    page.wait_for_selector(f"text=Connected {PORTAL}")
    page.screenshot(path=str(artifacts / "3-connected.png"), full_page=True)
    assert Token.objects.get().app.client_secret == CLIENT_SECRET
    assert CLIENT_SECRET not in page.content()


def test_the_authorize_link_opens_a_tab_and_counts_down(
    page, browser_context, live_server, fake_bitrix, artifacts
):
    log_in(page, live_server, "/admin/portals/token/connect/")
    page.fill("#id_portal", fake_bitrix.server_host)
    page.fill("#id_client_id", CLIENT_ID)
    assert not page.locator("#code-countdown").is_visible()
    with browser_context.expect_page() as opened:
        page.click("#authorize-url")
    portal_tab = opened.value
    portal_tab.wait_for_load_state()
    code = portal_tab.inner_text("body").split("Your code:")[1].strip()
    countdown = page.locator("#code-countdown")
    expect(countdown).to_be_visible()
    assert re.search(r"expires in (30|2\d) s", countdown.inner_text())
    page.wait_for_function(
        "() => /expires in (2[0-8]|1\\d|\\d) s/.test("
        "document.getElementById('code-countdown').textContent)"
    )
    page.screenshot(path=str(artifacts / "countdown.png"), full_page=True)
    page.fill("#id_client_secret", CLIENT_SECRET)
    page.fill("#id_code", code)
    page.click("input[name=_connect]")
    page.wait_for_selector(f"text=Connected {fake_bitrix.server_host}")


def some_history(fake_bitrix) -> list[Token]:
    tokens = [connect(fake_bitrix, f"crm-{i}", portal=f"p{i}.bitrix24.com") for i in range(6)]
    now = timezone.now()
    RefreshAttempt.objects.bulk_create(
        [
            RefreshAttempt(
                token=tokens[i % 6],
                kind="scheduled",
                outcome="success" if i % 7 else "transient_error",
                started_at=now - timedelta(minutes=13 * i),
                finished_at=now,
            )
            for i in range(110)
        ]
    )
    Token.objects.filter(pk=tokens[1].pk).update(
        status=TokenStatus.NEEDS_REAUTH, failing_since=now - timedelta(hours=2)
    )
    incident = Incident.objects.create(
        token=tokens[1], error_code="invalid_grant", message="Bitrix24 answered invalid_grant."
    )
    channel = make_channel(
        "telegram", last_sent_at=now, last_error="Telegram says: Bad Request: chat not found (400)."
    )
    Delivery.objects.create(
        incident=incident, channel=channel, event="opened", status="failed",
        error="Telegram says: bot was blocked by the user (403). Ask the recipient to unblock.",
    )  # fmt: skip
    Delivery.objects.create(
        incident=incident, channel=make_channel("twilio"), event="opened",
        next_attempt_at=now + timedelta(seconds=30),
    )  # fmt: skip
    return tokens


def test_the_home_page_shows_what_needs_attention(page, live_server, fake_bitrix, artifacts):
    some_history(fake_bitrix)
    log_in(page, live_server, "/")
    page.wait_for_selector("#token-statuses")
    page.screenshot(path=str(artifacts / "home.png"), full_page=True)
    assert "5 Active" in page.locator("#token-statuses").inner_text().replace("\n", " ")
    assert page.locator("#chart svg rect.ok").count() > 0
    assert page.locator("#chart svg rect.bad").count() > 0
    assert "invalid_grant" in page.locator("#open-incidents").inner_text()
    assert "bot was blocked" in page.locator("#failed-deliveries").inner_text()
    with page.expect_navigation():
        page.click("#token-statuses >> text=Needs re-authorization")
    assert page.locator("#result_list tbody tr").count() == 1


LISTS = {
    "tokens": "/admin/portals/token/",
    "incidents": "/admin/notifications/incident/",
    "deliveries": "/admin/notifications/delivery/",
    "channels": "/admin/notifications/channel/",
    "attempts": "/admin/portals/refreshattempt/",
}


@pytest.mark.parametrize("language", ["en", "ru"])
def test_every_list_fits_a_laptop_screen(
    browser_context, live_server, fake_bitrix, artifacts, language
):
    some_history(fake_bitrix)
    page = browser_context.browser.new_context(viewport=LAPTOP, locale=language).new_page()
    log_in(page, live_server, "/admin/")
    for name, url in LISTS.items():
        page.goto(f"{live_server.url}{url}")
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        overflow = page.evaluate(
            "() => { const r = document.querySelector('.results');"
            " return r.scrollWidth - r.clientWidth; }"
        )
        assert overflow <= 0, f"the {name} list is {overflow} px too wide at 1366 px"
    state = page.goto(f"{live_server.url}{LISTS['incidents']}")
    assert state.ok
    badge = page.locator("#result_list td.field-state span").first
    assert badge.evaluate("e => e.scrollWidth <= e.clientWidth + 1")  # not cut to "ope"
