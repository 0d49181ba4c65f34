"""The language switch in the admin's header: Django's set_language, remembered in a cookie;
the choice holds on every page after."""

import pytest
from django.conf import settings

from tests.admin_world import login

pytestmark = pytest.mark.django_db


def test_staff_switch_the_language_and_it_is_remembered():
    staff = login("viewer")
    page = staff.get("/admin/").content.decode()
    assert 'id="language-switch"' in page and 'lang="en"' in page
    response = staff.post("/i18n/setlang/", {"language": "ru", "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "ru" and int(cookie["max-age"]) >= 30 * 24 * 3600
    for url in ("/admin/", "/", "/admin/portals/token/"):
        html = staff.get(url).content.decode()
        assert '<html lang="ru"' in html, url
        assert '<option value="ru" selected>' in html
    staff.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert '<html lang="en"' in staff.get("/").content.decode()
