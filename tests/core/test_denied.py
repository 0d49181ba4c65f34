"""A page someone may not use: the admin-styled 403 naming the permission, in their language,
logged as one line without a traceback (core/denied.py)."""

import logging

import pytest
from django.urls import reverse

from tests.admin_world import login

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("language", "words"),
    [("en", "This needs the permission “api.add_apikey”."), ("ru", "Для этого нужно право")],
)
def test_a_viewer_sees_why_a_page_is_refused(language, words, caplog):
    viewer = login("viewer")
    viewer.cookies["django_language"] = language
    with caplog.at_level(logging.INFO):
        page = viewer.get(reverse("admin:api_apikey_add"))
    html = page.content.decode()
    assert page.status_code == 403
    assert 'id="denied-reason"' in html and words in html
    assert 'id="site-name"' in html  # the admin's header, not a bare page
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in caplog.text


def test_a_custom_view_names_its_own_permission():
    viewer = login("viewer")
    page = viewer.get(reverse("admin:portals_token_connect"))
    assert page.status_code == 403
    assert "portals.connect_portal" in page.content.decode()
