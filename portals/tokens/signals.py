"""What happens to tokens, announced for whoever cares (notifications decides who is told).

portals never imports notifications: it states facts here, and notifications listens
(NotificationsConfig.ready()). Receivers run synchronously, after the state change is stored.

    token_failed(sender=Token, token=..., error=OAuthError | ConfigurationError,
                 next_attempt_at=datetime | None)   # None: it will not be retried
    token_recovered(sender=Token, token=...)          # refreshed, re-connected, enabled, restored
    token_disabled(sender=Token, token=...)           # staff switched it off
"""

from django.dispatch import Signal

token_failed = Signal()
token_recovered = Signal()
token_disabled = Signal()
