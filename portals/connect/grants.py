"""Storing a pair Bitrix24 issued for a connect, whichever way it came (the "Add task" code,
the Connect button's callback, an install or install frame, ONAPPUPDATE, a confirmed pending
pair): `store_grant` is the one place every connect goes through. The portal is found by its
member_id (its domain may have changed, and changes only by the rules of portals.addresses),
the token is created or re-connected in one transaction through portals.tokens.state, and once
that commits the uninstall and update handlers are bound (portals.connect.eventbind; a failure
there never fails the connect). `check_scope` then records the scope Bitrix24 granted
(app.info, docs/bitrix24-protocol.md §7).
"""

import logging
from datetime import datetime
from functools import partial

from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from portals import addresses
from portals.bitrix import authservers
from portals.bitrix.errors import ConfigurationError, OAuthError
from portals.bitrix.oauth import BitrixOAuthClient, TokenGrant, auth_server_from_endpoint
from portals.connect import eventbind
from portals.models import AppCredentials, Portal, RefreshAttempt, Token
from portals.tokens import state

log = logging.getLogger(__name__)


class ConnectError(Exception):
    """Connecting failed; `field` names the input to fix (None: not one field's fault)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StalePair(ConnectError):
    """`store_grant(only_if_newer=True)`: the stored pair is as new or newer; nothing stored."""


def check_answer(grant: TokenGrant) -> None:
    """Refuse an answer that names an authorization server outside BITRIX_AUTH_SERVERS: the
    next refresh would send the client_secret there."""
    if grant.server_endpoint:
        authservers.require(grant.server_endpoint, "Bitrix24's answer names a server_endpoint")


@sensitive_variables()
def store_grant(
    app: AppCredentials,
    grant: TokenGrant,
    domain: str,
    *,
    started: datetime,
    duration_ms: int,
    reference: str = "",
    owner_id: int | None = None,
    token: Token | None = None,
    application_token: str | None = None,
    kind: str = RefreshAttempt.Kind.CODE_EXCHANGE,
    address_confirmed: bool = False,
    only_if_newer: bool = False,
) -> Token:
    """Store a pair for `app` on the portal at `domain`: the portal is found by member_id
    first (the domain may have changed), then the token, updated in place if this portal
    already has one for this app (or `token`, for a re-connect), else created. `reference`
    (empty: derived from the portal's name) applies to a new token, or renames `token`.

    A portal moves to `domain` only when app.info says it lives there (`address_confirmed`:
    the caller asked already) and no live portal holds it (ConnectError otherwise). With
    `only_if_newer`, a pair that does not expire later than the stored one raises StalePair."""
    move_aside = _clear_address(grant, domain, confirmed=address_confirmed)
    with transaction.atomic():
        portal = _upsert_portal(domain, grant, move_aside)
        if token is not None:
            token = Token.objects.select_for_update().get(pk=token.pk)
            _move_to(token, portal)
        else:
            # Locked: a refresh storing meanwhile must not interleave with the new chain.
            token = Token.objects.select_for_update().filter(portal=portal, app=app).first()
            token = token or Token(portal=portal, app=app)
        if only_if_newer and not _is_newer(grant, token):
            raise StalePair(f"the pair for {portal.domain} is not newer than the stored one")
        if reference:
            token.reference = reference
        elif not token.reference:
            token.reference = unique_reference(portal.domain)
        token.owner_id = owner_id or token.owner_id
        stored = state.store_connection(
            token,
            grant,
            scope=grant.scope or app.scope,
            started=started,
            duration_ms=duration_ms,
            application_token=application_token,
            kind=kind,
        )
    # After the outermost commit (at once when there is none); never inside the pair's
    # transaction, and `robust`: a failed bind is recorded on the token, the connect stands.
    transaction.on_commit(partial(eventbind.after_connect, stored.pk), robust=True)
    return stored


def _is_newer(grant: TokenGrant, token: Token) -> bool:
    """Replays carry pairs Bitrix24 has rotated since: only a later expiry is newer (§3.2)."""
    if not token.pk or not token.refresh_token or token.expires_at is None:
        return True
    return grant.expires_at > token.expires_at


@sensitive_variables()
def _clear_address(grant: TokenGrant, domain: str, *, confirmed: bool) -> int | None:
    """Before the transaction (these may ask the authorization server): the portal row to
    move aside for `domain`, after checking that the move is Bitrix24's word."""
    own = Portal.objects.filter(member_id=grant.member_id).first() if grant.member_id else None
    try:
        if own is not None and own.domain != domain and not confirmed:
            addresses.confirm_address(grant, own.domain, domain)
        return addresses.free_for(grant.member_id or None, domain)
    except addresses.AddressTaken as err:
        raise ConnectError(str(err), "portal") from None


def _move_to(token: Token, portal: Portal) -> None:
    """A confirmed re-connect from a portal with another member_id: the token follows it."""
    if token.portal_id == portal.pk:
        return
    if Token.objects.filter(portal=portal, app_id=token.app_id).exclude(pk=token.pk).exists():
        raise ConnectError(
            _("%(portal)s already has a token for this app; re-connect that one instead.")
            % {"portal": portal.domain}
        )
    token.portal = portal


def unique_reference(domain: str) -> str:
    """A free reference from the portal's name: acme.bitrix24.com → acme, acme-2, …"""
    base = slugify(domain.split(".")[0] if not domain[:1].isdigit() else domain)[:90] or "portal"
    taken = set(
        Token.objects.filter(reference__startswith=base).values_list("reference", flat=True)
    )
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _upsert_portal(domain: str, grant: TokenGrant, move_aside: int | None) -> Portal:
    """Find the portal by its permanent member_id first (the domain may have changed)."""
    portal = None
    if grant.member_id:
        portal = Portal.objects.filter(member_id=grant.member_id).first()
    if move_aside is not None:
        addresses.move_aside(move_aside, domain, grant.member_id)
    portal = portal or Portal.objects.filter(domain=domain).first() or Portal(domain=domain)
    if portal.domain != domain:
        log.warning("portal %s (member %s): %s is now %s", portal.pk, portal.member_id,
                    portal.domain, domain)  # fmt: skip
        portal.domain = domain
    portal.member_id = grant.member_id or portal.member_id
    portal.auth_server = auth_server_from_endpoint(grant.server_endpoint) or portal.auth_server
    portal.save()
    return portal


@sensitive_variables()
def check_scope(token: Token) -> list[str]:
    """app.info on the token's authorization server (§7): proves the stored token works and
    records the scope Bitrix24 granted. Returns the app's scopes that are missing. A failure
    here changes nothing: the pair is stored and refreshes as usual."""
    try:
        client = BitrixOAuthClient(
            server=token.server_endpoint or token.portal.authorization_server()
        )
        info = client.app_info(token.access_token)
    except (OAuthError, ConfigurationError) as err:
        log.warning("token %s: app.info after connecting failed: %s", token, err.code)
        return []
    if info.scope:
        state.record_scope(token.pk, info.scope)
        token.scope = info.scope
    return token.missing_scopes()
