"""The Bitrix24 REST client for code that holds a token reference (docs/bitrix24-protocol.md
§4.3, §5): portals.bitrix.rest's RestClient, bound to the token service.

    from portals.rest import Bitrix24, RestError, BatchResult
    b24 = Bitrix24("token")                          # by reference
    b24.call("crm.lead.get", {"id": 42})             # -> the "result" value
    b24.batch({"a": ("crm.lead.get", {"id": 1}), "b": ("user.current", {})}, halt=False)
    for lead in b24.iterate("crm.lead.list", {"select": ["ID", "TITLE"]}):
        ...

The token comes from portals.tokens for every HTTP request (refreshed first when it has less
than MIN_TTL seconds left); a refused token is renewed there once (single flight), a token that
stays refused is marked (an incident opens), and a confirmed rename of the portal is stored
(portals.addresses decides who may hold the address; portals.tokens.state writes it).
"""

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from portals import addresses, tokens
from portals.bitrix.errors import status_for
from portals.bitrix.rest import BatchResult, Credential, PortalMove, RestClient
from portals.bitrix.transport import RestError, root_of
from portals.models import RefreshAttempt, Token
from portals.tokens import state
from portals.tokens.access import fresh_token
from portals.tokens.load import load
from portals.tokens.view import rest_root

__all__ = ["BatchResult", "Bitrix24", "RestError"]


class Bitrix24(RestClient):
    """REST calls on the portal of the token `reference`. Cheap to build; holds no token (it
    is read from the token service for every request), so it may live as long as you like."""

    # A token expiring sooner than this is refreshed before a call rather than after it fails.
    MIN_TTL = 60

    def __init__(self, reference: str, *, deadline: float | None = None) -> None:
        self.reference = reference
        super().__init__(TokenKeeper(reference, self.MIN_TTL), deadline=deadline)


class TokenKeeper:
    """The token service as a RestClient's keeper (portals.bitrix.rest.Keeper)."""

    def __init__(self, reference: str, min_ttl: int) -> None:
        self.reference = reference
        self.min_ttl = min_ttl

    def current(self) -> Credential:
        return credential_of(fresh_token(self.reference, self.min_ttl))

    def renew(self, refused: Credential) -> Credential:
        """Take the pair another process stored meanwhile, or refresh (single flight: one
        refresh however many callers get here at once)."""
        token = _token(refused)
        current = load(pk=token.pk)
        if current.version != token.version:
            return credential_of(current)
        renewed = tokens.refresh_token(current, RefreshAttempt.Kind.ON_DEMAND, wait=True)
        return credential_of(renewed or load(pk=token.pk))

    def refused(self, credential: Credential, err: RestError) -> None:
        kind, started = RefreshAttempt.Kind.ON_DEMAND, timezone.now()
        state.record_failure(_token(credential), kind, err, started, 0, status=status_for(err))

    def moved(self, credential: Credential, move: PortalMove) -> Credential:
        try:
            move_aside = addresses.free_for(move.member_id, move.domain)  # may ask app.info
        except addresses.AddressTaken as err:
            raise RestError("portal_moved", str(err), status=302) from None
        state.move_portal(move.member_id, move.domain, move.endpoint, move_aside)
        token = _token(credential)
        token.client_endpoint, token.portal.domain = move.endpoint, move.domain
        return credential_of(token)


@sensitive_variables()
def credential_of(token: Token) -> Credential:
    """What the REST client needs of `token` (its portal loaded): the access token, the REST
    root (client_endpoint, else the portal's /rest/), the portal's rate limit."""
    portal = token.portal
    server = token.server_endpoint or portal.authorization_server()
    return Credential(
        access_token=token.access_token,
        root=root_of(rest_root(token)),
        domain=portal.domain,
        member_id=portal.member_id or "",
        auth_server=server,
        bucket=f"portal:{portal.pk}",
        rate=portal.rest_rate,
        burst=portal.rest_burst,
        handle=token,
    )


def _token(credential: Credential) -> Token:
    token = credential.handle
    assert isinstance(token, Token), "a credential of portals.rest always carries its token"
    return token
