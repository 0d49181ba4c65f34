"""Connecting a portal: check the input, exchange the 30-second code, store everything at once.

Used by the admin "Add task" form and `manage.py connect_portal`; `store_grant` and
`check_scope` also serve the OAuth callback (portals.callback) and the install events
(portals.install). Every check that needs no network runs before the code is spent; the rows
are written in one transaction only after Bitrix24 has answered, so a failure leaves nothing
half-saved. After any connect, `app.info` (docs/bitrix24-protocol.md §7) records the scope
Bitrix24 actually granted.

Who connects is passed in, never read from a request: `ConnectInput.may_change_app` says
whether this connect may change a stored app's client_secret and scope (README "Who may do
what"). A code from another portal than the one typed raises OtherPortal and stores nothing
(portals.connect_checks); the admin then holds the pair for staff to confirm.

`store_grant` is the one place every connect goes through: a portal changes address there only
by the rules of portals.addresses, and once the pair is committed it has the uninstall and
update handlers bound (portals.eventbind.after_connect, outside the transaction; a failure there
never fails the connect).
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_variables

from portals import addresses
from portals.bitrix import authservers, oauth
from portals.bitrix.errors import ConfigurationError, OAuthError, form_field
from portals.bitrix.identifiers import normalize_portal_address, normalize_scope, validate_client_id
from portals.bitrix.oauth import BitrixOAuthClient, TokenGrant, auth_server_from_endpoint
from portals.connect import eventbind, guards
from portals.models import AppCredentials, Portal, RefreshAttempt, Token
from portals.tokens import state

log = logging.getLogger(__name__)
CODE_HINT = gettext_lazy(
    "Codes live 30 seconds and work once. Open {authorize_url} again and submit the new code "
    "at once."
)


class ConnectError(Exception):
    """Connecting failed; `field` names the input to fix (None: not one field's fault)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class OtherPortal(ConnectError):
    """The code came from another portal than the one typed (portals.connect_checks): nothing
    is stored. With another member_id and a token of the typed portal for this app
    (`token`), the admin holds the pair for staff to confirm; `domain` is where it came from."""

    def __init__(self, found: guards.Mismatch, grant: TokenGrant) -> None:
        super().__init__(found.message, found.field)
        self.token, self.grant, self.domain = found.token, grant, found.domain


class StalePair(ConnectError):
    """`store_grant(only_if_newer=True)`: the stored pair is as new or newer; nothing stored."""


@dataclass(frozen=True)
class ConnectInput:
    portal: str
    client_id: str
    client_secret: str
    scope: str
    code: str
    reference: str = "token"
    app_name: str = ""
    owner_id: int | None = None  # the staff user responsible; alerts name them
    # May this connect change a stored app's client_secret and scope? The admin passes the
    # user's portals.change_appcredentials; the command, run on the machine, passes True.
    may_change_app: bool = False

    def __repr__(self) -> str:  # the secret and code stay out of tracebacks
        return f"ConnectInput(portal={self.portal!r}, client_id={self.client_id!r})"


@sensitive_variables()
def clean_input(data: ConnectInput) -> ConnectInput:
    """Normalise every field, or raise ValidationError({field: [messages]}) for all at once."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, str] = {}
    checks = {
        "portal": normalize_portal_address,
        "client_id": validate_client_id,
        "scope": normalize_scope,
        "reference": _clean_reference,
        "client_secret": lambda v: _required(v, _("the client_secret from the app's card")),
        "code": lambda v: _required(v, _("the code shown after opening the authorize URL")),
    }
    for field, check in checks.items():
        try:
            cleaned[field] = check(getattr(data, field))
        except ValidationError as err:
            errors[field] = err.messages
    if errors:
        raise ValidationError(errors)
    return ConnectInput(
        app_name=data.app_name.strip(),
        owner_id=data.owner_id,
        may_change_app=data.may_change_app,
        **cleaned,
    )


def _required(value: str, what: str) -> str:
    if not (value or "").strip():
        raise ValidationError(_("This field is required: enter %(what)s.") % {"what": what})
    return value.strip()


def _clean_reference(value: str) -> str:
    reference = (value or "token").strip()
    try:
        validate_slug(reference)
    except ValidationError:
        raise ValidationError(
            _("Use letters, digits, hyphens or underscores only, e.g. token or acme-crm.")
        ) from None
    return reference


def authorize_url(portal: str, client_id: str) -> str:
    return oauth.authorize_url(normalize_portal_address(portal), client_id)


@sensitive_variables()
def connect_portal(data: ConnectInput) -> Token:
    """Exchange the code and store portal, app credentials and token. Raises ValidationError
    (bad input, or an app change this connect may not make: nothing sent), OtherPortal (the
    code came from another portal: nothing stored) or ConnectError (Bitrix24 refused, nothing
    stored)."""
    data = clean_input(data)
    _check_reference_is_free(data)
    if not data.may_change_app:
        guards.app_unchanged(data.client_id, data.client_secret, data.scope)
    started, began = timezone.now(), time.monotonic()
    grant = _exchange(data)
    if found := guards.mismatch(data.portal, data.client_id, grant):
        raise OtherPortal(found, grant)
    token = _store_connection(data, grant, started, int((time.monotonic() - began) * 1000))
    check_scope(token)
    return token


@sensitive_variables()
def _exchange(data: ConnectInput) -> TokenGrant:
    server = _known_auth_server(data.portal)
    try:
        grant = BitrixOAuthClient(server=server).exchange_code(
            data.client_id, data.client_secret, data.code
        )
        check_answer(grant)
    except OAuthError as err:
        log.info("connect %r/%r refused: %s", data.portal, data.client_id, err.code)
        raise _connect_error(err, data) from None
    except ConfigurationError as err:
        log.warning("connect %r/%r: %s", data.portal, data.client_id, err)
        raise ConnectError(str(err)) from None
    return grant


def check_answer(grant: TokenGrant) -> None:
    """Refuse an answer that names an authorization server outside BITRIX_AUTH_SERVERS: the
    next refresh would send the client_secret there."""
    if grant.server_endpoint:
        authservers.require(grant.server_endpoint, "Bitrix24's answer names a server_endpoint")


def _known_auth_server(domain: str) -> str | None:
    portal = Portal.objects.filter(domain=domain).first()
    return portal.authorization_server() if portal else None


def _check_reference_is_free(data: ConnectInput) -> None:
    taken = Token.objects.select_related("portal", "app").filter(reference=data.reference).first()
    if taken and (taken.portal.domain, taken.app.client_id) != (data.portal, data.client_id):
        message = _(
            "“%(reference)s” already names the token of %(portal)s / %(client_id)s. Choose "
            "another reference, or re-connect that portal with its own client_id."
        )
        values = {
            "reference": data.reference,
            "portal": taken.portal.domain,
            "client_id": taken.app.client_id,
        }
        raise ValidationError({"reference": message % values})
    existing = Token.objects.filter(
        portal__domain=data.portal, app__client_id=data.client_id
    ).exclude(reference=data.reference)
    if other := existing.first():
        message = _(
            "This portal and app are already connected as “%(reference)s”. Re-connect with "
            "that reference."
        )
        raise ValidationError({"reference": message % {"reference": other.reference}})


def _connect_error(err: OAuthError, data: ConnectInput) -> ConnectError:
    field = form_field(err)
    message = err.message()
    if field == "code":
        url = authorize_url(data.portal, data.client_id)
        message = _("Bitrix24 refused the code (%(code)s).") % {"code": err.code}
        message += " " + str(CODE_HINT).format(authorize_url=url)
    return ConnectError(message, field)


@sensitive_variables()
def _store_connection(
    data: ConnectInput, grant: TokenGrant, started: datetime, duration_ms: int
) -> Token:
    with transaction.atomic():
        return store_grant(
            _app_for(data),
            grant,
            data.portal,
            reference=data.reference,
            owner_id=data.owner_id,
            started=started,
            duration_ms=duration_ms,
        )


@sensitive_variables()
def _app_for(data: ConnectInput) -> AppCredentials:
    """The app row: created if new; its secret and scope updated only if this connect may."""
    typed = {"client_secret": data.client_secret, "scope": data.scope}
    new = {**typed, "name": data.app_name or data.client_id}
    if data.may_change_app:
        app, _created = AppCredentials.objects.update_or_create(
            client_id=data.client_id, defaults=typed, create_defaults=new
        )
    else:  # checked unchanged before the exchange (guards.app_unchanged)
        app, _created = AppCredentials.objects.get_or_create(client_id=data.client_id, defaults=new)
    return app


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
