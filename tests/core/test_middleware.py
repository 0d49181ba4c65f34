"""A control character in the path, the query or a form field of a public endpoint is a 400
with a short JSON error and one escaped log line: never a 500, a traceback or an email to
ADMINS (core.middleware)."""

import logging
import re

import pytest
from django.core import mail
from django.test import Client

from tests.conftest import CLIENT_ID

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CHARACTERS = ["%00", "%0a", "%1b", "%0d%0a", "%7f", "%c2%85"]
EVENT = "event=ONAPPINSTALL&auth%5Bmember_id%5D=4a5b&auth%5Bdomain%5D=acme.bitrix24.com"

# (method, URL, form body) with "{c}" where the control character goes; one place in the path
# and one in a field for every public endpoint (/rest/ is the webhook-shaped proxy's prefix).
IN_THE_PATH = [
    ("get", f"/bitrix/{CLIENT_ID}{{c}}/callback/?code=a&state=b", None),
    ("post", f"/bitrix/{CLIENT_ID}{{c}}/install/", EVENT),
    ("post", f"/bitrix/{{c}}{CLIENT_ID}/events/", EVENT),
    ("get", "/api/tokens/acme{c}/", None),
    ("get", "/health/{c}", None),
    ("get", "/metrics{c}", None),
    ("post", "/rest/1/b24k_key{c}/user.current", None),
]
IN_A_FIELD = [
    ("get", f"/bitrix/{CLIENT_ID}/callback/?code=a{{c}}b&state=b", None),
    ("post", f"/bitrix/{CLIENT_ID}/install/", EVENT + "{c}"),
    ("post", f"/bitrix/{CLIENT_ID}/events/", "event=ONAPP{c}INSTALL&auth%5Bdomain%5D=a"),
    ("post", f"/bitrix/{CLIENT_ID}/events/", "event=ONAPPINSTALL&auth%5Bdo{c}main%5D=a"),
    ("get", f"/bitrix/{CLIENT_ID}/install/?DOMAIN=acme{{c}}", None),
    ("get", "/api/tokens/acme/?min_ttl=3{c}", None),
    ("get", "/health/?verbose={c}", None),
    ("get", "/metrics?{c}=1", None),
    ("post", "/rest/1/b24k_key/user.current", "ID=1{c}"),
]


@pytest.fixture(autouse=True)
def admins(settings):
    """Someone an error email would go to, as in production."""
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.DEBUG = False


def send(method: str, url: str, body: str | None, character: str):
    client = Client(raise_request_exception=False)
    if method == "get":
        return client.get(url.format(c=character))
    return client.post(url.format(c=character), (body or "").format(c=character), FORM)


@pytest.mark.parametrize("character", CHARACTERS)
@pytest.mark.parametrize(("method", "url", "body"), IN_THE_PATH + IN_A_FIELD)
def test_a_control_character_is_a_400_with_one_log_line_and_no_email(
    caplog, method, url, body, character
):
    caplog.set_level(logging.INFO)
    response = send(method, url, body, character)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "bad_request"
    assert "control character" in response.json()["detail"]
    assert mail.outbox == []
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert not CONTROL.search(record.getMessage()), record.getMessage()


def test_printable_input_still_reaches_the_views():
    client = Client()
    assert client.get("/health/?verbose=1").status_code in (200, 503)
    assert client.get("/api/tokens/acme/").status_code == 401
    response = client.post(f"/bitrix/{CLIENT_ID}/events/", "event=X", FORM)
    assert "control character" not in response.content.decode()
