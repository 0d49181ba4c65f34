"""The refresh audit log: one RefreshAttempt row per code exchange, refresh, restore or failure,
written here only, and counted in the metrics (ops.record.metrics) at the same time. Called by
portals.tokens.state and portals.tokens.pairs; rows are never changed once written."""

from datetime import datetime

from django.utils import timezone

from ops.record import metrics
from portals.bitrix.errors import ConfigurationError, OAuthError
from portals.models import RefreshAttempt, Token

Outcome = RefreshAttempt.Outcome


def record_attempt(
    token: Token,
    kind: str,
    outcome: str,
    started: datetime | None,
    duration_ms: int,
    error: OAuthError | ConfigurationError | None = None,
    store_retries: int = 0,
) -> None:
    RefreshAttempt.objects.create(
        token_id=token.pk,
        kind=kind,
        outcome=outcome,
        started_at=started or timezone.now(),
        finished_at=timezone.now(),
        error_code=error.code[:100] if error else "",
        error_description=getattr(error, "description", "") if error else "",
        http_status=getattr(error, "http_status", None) if error else None,
        duration_ms=duration_ms,
        store_retries=store_retries,
    )
    metrics.refresh_attempt(kind, outcome, error.code if error else "", duration_ms)


def record_interrupted(token: Token, kind: str, started: datetime) -> None:
    """The previous refresh's process died mid-call (its claim outlived the lease)."""
    record_attempt(token, kind, Outcome.INTERRUPTED, started, 0)
