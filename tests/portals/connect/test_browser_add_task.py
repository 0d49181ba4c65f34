"""Connecting a portal the way staff do it: a real Chromium on the admin's "Add task" page."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from portals.models import Token
from tests.conftest import CLIENT_ID, CLIENT_SECRET

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# Fixtures: page (Chromium through Playwright).
pytest_plugins = ["tests.browser_fixtures"]


def test_staff_connect_a_portal_from_the_add_task_page(page, live_server, fake_bitrix, tmp_path):
    get_user_model().objects.create_superuser("staff", "", "staff-pass-1")
    page.goto(f"{live_server.url}/admin/login/?next=/admin/portals/token/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-1")
    page.click("input[type=submit]")
    page.click("text=Add task (connect a portal)")

    page.fill("#id_portal", "acme")
    page.fill("#id_client_id", CLIENT_ID)
    link = page.locator("#authorize-url")
    expected = f"https://acme.bitrix24.ru/oauth/authorize/?client_id={CLIENT_ID}&response_type=code"
    expect(link).to_have_attribute("href", expected)  # updated as staff type, no reload

    page.fill("#id_client_secret", CLIENT_SECRET)
    page.fill("#id_scope", "crm,user")
    page.fill("#id_code", fake_bitrix.issue_code(CLIENT_ID, "acme.bitrix24.ru"))
    page.click("input[name=_connect]")
    page.wait_for_selector("text=Connected acme.bitrix24.ru")
    page.screenshot(path=str(tmp_path / "token.png"), full_page=True)

    token = Token.objects.get()
    body = page.content()
    assert "••••" + token.access_token[-4:] in body
    assert token.access_token not in body and CLIENT_SECRET not in body
    assert "Active" in body and "Code exchange" in body


def test_a_stale_code_shows_bitrix_error_on_the_form(page, live_server, fake_bitrix):
    get_user_model().objects.create_superuser("staff", "", "staff-pass-1")
    page.goto(f"{live_server.url}/admin/login/?next=/admin/portals/token/connect/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-1")
    page.click("input[type=submit]")
    code = fake_bitrix.issue_code(CLIENT_ID, "acme.bitrix24.com")
    fake_bitrix.advance(31)
    for field, value in {
        "portal": "acme.bitrix24.com",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm",
        "code": code,
    }.items():
        page.fill(f"#id_{field}", value)
    page.click("input[name=_connect]")
    error = page.locator(".errorlist").first.inner_text()
    assert "expired_token" in error and "30 seconds" in error
    assert not Token.objects.exists()


def test_staff_add_a_telegram_channel_and_send_a_test_message(page, live_server, settings):
    from notifications.models import Channel
    from tests.fakes.provider_telegram import BOT_TOKEN, CHAT_ID, FakeTelegram

    get_user_model().objects.create_superuser("staff", "", "staff-pass-1")
    with FakeTelegram() as telegram:
        settings.TELEGRAM_API_URL = telegram.base_url
        page.goto(f"{live_server.url}/admin/login/?next=/admin/notifications/channel/add/")
        page.fill("#id_username", "staff")
        page.fill("#id_password", "staff-pass-1")
        page.click("input[type=submit]")
        page.fill("#id_name", "On-call Telegram")
        page.select_option("#id_kind", "telegram")
        # Only the chosen provider's credentials are on screen.
        assert page.locator("fieldset.provider-telegram").is_visible()
        assert not page.locator("fieldset.provider-twilio").is_visible()
        page.fill("#id_destination", str(CHAT_ID))
        page.locator("fieldset.provider-telegram input").first.fill(BOT_TOKEN)
        page.click("input[name=_save]")
        page.wait_for_selector("text=was added successfully")

        page.check("input[name=_selected_action]")
        page.select_option("select[name=action]", "send_test_message")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist")
        answer = page.locator(".messagelist").inner_text()
        assert "4711" in answer or "sent" in answer.lower(), answer
        assert BOT_TOKEN not in page.content()
        assert len(telegram.requests) == 1
    assert Channel.objects.get().credentials
