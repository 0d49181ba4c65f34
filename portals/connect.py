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

from portals import escalation, schedule
from portals.errors import OAuthError
from portals.models import AppCredentials, Portal, RefreshAttempt, Token, TokenStatus
from portals.oauth import BitrixOAuthClient, TokenGrant, auth_server_from_endpoint
from portals.validation import normalize_portal_address, normalize_scope, validate_client_id

log = logging.getLogger(__name__)

# Which form field a token-endpoint error points at.
ERROR_FIELDS = {
    "invalid_grant": "code",
    "expired_token": "code",
    "wrong_client": "client_id",
    "invalid_client": "client_secret",
}
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
    return BitrixOAuthClient().authorize_url(normalize_portal_address(portal), client_id)


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
    except OAuthError as err:
        log.info("connect %s/%s refused: %s", data.portal, data.client_id, err.code)
        raise _connect_error(err, data) from None
    return _store_connection(data, grant, started, int((time.monotonic() - began) * 1000))


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
    field = ERROR_FIELDS.get(err.code.lower())
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
    token = Token.objects.filter(portal=portal, app=app).first() or Token(portal=portal, app=app)
    now = timezone.now()
    token.reference = data.reference
    token.owner_id = data.owner_id or token.owner_id
    token.access_token, token.refresh_token = grant.access_token, grant.refresh_token
    token.expires_at, token.scope = grant.expires_at, data.scope
    token.server_endpoint, token.client_endpoint = grant.server_endpoint, grant.client_endpoint
    token.user_id, token.status = grant.user_id, TokenStatus.ACTIVE
    token.version, token.last_refreshed_at = token.version + 1, now
    token.failure_count, token.last_error_code, token.last_error = 0, "", ""
    token.failing_since = token.refresh_started_at = token.claimed_until = None
    token.next_refresh_at = schedule.next_refresh_after_success(app, grant.expires_at, now)
    token.save()
    RefreshAttempt.objects.create(
        token=token,
        kind=RefreshAttempt.Kind.CODE_EXCHANGE,
        outcome=RefreshAttempt.Outcome.SUCCESS,
        started_at=started,
        finished_at=now,
        duration_ms=duration_ms,
    )
    escalation.on_recovery(token)
    return token


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
