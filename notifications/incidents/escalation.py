"""When a failed refresh becomes an incident that a person hears about: the receivers of
portals' token signals (portals.tokens.signals), connected in NotificationsConfig.ready().

- A permanent error escalates at once: nothing will fix itself.
- A transient error escalates only when the access token would expire before the next
  attempt could succeed: that is when code reading the token starts to fail. Blips do not
  page anyone; while an incident is open, repeats update it.
- When more than OUTAGE_SHARE of all refreshable tokens failed transiently within
  OUTAGE_WINDOW, the authorization server itself is in trouble: one outage incident instead
  of thousands.

Delivery is not here: notifications.incidents stores the incident and signals its receivers.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from notifications.incidents import lifecycle
from portals.bitrix.errors import ConfigurationError, OAuthError
from portals.models import Token, TokenStatus
from portals.tokens import signals
from portals.tokens.schedule import consumers_about_to_fail

OUTAGE_WINDOW = timedelta(minutes=10)


def connect_receivers() -> None:
    signals.token_failed.connect(on_failure, weak=False, dispatch_uid="escalate_failure")
    signals.token_recovered.connect(on_recovery, weak=False, dispatch_uid="escalate_recovery")
    signals.token_disabled.connect(on_disabled, weak=False, dispatch_uid="escalate_disabled")


def on_failure(
    sender: type,
    token: Token,
    error: OAuthError | ConfigurationError,
    next_attempt_at: datetime | None,
    **kwargs: object,
) -> None:
    message = error.message()
    if error.permanent or next_attempt_at is None:
        lifecycle.open_incident(token, code=error.code, message=message, permanent=True)
        return
    budget = timedelta(seconds=settings.BITRIX_CONNECT_TIMEOUT + settings.BITRIX_READ_TIMEOUT)
    if not consumers_about_to_fail(token.expires_at, next_attempt_at, budget):
        if token.incidents.filter(resolved_at=None).exists():
            lifecycle.open_incident(token, code=error.code, message=message, permanent=False)
        return
    affected = _transient_failures_in_window()
    if _is_outage(affected):
        lifecycle.open_outage(
            code=error.code,
            message=f"{affected} tokens failed to refresh within 10 minutes; the Bitrix24 "
            f"authorization server looks unavailable. Last error: {message}",
            affected=affected,
        )
        return
    lifecycle.open_incident(token, code=error.code, message=message, permanent=False)


def on_recovery(sender: type, token: Token, **kwargs: object) -> None:
    lifecycle.resolve_for_token(token)
    if not _is_outage(_transient_failures_in_window()):
        lifecycle.resolve_outage()


def on_disabled(sender: type, token: Token, **kwargs: object) -> None:
    # Staff switched the token off on purpose: its incident is over (nothing will be retried),
    # and nobody is told it recovered.
    lifecycle.resolve_for_token(token, recovered=False)


def _transient_failures_in_window() -> int:
    since = timezone.now() - OUTAGE_WINDOW
    return Token.objects.filter(
        status=TokenStatus.REFRESH_FAILING, last_failure_at__gte=since
    ).count()


def _is_outage(failing: int) -> bool:
    if failing < settings.OUTAGE_MIN_TOKENS:
        return False
    total = Token.objects.refreshable().count()
    return total > 0 and failing / total > settings.OUTAGE_SHARE
