"""What code outside the token service gets of a token: an immutable view with the fields of the
token API's JSON (same names), and nothing that could refresh it behind b24keeper's back (no
refresh token, no client secret, no model instance). Built here from a Token row only by
portals.tokens.access and portals.tokens.renew; read by anyone.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from portals.models import Token


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as a consumer sees it. `access_token` stays out of repr (and so out of
    tracebacks); `expires` is unix seconds, `expires_at` the same moment as a datetime."""

    id: int
    reference: str
    access_token: str = field(repr=False)
    expires_at: datetime
    expires: int
    domain: str
    member_id: str
    client_endpoint: str  # always a usable REST root: the portal's /rest/ when none was sent
    server_endpoint: str
    scope: str
    status: str  # b24keeper's status (TokenStatus), as the token API's 409 names it
    app_status: str  # Bitrix24's L/F/D/T/P/S, empty until Bitrix24 said it
    user_id: int | None

    @property
    def expires_in(self) -> int:
        """Whole seconds left (0 once expired)."""
        return max(0, int((self.expires_at - timezone.now()).total_seconds()))


def rest_root(token: Token) -> str:
    """The token's REST root: client_endpoint, else the portal's https://<domain>/rest/."""
    return token.client_endpoint or f"https://{token.portal.domain}/rest/"


@sensitive_variables()
def view_of(token: Token) -> TokenView:
    """The view of `token` (loaded with its portal)."""
    expires_at = token.expires_at or timezone.now()
    return TokenView(
        id=token.pk,
        reference=token.reference,
        access_token=token.access_token,
        expires_at=expires_at,
        expires=int(expires_at.timestamp()),
        domain=token.portal.domain,
        member_id=token.portal.member_id or "",
        client_endpoint=rest_root(token),
        server_endpoint=token.server_endpoint,
        scope=token.scope,
        status=token.status,
        app_status=token.app_status,
        user_id=token.user_id,
    )
