"""Connecting a portal: check the input, exchange the 30-second code, store everything at once.

Used by the admin "Add task" form and `manage.py connect_portal`. Every check that needs no
network runs before the code is spent; the rows are written in one transaction only after
Bitrix24 has answered, so a failure leaves nothing half-saved.
"""

import logging
import time
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from portals import authservers, oauth, service
from portals.errors import ConfigurationError, OAuthError, form_field
from portals.models import AppCredentials, Portal, Token
from portals.oauth import BitrixOAuthClient, TokenGrant, auth_server_from_endpoint
from portals.validation import normalize_portal_address, normalize_scope, validate_client_id

log = logging.getLogger(__name__)
CODE_HINT = (
    "Codes live 30 seconds and work once. Open {authorize_url} again and submit the new code "
    "at once."
)


class ConnectError(Exception):
    """Connecting failed; `field` names the input to fix (None: not one field's fault)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
        "client_secret": lambda v: _required(v, "the client_secret from the app's card"),
        "code": lambda v: _required(v, "the code shown after opening the authorize URL"),
    }
    for field, check in checks.items():
        try:
            cleaned[field] = check(getattr(data, field))
        except ValidationError as err:
            errors[field] = err.messages
    if errors:
        raise ValidationError(errors)
    return ConnectInput(app_name=data.app_name.strip(), owner_id=data.owner_id, **cleaned)


def _required(value: str, what: str) -> str:
    if not (value or "").strip():
        raise ValidationError(f"This field is required: enter {what}.")
    return value.strip()


def _clean_reference(value: str) -> str:
    reference = (value or "token").strip()
    try:
        validate_slug(reference)
    except ValidationError:
        raise ValidationError(
            "Use letters, digits, hyphens or underscores only, e.g. token or acme-crm."
        ) from None
    return reference


def authorize_url(portal: str, client_id: str) -> str:
    return oauth.authorize_url(normalize_portal_address(portal), client_id)


@sensitive_variables()
def connect_portal(data: ConnectInput) -> Token:
    """Exchange the code and store portal, app credentials and token. Raises ValidationError
    (bad input, nothing sent) or ConnectError (Bitrix24 refused, nothing stored)."""
    data = clean_input(data)
    _check_reference_is_free(data)
    started, began = timezone.now(), time.monotonic()
    server = _known_auth_server(data.portal)
    try:
        grant = BitrixOAuthClient(server=server).exchange_code(
            data.client_id, data.client_secret, data.code
        )
        _check_answer(grant)
    except OAuthError as err:
        log.info("connect %s/%s refused: %s", data.portal, data.client_id, err.code)
        raise _connect_error(err, data) from None
    except ConfigurationError as err:
        log.warning("connect %s/%s: %s", data.portal, data.client_id, err)
        raise ConnectError(str(err)) from None
    return _store_connection(data, grant, started, int((time.monotonic() - began) * 1000))


def _check_answer(grant: TokenGrant) -> None:
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
        raise ValidationError(
            {
                "reference": f"“{data.reference}” already names the token of "
                f"{taken.portal.domain} / {taken.app.client_id}. Choose another reference, "
                "or re-connect that portal with its own client_id."
            }
        )
    existing = Token.objects.filter(
        portal__domain=data.portal, app__client_id=data.client_id
    ).exclude(reference=data.reference)
    if other := existing.first():
        raise ValidationError(
            {
                "reference": f"This portal and app are already connected as “{other.reference}”."
                " Re-connect with that reference."
            }
        )


def _connect_error(err: OAuthError, data: ConnectInput) -> ConnectError:
    field = form_field(err)
    message = err.message()
    if field == "code":
        url = authorize_url(data.portal, data.client_id)
        message = f"Bitrix24 refused the code ({err.code}). " + CODE_HINT.format(authorize_url=url)
    return ConnectError(message, field)


@sensitive_variables()
@transaction.atomic
def _store_connection(data: ConnectInput, grant: TokenGrant, started, duration_ms) -> Token:
    portal = _upsert_portal(data.portal, grant)
    app, _ = AppCredentials.objects.update_or_create(
        client_id=data.client_id,
        defaults={"client_secret": data.client_secret, "scope": data.scope},
        create_defaults={
            "client_secret": data.client_secret,
            "scope": data.scope,
            "name": data.app_name or data.client_id,
        },
    )
    # Locked: a refresh storing meanwhile must not interleave with the new chain's pair.
    existing = Token.objects.select_for_update().filter(portal=portal, app=app).first()
    token = existing or Token(portal=portal, app=app)
    token.reference = data.reference
    token.owner_id = data.owner_id or token.owner_id
    return service.store_connection(
        token, grant, scope=data.scope, started=started, duration_ms=duration_ms
    )


def _upsert_portal(domain: str, grant: TokenGrant) -> Portal:
    """Find the portal by its permanent member_id first (the domain may have changed)."""
    portal = None
    if grant.member_id:
        portal = Portal.objects.filter(member_id=grant.member_id).first()
    portal = portal or Portal.objects.filter(domain=domain).first() or Portal(domain=domain)
    portal.domain = domain
    portal.member_id = grant.member_id or portal.member_id
    portal.auth_server = auth_server_from_endpoint(grant.server_endpoint) or portal.auth_server
    portal.save()
    return portal
