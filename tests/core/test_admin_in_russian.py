"""Every admin page we ship, rendered in Russian with the test client, has no English word but
the names of Bitrix24, the providers and the protocol's own terms (the allow-list below), and
the values staff typed or Bitrix24 sent (the world's rows). Fast: no browser."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.urls import URLResolver

from tests import admin_world

pytestmark = pytest.mark.django_db

# Names and terms a Russian page shows as they are: products, providers, protocol words that
# the old process's users know in Latin letters (client_id, scope...), units and formats.
ALLOWED = {
    *"b24keeper bitrix bitrix24 telegram twilio messagebird unisender mandrill".split(),
    *"email e-mail".split(),
    *"sms gsm oauth rest api http https url json id csv utc e164 html cron crontab".split(),
    *"client_id client_secret scope code member_id application_token refresh_token".split(),
    *"access_token auth_id auth_expires refresh_id server_endpoint client_endpoint".split(),
    *"user_id domain lang get_access_token bearer authorization curl python".split(),
    *"celery django axes beat onappinstall onappuninstall onappupdate".split(),
    *"crm user task get proxy ip".split(),  # HTTP verbs and the API key scopes' own names
    *"ac mg".split(),  # Twilio's Account SID and Messaging Service SID begin so (AC…, MG…)
    # The providers' own names for their settings and screens, as staff find them there.
    *"account sid auth messaging service settings smtp info developers access bird".split(),
    *"selzy getlists enterprise start from redirect uri callback spf dkim live botfather".split(),
    *"query_limit_exceeded rabbitmq redis amqp celery_task_queues none argument value".split(),
    # Django's own Russian texts name these keys and sign-on systems.
    *"control command mac single sing-on ldap".split(),
}
# What Django and django-axes print without gettext (a link row's name, an access log row's
# name made of its user and time): not words of ours, and no catalogue can reach them.
UNREACHABLE = re.compile(
    r"\w+-\w+ relationship: \w+ object \(\d+\)|"
    r"(Access Log for|Failed access: user|Attempted Access:) [^|\n]*?(?=\s\||$)|"
    r"<unknown>|••••\S+"  # django-axes' mark for a missing header; a masked secret's end
)
# Visible text only: these hold code or data, not words for people.
SKIPPED_TAGS = {"script", "style", "code", "pre", "kbd", "samp", "option"}
WORD = re.compile(r"(?<![\w.@/:-])[A-Za-z][A-Za-z'’]{1,}(?![\w.@/:-])")


class VisibleText(HTMLParser):
    """The text a person reads on a page, and the titles and button labels."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping += 1
        attributes = dict(attrs)
        for name in ("title", "placeholder", "aria-label"):
            if attributes.get(name):
                self.parts.append(attributes[name])
        if tag == "input" and attributes.get("type") in ("submit", "button"):
            self.parts.append(attributes.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


def english_words(html: str, allowed: set[str]) -> set[str]:
    parser = VisibleText()
    parser.feed(html)
    words = set()
    for text in parser.parts:
        for word in WORD.findall(UNREACHABLE.sub(" ", text)):
            if word.lower().strip("'’") not in allowed:
                words.add(word)
    return words


def admin_pages(rows: dict) -> list[str]:
    """Every GET page of the admin: each model's list, add, change, history, delete pages and
    our own pages."""

    def walk(patterns: list, prefix: str):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield pattern.name or "", prefix + str(pattern.pattern)

    urls = ["/", "/admin/", "/admin/password_change/"]
    for name, route in walk(admin.site.get_urls(), "/admin/"):
        label = ".".join(route.split("/")[2:4])
        if label not in rows or not name or name.endswith(("_autocomplete", "_created")):
            continue
        if any(kind in name for kind in ("refresh", "toggle", "reconnect", "test", "pending")):
            continue  # buttons (POST only) and a page that needs a held pair
        pk = str(rows[label].pk)
        for holder in ("<path:object_id>", "<int:pk>", "<id>"):
            route = route.replace(holder, pk)
        urls.append(route)
    return urls


def data_words(rows: dict) -> set[str]:
    """The words of the world's own values (names, references, messages Bitrix24 sent)."""
    words: set[str] = set()
    for row in rows.values():
        for field in row._meta.concrete_fields:
            value = getattr(row, field.attname, None)
            if isinstance(value, str):
                words |= {w.lower() for w in re.findall(r"[A-Za-z]+", value)}
    return words


@pytest.fixture
def russian(token):
    rows = admin_world.build(token)
    client = admin_world.login("superuser")
    client.cookies["django_language"] = "ru"
    return client, rows


def test_every_admin_page_in_russian_has_no_english_word(russian):
    client, rows = russian
    allowed = ALLOWED | data_words(rows) | {"superuser"}
    found: dict[str, set[str]] = {}
    for url in admin_pages(rows):
        page = client.get(url)
        if page.status_code == 403:  # a page nobody may use (add a log row): said in Russian
            assert 'id="denied-reason"' in page.content.decode()
        else:
            assert page.status_code == 200, (url, page.status_code)
        assert '<html lang="ru"' in page.content.decode(), url
        if words := english_words(page.content.decode(), allowed):
            found[url] = words
        text = visible_text(page.content.decode())
        # Matching quotes: «…» (Django's own Russian texts had “…“).
        assert "“" not in text and text.count("«") == text.count("»"), url
    assert not found, "\n".join(f"{url}: {sorted(words)}" for url, words in found.items())
