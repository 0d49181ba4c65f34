"""Every page of ours in English and Russian, chosen by the browser's language, with
LANGUAGE_CODE as the default."""

import pytest
from django.urls import reverse

from tests.conftest import CLIENT_ID

pytestmark = pytest.mark.django_db
ADD_TASK = "admin:portals_token_connect"


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("en", ["Add task: connect a portal", "Where the code appears", "Show authorize URL"]),
        (
            "ru",
            [
                "Добавить заявку: подключить портал",
                "Где взять код авторизации",
                "Показать ссылку авторизации",
            ],
        ),
    ],
)
def test_the_connect_form_speaks_the_browsers_language(admin_client, language, words):
    page = admin_client.get(reverse(ADD_TASK), HTTP_ACCEPT_LANGUAGE=language)
    html = page.content.decode()
    assert f'<html lang="{language}"' in html
    for word in words:
        assert word in html


def test_errors_on_the_form_are_russian_too(admin_client, fake_bitrix):
    form = {
        "portal": "not a portal!",
        "client_id": CLIENT_ID,
        "client_secret": "s" * 50,
        "scope": "crm,telepathy",
        "code": "x",
        "reference": "token",
    }
    html = admin_client.post(reverse(ADD_TASK), form, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "— не адрес портала" in html
    assert "Неизвестное разрешение (scope): telepathy" in html


def test_language_code_is_the_default(admin_client, settings):
    settings.LANGUAGE_CODE = "ru"
    html = admin_client.get(reverse(ADD_TASK)).content.decode()
    assert "Подключить новый портал" in html


@pytest.mark.parametrize(
    ("url", "russian"),
    [
        ("/", "Токены по состоянию"),
        ("/admin/portals/token/", "Подключить новый портал"),
        ("/admin/portals/token/connect-new/", "Подключить новый портал"),
        ("/admin/notifications/delivery/", "Эскалации и уведомления"),
        ("/admin/notifications/channel/", "Каналы"),
        ("/admin/notifications/channel/add/", "Токен бота"),
        ("/admin/api/apikey/", "API-ключи"),
        ("/admin/api/apikey/add/", "Кто пользуется ключом"),
    ],
)
def test_our_pages_are_russian(admin_client, url, russian):
    html = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert russian in html


def test_a_new_api_key_is_shown_in_russian(admin_client, token):
    form = {"name": "billing", "scopes": "token", "tokens": [token.pk], "rate_per_minute": 600}
    page = admin_client.post("/admin/api/apikey/add/", form, HTTP_ACCEPT_LANGUAGE="ru", follow=True)
    html = page.content.decode()
    assert "API-ключ «billing» создан" in html and "Все API-ключи" in html
