"""Connecting a portal the way staff do it: a real Chromium on the admin's "Add task" page."""

import os
import shutil

import pytest
from django.contrib.auth import get_user_model

from portals.models import Token
from tests.conftest import CLIENT_ID, CLIENT_SECRET

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium reaches for Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is missing at {CHROMIUM}: apt-get install chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page()
        browser.close()


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
    assert link.get_attribute("href") == expected  # updated as staff type, no reload

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
