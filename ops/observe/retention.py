"""Bounded history: refresh attempts and deliveries older than HISTORY_RETENTION_DAYS go.

10,000 tokens every 25 minutes write about 580,000 attempts a day; without this the table
grows forever. What always stays, whatever its age:
- the latest attempt of each token (the admin shows it; it says how the token last fared);
- every attempt of a token whose incident is still open (what led to it);
- every delivery of an open incident.

Deleting walks the table in primary-key order, BATCH rows at a time, each batch one short
DELETE in its own transaction: nothing is locked for long, and refreshes (which only insert
new attempts and never touch old ones) go on meanwhile. The metrics' counters are running
totals kept apart from these rows (ops.record.metrics), so they do not go down.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, Model, OuterRef, Q
from django.utils import timezone

from notifications.models import Delivery, Incident
from portals.models import RefreshAttempt

log = logging.getLogger(__name__)
BATCH = 2000


@dataclass
class Pruned:
    attempts: int = 0
    deliveries: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0


def prune(now: datetime | None = None, batch: int = BATCH) -> Pruned:
    """Delete what is older than HISTORY_RETENTION_DAYS; returns what was deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.HISTORY_RETENTION_DAYS)
    result = Pruned()
    attempts = _old_attempts(cutoff)
    result.attempts = _in_batches(RefreshAttempt, "started_at", cutoff, attempts, batch, result)
    deliveries = _old_deliveries(cutoff)
    result.deliveries = _in_batches(Delivery, "created_at", cutoff, deliveries, batch, result)
    log.info(
        "history: deleted %d refresh attempt(s) and %d deliver(ies) from before %s",
        result.attempts,
        result.deliveries,
        cutoff.isoformat(timespec="seconds"),
    )
    return result


def _old_attempts(cutoff: datetime) -> Q:
    # A later attempt of the same token (ties on started_at broken by id): this one is not
    # the token's latest.
    newer = RefreshAttempt.objects.filter(token_id=OuterRef("token_id")).filter(
        Q(started_at__gt=OuterRef("started_at"))
        | Q(started_at=OuterRef("started_at"), pk__gt=OuterRef("pk"))
    )
    open_incident = Incident.objects.filter(token_id=OuterRef("token_id"), resolved_at=None)
    return Q(started_at__lt=cutoff) & Q(Exists(newer)) & ~Q(Exists(open_incident))


def _old_deliveries(cutoff: datetime) -> Q:
    return Q(created_at__lt=cutoff, incident__resolved_at__isnull=False)


def _in_batches(
    model: type[Model], age_field: str, cutoff: datetime, condition: Q, batch: int, result: Pruned
) -> int:
    """Delete `model` rows matching `condition`, one primary-key range of `batch` rows at a
    time, each range in its own short transaction.

    Rows are walked by primary key (an index range scan that starts where the last batch
    ended) rather than searched by age, so no batch re-reads what earlier ones kept, and no
    index on the age column is needed. Rows are written in time order, so the walk stops at
    the first range with nothing older than the cutoff (a row written minutes out of order
    waits for the next day's run).
    """
    deleted, after, rows = 0, 0, model._default_manager
    while True:
        ids = list(rows.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        in_range = rows.filter(pk__gte=ids[0], pk__lte=ids[-1])
        if not in_range.filter(**{f"{age_field}__lt": cutoff}).exists():
            return deleted
        began = time.monotonic()
        _, per_model = in_range.filter(condition).delete()
        result.batches += 1
        result.longest_batch_seconds = max(result.longest_batch_seconds, time.monotonic() - began)
        deleted += per_model.get(model._meta.label, 0)
        after = ids[-1]
