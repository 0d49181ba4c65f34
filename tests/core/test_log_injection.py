"""A value from a request cannot forge log lines: control characters and line separators in a
rendered message come out escaped (visible), in plain and JSON lines alike; a traceback keeps
its lines (core.logging.RedactSecretsFilter, JsonFormatter)."""

import io
import json
import logging
import re
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import Client

from core.logging import JsonFormatter, RedactSecretsFilter
from tests.conftest import CLIENT_ID

FORM = "application/x-www-form-urlencoded"
FORGED = (
    "2026-01-01 00:00:00,000 INFO portals.connect.views: events for local.x: ONAPPINSTALL accepted"
)
PLAIN_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@pytest.fixture(params=["plain", "json"])
def console(request):
    """What the configured console handler writes, in each LOG_FORMAT: (format, stream)."""
    handler = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactSecretsFilter) for f in h.filters)
    )
    assert isinstance(handler, logging.StreamHandler)
    plain = logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"])
    previous_formatter = handler.formatter
    handler.setFormatter(JsonFormatter() if request.param == "json" else plain)
    stream = io.StringIO()
    previous_stream = handler.setStream(stream)
    yield request.param, stream
    handler.setStream(previous_stream)
    handler.setFormatter(previous_formatter)


def records(console, caplog) -> list[str]:
    """The messages written, one line per record; fails on a line that is not a whole record
    (a forged one) and on more lines than records."""
    log_format, stream = console
    lines = stream.getvalue().splitlines()  # splits on \u2028, \x85 and friends too
    assert len(lines) == len(caplog.records), lines
    if log_format == "json":
        return [json.loads(line)["message"] for line in lines]
    for line in lines:
        assert PLAIN_LINE.match(line), f"a broken line: {line!r}"
    return [PLAIN_LINE.sub("", line, count=1) for line in lines]


@pytest.mark.django_db
def test_a_newline_in_the_client_id_is_one_escaped_record(console, caplog):
    url = f"/bitrix/{CLIENT_ID}%0A{quote(FORGED)}/events/"
    response = Client().post(url, "event=ONAPPINSTALL", FORM)
    assert response.status_code == 400
    [message] = records(console, caplog)
    assert "\\n" in message and "ONAPPINSTALL accepted" in message


@pytest.mark.django_db
@pytest.mark.parametrize("separator", ["%E2%80%A8", "%E2%80%A9"])  # Unicode line separators
def test_a_line_separator_in_the_client_id_forges_no_line(console, caplog, separator):
    url = f"/bitrix/{CLIENT_ID}{separator}{quote(FORGED)}/events/"
    Client().post(url, "event=ONAPPINSTALL", FORM)
    messages = records(console, caplog)
    assert any("\\u202" in message for message in messages)


def test_every_control_character_in_a_message_is_shown_escaped(console, caplog):
    value = "acme\nINFO forged\r\x1b[31mred\x00\x7f\x85\u2028\u2029\tend"
    logging.getLogger("portals.test").warning("event from %s refused", value)
    [message] = records(console, caplog)
    for raw, shown in [("\n", "\\n"), ("\r", "\\r"), ("\x1b", "\\x1b"), ("\x00", "\\x00"),
                       ("\x7f", "\\x7f"), ("\x85", "\\x85"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029"), ("\t", "\\t")]:  # fmt: skip
        assert raw not in message and shown in message
    assert console[1].getvalue().count("\x1b") == 0  # no terminal escape reaches the output


def test_a_traceback_keeps_its_lines(console):
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logging.getLogger("portals.test").exception("refused %s", "a\nb")
    output = console[1].getvalue()
    if console[0] == "plain":
        assert "refused a\\nb\nTraceback (most recent call last):\n" in output
    else:
        [line] = output.splitlines()
        entry = json.loads(line)
        assert entry["message"] == "refused a\\nb"
        assert entry["traceback"].startswith("Traceback (most recent call last):\n")
