"""Tokens: keeping each portal's OAuth pair alive, and handing out valid access tokens.

The public API (README "Getting a token from code"; other code imports only these):

    from portals.tokens import get_access_token, get_token, refresh, renew
    get_access_token(reference, min_ttl=300) -> str
    get_token(reference, min_ttl=300) -> TokenView   # immutable: no refresh token, no secret
    refresh(reference) -> TokenView
    renew(reference, rejected) -> str   # the portal refused `rejected`: a working token
    await aget_access_token(...), await arenew(...)   # async twins
    # and the errors they raise: TokenError, TokenNotFound, TokenUnavailable,
    # TokenConfigurationError, RefreshBusy, PairNotStored, RenewLimited, and Bitrix24's own:
    # OAuthError

The room: access.py (the single-flight refresh flow), state.py (the ONLY writer of a token's
state), pairs.py (journal first, then the fenced store), journal.py, load.py, history.py (the
audit log), renew.py (a refused token renewed, bounded), view.py (the immutable view),
schedule.py, sweep.py and tasks.py (Celery, on top), signals.py (what happened, for
notifications), startup.py (journal replay when a process starts). Who may call: connect, the
REST client, the admin, api, commands and tasks; tokens never import connect or admin.
"""

from portals.bitrix.errors import OAuthError
from portals.tokens.access import (
    aget_access_token,
    get_access_token,
    get_token,
    refresh,
    refresh_token,
)
from portals.tokens.errors import (
    PairNotStored,
    RefreshBusy,
    TokenConfigurationError,
    TokenError,
    TokenNotFound,
    TokenUnavailable,
)
from portals.tokens.renew import RenewLimited, arenew, renew
from portals.tokens.view import TokenView

__all__ = [
    "OAuthError",
    "PairNotStored",
    "RefreshBusy",
    "RenewLimited",
    "TokenConfigurationError",
    "TokenError",
    "TokenNotFound",
    "TokenUnavailable",
    "TokenView",
    "aget_access_token",
    "arenew",
    "get_access_token",
    "get_token",
    "refresh",
    "refresh_token",
    "renew",
]
