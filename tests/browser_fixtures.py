"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, and a folder for the
screenshots they leave behind (var/test-artifacts/, named in the README). A test module loads
them with `pytest_plugins = ["tests.browser_fixtures"]`."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

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
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
def browser_context():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is missing at {CHROMIUM}: apt-get install chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_context(viewport=LAPTOP, locale="en-US")
        browser.close()
        # Playwright's sync API runs in a greenlet, which Django sees as another context with
        # its own database connection: close it, or it keeps the test database busy.
        connections.close_all()


@pytest.fixture
def page(browser_context):
    return browser_context.new_page()


@pytest.fixture
def artifacts(request) -> Path:
    """Where this test's screenshots go: var/test-artifacts/<test name>/."""
    folder = ARTIFACTS / request.node.name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
