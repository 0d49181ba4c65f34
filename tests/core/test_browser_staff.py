"""What only a browser shows, tried as staff do in Chromium at 1366 × 768, in English and then
Russian through the header's language switch (one browser session): the switch is remembered
from page to page, a failed token's page explains its error in the reader's language, Disable
asks first, re-connecting by Add task asks for no secret we hold, and the deliveries list keeps
each date whole. Screenshots land in var/test-artifacts/<test>/."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from notifications.models import Delivery, Incident
from portals.models import Token, TokenStatus
from tests.conftest import connect
from tests.notifications_helpers import make_channel

# Fixtures: page, artifacts (Chromium through Playwright).
pytest_plugins = ["tests.browser_fixtures"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
STORED = "Bitrix24 answered NOT_INSTALLED (Application not installed on the portal)."


def a_failed_token(fake_bitrix) -> Token:
    token = connect(fake_bitrix)
    Token.objects.filter(pk=token.pk).update(
        status=TokenStatus.UNINSTALLED, last_error_code="NOT_INSTALLED", last_error=STORED
    )
    incident = Incident.objects.create(
        token=token, error_code="NOT_INSTALLED", message=STORED, permanent=True
    )
    for status in (Delivery.Status.SENT, Delivery.Status.FAILED):
        Delivery.objects.create(
            incident=incident, channel=make_channel("telegram"), status=status,
            sent_at=timezone.now(), error="Telegram says: chat not found (400).",
        )  # fmt: skip
    return token


def test_staff_work_in_english_then_russian(page, live_server, fake_bitrix, artifacts):
    token = a_failed_token(fake_bitrix)
    get_user_model().objects.create_superuser("staff", "", "staff-pass-1")
    token_page = f"{live_server.url}/admin/portals/token/{token.pk}/change/"
    page.goto(f"{live_server.url}/admin/login/?next=/admin/portals/token/{token.pk}/change/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-1")
    page.click("input[type=submit]")

    error = page.locator(".field-last_error_shown")
    assert "Bitrix24's words:" in error.inner_text()  # their description, a labelled quote
    assert error.locator("q").inner_text() == "Application not installed on the portal"
    assert "Install the application on the portal again" in error.inner_text()
    page.screenshot(path=str(artifacts / "1-token-en.png"), full_page=True)

    page.click("#toggle-token")  # Disable asks first: nothing changes yet
    page.wait_for_selector("#disable-warning")
    page.screenshot(path=str(artifacts / "2-disable-asks.png"), full_page=True)
    assert Token.objects.get().status == TokenStatus.UNINSTALLED
    page.click("text=No, keep it")

    page.click("text=or re-connect with a code (Add task)")
    page.wait_for_selector("#stored-credentials")
    assert page.locator("#id_client_secret").count() == 0 and page.locator("#id_scope").count() == 0
    page.screenshot(path=str(artifacts / "3-add-task-stored.png"), full_page=True)

    with page.expect_navigation():  # the header's switch: the same page, in Russian
        page.select_option("#language-switch select", "ru")
    assert page.locator("html").get_attribute("lang") == "ru"
    assert "Добавить заявку" in page.title()
    page.goto(token_page)  # remembered on the next page
    error = page.locator(".field-last_error_shown")
    assert (
        "Слова Битрикс24:" in error.inner_text() and "Установите приложение" in error.inner_text()
    )
    assert "Install the application" not in error.inner_text()
    page.screenshot(path=str(artifacts / "4-token-ru.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/notifications/delivery/")
    page.screenshot(path=str(artifacts / "5-deliveries-ru.png"), full_page=True)
    dates = page.locator("#result_list .when > span")
    assert dates.count() >= 4
    for i in range(dates.count()):  # a date or a time never breaks across lines
        assert dates.nth(i).evaluate("e => e.getClientRects().length") == 1
    overflow = page.evaluate(
        "() => { const r = document.querySelector('.results');"
        " return r.scrollWidth - r.clientWidth; }"
    )
    assert overflow <= 0, f"the deliveries list is {overflow} px too wide at 1366 px"
    page.goto(f"{live_server.url}/admin/notifications/incident/")
    assert "человек" in page.locator("#result_list td.field-needs").first.inner_text()
    page.screenshot(path=str(artifacts / "6-incidents-ru.png"), full_page=True)
