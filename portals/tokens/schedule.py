"""When a token is next due: the app's refresh policy after a success, backoff after a failure.

Pure functions of their arguments (plus randomness for jitter), so they are easy to test and
the sweep and the refresh service agree on them.
"""

import random
from datetime import datetime, timedelta

from django.conf import settings

from portals.models import AppCredentials

# Never plan a refresh closer to expiry than this: leaves room for a retry or two.
EXPIRY_SAFETY = timedelta(minutes=3)
# Spread refreshes by up to this share of their interval, so tokens connected together drift
# apart instead of all firing in the same second forever.
JITTER_SHARE = 0.1
JITTER_CAP = timedelta(minutes=5)


def _jitter(span: timedelta) -> timedelta:
    limit = min(span * JITTER_SHARE, JITTER_CAP)
    return timedelta(seconds=random.uniform(0, limit.total_seconds()))


def next_refresh_after_success(
    app: AppCredentials, expires_at: datetime, now: datetime
) -> datetime:
    """The app's policy, jittered early (never late), and never past expiry minus a margin.

    The policy fields are bounded by the model's validators; they are clamped here as well, so a
    row written before those bounds existed can never make this raise after Bitrix rotated."""
    if app.refresh_policy == AppCredentials.RefreshPolicy.BEFORE_EXPIRY:
        keepalive = now + timedelta(days=_clamp(app.keepalive_days, 1, 29))
        minutes = _clamp(app.refresh_before_expiry_minutes, 1, 59)
        before_expiry = expires_at - timedelta(minutes=minutes)
        due = min(keepalive, before_expiry)
    else:
        due = now + timedelta(minutes=_clamp(app.refresh_interval_minutes, 1, 55))
    due -= _jitter(due - now)
    latest = expires_at - EXPIRY_SAFETY
    return max(now, min(due, latest))


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


def backoff_delay(failure_count: int) -> timedelta:
    """Exponential backoff with jitter: 30 s, 60 s, 120 s … capped at 15 minutes by default
    (REFRESH_BACKOFF_BASE_SECONDS, REFRESH_BACKOFF_MAX_SECONDS)."""
    base, cap = settings.REFRESH_BACKOFF_BASE_SECONDS, settings.REFRESH_BACKOFF_MAX_SECONDS
    ceiling = min(cap, base * 2 ** max(failure_count - 1, 0))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def next_attempt_after_failure(failure_count: int, now: datetime) -> datetime:
    return now + backoff_delay(failure_count)


def consumers_about_to_fail(
    expires_at: datetime | None, next_attempt_at: datetime, call_budget: timedelta
) -> bool:
    """True when the access token expires before the next attempt could have succeeded:
    code that reads the token will start failing, so a person must hear of it now."""
    if expires_at is None:
        return True
    return expires_at <= next_attempt_at + call_budget
