"""The sweep's tasks: tokens enqueued in batches over one connection, a batch refreshing each
token through the same claim as one refresh (a busy token handed to the one-token task), and a
scheduled refresh in 4 statements: the claim read with the row, the pair alone, then the
schedule and the audit row together."""

import json
from base64 import b64decode
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portals.models import RefreshAttempt, Token
from portals.tokens.sweep import (
    REFRESH_BATCH_TASK,
    REFRESH_TASK,
    batches,
    refresh_batch,
    refresh_if_due,
    sweep,
)
from tests.conftest import BROKER_URL, connect

pytestmark = pytest.mark.django_db
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")


def queued() -> list[tuple[str, list]]:
    """(task name, positional args) of every message in the broker's default queue, oldest first."""
    client = redis.Redis.from_url(BROKER_URL)
    messages = [json.loads(raw) for raw in reversed(client.lrange("celery", 0, -1))]
    return [(m["headers"]["task"], json.loads(b64decode(m["body"]))[0]) for m in messages]


def due(*tokens: Token, **fields: object) -> None:
    now = timezone.now()
    Token.objects.filter(pk__in=[t.pk for t in tokens]).update(
        next_refresh_at=now - timedelta(seconds=1), **fields
    )


@pytest.mark.parametrize(
    ("count", "most", "sizes"),
    [
        (0, 10, []),
        (5, 10, [1] * 5),  # a small sweep: one token per task, every slot busy
        (130, 10, [2] * 65),  # at least 64 tasks while that leaves 2+ tokens each
        (10_000, 10, [10] * 1000),  # a catch-up: REFRESH_BATCH_SIZE per task
        (1005, 10, [10] * 100 + [5]),
    ],
)
def test_batches_keep_the_order_and_spread_small_sweeps(count, most, sizes):
    ids = list(range(count))
    chunks = batches(ids, most)
    assert [len(chunk) for chunk in chunks] == sizes
    assert [i for chunk in chunks for i in chunk] == ids


def test_a_sweep_enqueues_batch_tasks_most_overdue_first(fake_bitrix, broker_url):
    tokens = [connect(fake_bitrix, f"t{i}", f"p{i}.bitrix24.com") for i in range(3)]
    for age, token in zip((1, 3, 2), tokens, strict=True):
        Token.objects.filter(pk=token.pk).update(
            next_refresh_at=timezone.now() - timedelta(minutes=age)
        )
    assert sweep() == 3
    order = [tokens[1].pk, tokens[2].pk, tokens[0].pk]
    assert queued() == [(REFRESH_BATCH_TASK, [[pk]]) for pk in order]  # args: one list each


def test_a_batch_refreshes_each_token_and_hands_a_busy_one_to_the_one_token_task(
    fake_bitrix, broker_url
):
    tokens = [connect(fake_bitrix, f"t{i}", f"p{i}.bitrix24.com") for i in range(3)]
    due(*tokens[:2])
    due(tokens[2], refresh_started_at=timezone.now())  # another process is refreshing it
    assert refresh_batch([t.pk for t in tokens]) == {"refreshed": 2, "busy": 1}
    assert [Token.objects.get(pk=t.pk).version for t in tokens] == [2, 2, 1]
    assert queued() == [(REFRESH_TASK, [tokens[2].pk])]
    # Run again (a redelivered batch): the refreshed ones are not due any more.
    assert refresh_batch([t.pk for t in tokens[:2]]) == {"not-due": 2}


def test_a_scheduled_refresh_is_four_statements(fake_bitrix, token):
    due(token)
    with CaptureQueriesContext(connection) as queries:
        assert refresh_if_due(token.pk) == "refreshed"
    statements = [q["sql"] for q in queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
    # The tests write counters at once; a process adds them up and flushes them every
    # METRICS_FLUSH_SECONDS (tests/ops/record/test_metrics.py).
    statements = [sql for sql in statements if not sql.startswith("INSERT INTO ops_counter")]
    assert len(statements) == 4, "\n".join(statements)
    claim, pair, schedule, audit = statements
    assert claim.startswith("WITH previous AS") and "FOR UPDATE" in claim
    assert pair.startswith("UPDATE portals_token SET access_token")
    assert schedule.startswith('UPDATE "portals_token" SET "client_endpoint"')
    assert audit.startswith('INSERT INTO "portals_refreshattempt"')
    token.refresh_from_db()
    assert token.version == 2 and token.refresh_started_at is None
    assert token.next_refresh_at > timezone.now() + timedelta(minutes=20)
    assert RefreshAttempt.objects.get(token=token, kind="scheduled").outcome == "success"
