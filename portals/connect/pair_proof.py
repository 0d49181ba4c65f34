"""What proves a token pair that arrives in an install, the install frame or ONAPPUPDATE
(docs/bitrix24-protocol.md §3.2, §6.4, §7). Called by portals.connect.install only.

Such a pair is posted by whoever reaches /install/ or /events/, and every user of a portal can
get a live pair of their own, so a pair proves itself only when:

1. `app.info` on the payload's authorization server (one of BITRIX_AUTH_SERVERS) says the access
   token is live and belongs to this app, this portal's member_id and the domain expected;
2. `user.admin` at the REST root app.info names (never the payload's `client_endpoint`) says the
   token's user may manage the portal's apps: only an administrator installs or updates.

The proved pair carries app.info's domain, REST root, scope and user, not the payload's. Whether it
is also newer than the stored pair is decided where it is stored, under the row lock
(portals.connect.grants.store_grant), by the expiry read here: `auth[expires]`, else the one the
access token carries (§3.2), never "now + expires_in".
"""

import logging
from dataclasses import dataclass, replace

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from portals.bitrix import transport
from portals.bitrix.errors import ConfigurationError, OAuthError
from portals.bitrix.oauth import AppInfo, BitrixOAuthClient, TokenGrant

log = logging.getLogger(__name__)
EXPIRY_HEX = 8  # the first 8 hex characters of a token: its expiry (§3.2)


class NotProved(Exception):
    """The pair is not proved; `reason` is for the log (values from the request as %r).
    `not_admin`: app.info vouched for the token, but its user is no administrator."""

    def __init__(self, reason: str, *, not_admin: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_admin = not_admin


@dataclass(frozen=True, repr=False)
class Proof:
    grant: TokenGrant  # with app.info's domain, client_endpoint, scope and user_id
    info: AppInfo

    def __repr__(self) -> str:  # the grant holds tokens
        return f"Proof(member_id={self.info.member_id!r}, domain={self.info.domain!r})"


@sensitive_variables()
def prove(client_id: str, grant: TokenGrant, domain: str) -> Proof:
    """The pair's proof, or NotProved: app.info must name `client_id`, the grant's member_id
    and `domain`; user.admin must answer true at app.info's REST root."""
    try:
        client = BitrixOAuthClient(server=grant.server_endpoint or None)
        info = client.app_info(grant.access_token)
    except ConfigurationError:
        raise NotProved("server_endpoint is not one of BITRIX_AUTH_SERVERS") from None
    except OAuthError as err:
        raise NotProved(f"app.info refused the token ({err.code})") from None
    said, claimed = (
        (info.client_id, info.member_id, info.domain),
        (client_id, grant.member_id, domain),
    )
    if said != claimed:
        raise NotProved(f"app.info says the token belongs to {said!r}, not to {claimed!r}")
    endpoint = _rest_root(info)
    if not _is_admin(endpoint, grant.access_token):
        raise NotProved(
            f"user {info.user_id} is not an administrator of {info.domain}", not_admin=True
        )
    proved = replace(
        grant,
        domain=info.domain,
        client_endpoint=endpoint,
        scope=info.scope or grant.scope,
        user_id=info.user_id if info.user_id is not None else grant.user_id,
    )
    return Proof(proved, info)


def _rest_root(info: AppInfo) -> str:
    """app.info's REST root, rebuilt by the one strict parser (portals.bitrix.authservers)."""
    try:
        return transport.root_of(info.client_endpoint)
    except transport.RestError:
        raise NotProved(f"app.info names no usable REST root ({info.client_endpoint!r})") from None


@sensitive_variables()
def _is_admin(endpoint: str, access_token: str) -> bool:
    """`user.admin` (§6.4): may the token's user manage this portal's apps?"""
    try:
        envelope = transport.post(
            endpoint, "user.admin", {"auth": access_token}, settings.BITRIX_READ_TIMEOUT
        )
    except transport.RestError as err:
        raise NotProved(f"user.admin failed ({err.code})") from None
    except transport.Moved:
        raise NotProved("the portal answered user.admin with a redirect") from None
    return envelope.get("result") is True


def token_expiry(token: str) -> int | None:
    """The Unix time a current-format token expires, from its first 8 hex characters read as
    a little-endian uint32 (§3.2); None for a token in another format."""
    prefix = (token or "")[:EXPIRY_HEX]
    try:
        raw = bytes.fromhex(prefix)
    except ValueError:
        return None
    return int.from_bytes(raw, "little") if len(raw) == EXPIRY_HEX // 2 else None


def pair_expiry(expires: str, access_token: str) -> int | None:
    """When the posted pair's access token expires: `auth[expires]` when given, else what the
    token itself says. A given value the token contradicts is not believed (None), so a
    forged `auth[expires]` cannot make an old pair look new."""
    carried = token_expiry(access_token)
    if expires and expires.isdigit():
        given = int(expires)
        return given if carried is None or carried == given else None
    return carried
