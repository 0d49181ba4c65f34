"""LOG_FORMAT=json: one JSON object per line (time, level, logger, message, token, task_id,
traceback), through the same redaction as plain lines."""

import io
import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from core.logging import JsonFormatter, RedactSecretsFilter
from portals.models import Token
from portals.tokens.tasks import refresh_due_token
from tests.conftest import CLIENT_SECRET
from tests.processes import start_python


@pytest.fixture
def json_log():
    """The root logger writing JSON lines through the redaction filter, as settings do."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


@pytest.mark.django_db(transaction=True)  # the task's prerun hook closes a test transaction
def test_a_task_s_lines_name_its_token_and_task(fake_bitrix, token, json_log):
    Token.objects.filter(pk=token.pk).update(next_refresh_at=timezone.now() - timedelta(1))
    fake_bitrix.fail_next("status", status=503)
    result = refresh_due_token.apply(args=(token.pk,), task_id="task-7")
    assert result.get() == "failed"
    [line] = [r for r in json_log() if r["logger"] == "portals.tokens.sweep"]
    assert (line["token"], line["task_id"], line["level"]) == ("token", "task-7", "INFO")
    assert "scheduled refresh failed" in line["message"]
    assert line["time"].endswith("+00:00")


@pytest.mark.django_db
def test_no_secret_reaches_a_json_line_traceback_included(token, json_log):
    token = Token.objects.select_related("app").get(pk=token.pk)
    secrets = [token.access_token, token.refresh_token, CLIENT_SECRET]
    try:
        raise ValueError(f"refresh_token={token.refresh_token} client_secret={CLIENT_SECRET}")
    except ValueError:
        logging.getLogger("portals.test").exception("failed with %s", token.access_token)
    [line] = [r for r in json_log() if r["logger"] == "portals.test"]
    assert "ValueError" in line["traceback"] and "[redacted]" in line["traceback"]
    text = json.dumps(json_log())
    assert not [secret for secret in secrets if secret in text]


def test_log_format_json_is_what_the_settings_configure():
    child = start_python(
        "import logging; logging.getLogger('portals.x').warning('hello from %s', 'json')",
        LOG_FORMAT="json",
    )
    _, err = child.communicate(timeout=60)
    [line] = [json.loads(row) for row in err.splitlines() if row.startswith("{")]
    assert (line["logger"], line["message"], line["token"]) == (
        "portals.x",
        "hello from json",
        None,
    )


def test_an_unknown_log_format_stops_the_start():
    child = start_python("", LOG_FORMAT="xml")
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0
    assert "LOG_FORMAT must be plain or json" in err
