"""bin/serve's output for a person starting it: the checks' warnings once, no kombu notice
about the hostless embedded broker, the address last (after the banners), and no favicon 404
on any page."""

import logging
from pathlib import Path

import pytest

import config.celery  # noqa: F401  (installs the kombu filter, as every Celery process does)

SERVE = (Path(__file__).resolve().parents[2] / "bin" / "serve").read_text()


def test_the_checks_run_once_and_the_address_comes_last():
    assert SERVE.count("manage.py check") == 1
    for command in ("migrate", "collectstatic", "ensure_admin"):
        line = next(line for line in SERVE.splitlines() if f"manage.py {command}" in line)
        assert "--skip-checks" in line, command
    running = SERVE.index('echo "b24keeper is running at http://$WEB_BIND/')
    assert running > SERVE.index("celery -A config worker") and running > SERVE.index("/health/")


def test_kombu_does_not_warn_about_the_embedded_brokers_missing_host(caplog):
    with caplog.at_level(logging.WARNING, logger="kombu.connection"):
        logging.getLogger("kombu.connection").warning(
            "No hostname was supplied. Reverting to default 'localhost'"
        )
        logging.getLogger("kombu.connection").warning("Another warning")
    assert "No hostname" not in caplog.text and "Another warning" in caplog.text


@pytest.mark.django_db
def test_every_page_says_it_has_no_favicon(admin_client):
    for url in ("/", "/admin/", "/admin/portals/token/"):
        assert '<link rel="icon" href="data:,">' in admin_client.get(url).content.decode(), url
