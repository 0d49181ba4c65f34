"""No credential and no Bitrix24 token in task messages or logs. (Admin pages: see
tests/notifications/admin/test_channels.py; the worker processes' logs: the `workers` fixture.)"""

import base64
import json
import logging

import pytest
import redis

from notifications.delivery.sending import process_delivery, send_test
from notifications.incidents import lifecycle
from notifications.models import Delivery
from tests.conftest import BROKER_URL
from tests.notifications_helpers import PROVIDERS, fake_for, make_channel, make_tokens, secrets
from tests.processes import wait_until

# Fixtures: fakes, notify, owner, workers.
pytest_plugins = ["tests.notifications_fixtures"]
pytestmark = pytest.mark.django_db


def open_incident(token, capture) -> None:
    with capture(execute=True):
        lifecycle.open_incident(token, code="invalid_grant", message="expired", permanent=True)


def broker_dump() -> tuple[list[dict], str]:
    """The task messages waiting in the Redis queue, and every key's raw bytes together."""
    client = redis.Redis.from_url(BROKER_URL)
    queued = [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
    everything = b"".join(client.dump(key) or b"" for key in client.keys("*"))
    return queued, everything.decode("latin-1") + json.dumps(queued)


def test_task_messages_in_the_broker_carry_only_the_delivery_id(
    broker_url, fakes, notify, django_capture_on_commit_callbacks
):
    [token] = make_tokens(1)
    for kind in PROVIDERS:
        make_channel(kind)
    open_incident(token, django_capture_on_commit_callbacks)
    # The publisher thread sends them after the commit, in the background.
    wait_until(lambda: len(broker_dump()[0]) >= 6, 30, "the six deliveries to be enqueued")
    queued, raw = broker_dump()
    ids = set(Delivery.objects.values_list("pk", flat=True))
    assert len(queued) == len(ids) == 6
    for message in queued:
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert message["headers"]["task"] == "notifications.tasks.deliver"
        assert kwargs == {} and len(args) == 1 and args[0] in ids
        assert message["headers"]["argsrepr"] == f"({args[0]},)"
        assert message["headers"]["eta"]  # the hold: a storm can gather
    leaked = [secret for secret in secrets() if secret in raw]
    assert not leaked, leaked


def test_sending_logs_no_credential_or_token_even_at_debug(
    broker_url, fakes, notify, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "notifications", "anymail", "celery"):
        caplog.set_level(logging.DEBUG, logger=name)
    tokens = make_tokens(3)
    channels = [make_channel(kind) for kind in PROVIDERS]
    for kind in ("twilio", "messagebird", "telegram"):  # permanent errors
        fake_for(fakes, kind).fail_next({"twilio": "authenticate", "messagebird": "access_key",
                                         "telegram": "unauthorized"}[kind])  # fmt: skip
    fakes.mandrill.fail_next("server_error")  # a transient one
    for token in tokens[:2]:
        open_incident(token, django_capture_on_commit_callbacks)
    Delivery.objects.update(next_attempt_at="2000-01-01T00:00Z")
    for delivery in Delivery.objects.order_by("pk"):
        process_delivery(delivery.pk)
    for channel in channels:
        send_test(channel)
    assert "disabled" in caplog.text and "sent" in caplog.text  # the logs did speak
    assert "POST /bot[redacted]/sendMessage" in caplog.text  # urllib3 at DEBUG, filtered
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    leaked = [secret for secret in secrets() if secret in logged]
    assert not leaked, leaked
