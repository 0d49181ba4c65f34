"""Connecting a portal with a code: "Add task" in the admin and `manage.py connect_portal`.
Check the input, exchange the 30-second code, store everything at once (portals.connect.grants).
Every check that needs no network runs before the code is spent; the rows are written in one
transaction only after Bitrix24 has answered, so a failure leaves nothing half-saved.

Who connects is passed in, never read from a request: `ConnectInput.may_change_app` says
whether this connect may change a stored app's client_secret and scope (README "Who may do
what"). A code from another portal than the one typed raises OtherPortal and stores nothing
(portals.connect.guards); the admin then holds the pair for staff to confirm.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_variables

from portals.bitrix import oauth
from portals.bitrix.errors import ConfigurationError, OAuthError, form_field
from portals.bitrix.identifiers import normalize_portal_address, normalize_scope, validate_client_id
from portals.bitrix.oauth import BitrixOAuthClient, TokenGrant
from portals.connect import guards
from portals.connect.grants import ConnectError, check_answer, check_scope, store_grant
from portals.models import AppCredentials, Portal, Token

log = logging.getLogger(__name__)

CODE_HINT = gettext_lazy(
    "Codes live 30 seconds and work once. Open {authorize_url} again and submit the new code "
    "at once."
)


class OtherPortal(ConnectError):
    """The code came from another portal than the one typed (portals.connect.guards): nothing
    is stored. With another member_id and a token of the typed portal for this app
    (`token`), the admin holds the pair for staff to confirm; `domain` is where it came from."""

    def __init__(self, found: guards.Mismatch, grant: TokenGrant) -> None:
        super().__init__(found.message, found.field)
        self.token, self.grant, self.domain = found.token, grant, found.domain


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
    message = err.explained().text()
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
