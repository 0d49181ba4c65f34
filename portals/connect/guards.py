"""What a connect with a code ("Add task", `manage.py connect_portal`) checks about who connects
and which portal answered; portals.connect.code calls these and raises.

- Before the code is spent: without the right to change app credentials, a stored app is used
  as it is (`app_unchanged`).
- After the exchange, before anything is stored: the code must come from the portal typed
  (`mismatch`). Another member_id than the typed portal's is decided as for the Connect button
  (portals.connect.states.other_portal); a code from another address, typed for a portal not stored
  with the grant's member_id, would file the grant under the wrong address (or move the
  portal that answered to it).
"""

import logging
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_variables

from encryption.crypto import DecryptionError
from portals.bitrix.identifiers import normalize_portal_address
from portals.bitrix.oauth import TokenGrant
from portals.connect import states
from portals.models import AppCredentials, Portal, Token

log = logging.getLogger(__name__)
SEE_APP_PAGE = gettext_lazy(
    "An app's client_secret and scope are changed on its page under App credentials, by "
    "someone with the permission to change app credentials."
)


@sensitive_variables()
def app_unchanged(client_id: str, client_secret: str, scope: str) -> None:
    """ValidationError naming the client_secret and/or scope that differ from the stored
    app's; nothing if the app is new or the same."""
    app = AppCredentials.objects.defer("client_secret").filter(client_id=client_id).first()
    if app is None:
        return  # a new app: anyone who may connect creates it
    errors: dict[str, list[str]] = {}
    if not _is_stored_secret(app, client_secret):
        text = _("This is not the client_secret stored for %(client_id)s: type the stored one.")
        errors["client_secret"] = [f"{text % {'client_id': client_id}} {SEE_APP_PAGE}"]
    if _scope_codes(app.scope) != _scope_codes(scope):
        text = _("%(client_id)s is stored with the scope %(scope)s: enter that scope.")
        errors["scope"] = [f"{text % {'client_id': client_id, 'scope': app.scope}} {SEE_APP_PAGE}"]
    if errors:
        log.info("connect %r refused: typed credentials differ from the app's", client_id)
        raise ValidationError(errors)


@sensitive_variables()
def _is_stored_secret(app: AppCredentials, secret: str) -> bool:
    try:
        stored = app.client_secret
    except DecryptionError:
        return False  # unreadable with today's keys: only someone who may change it can
    return constant_time_compare(stored, secret)


def _scope_codes(scope: str) -> set[str]:
    return {code for code in re.split(r"[,\s]+", scope.lower()) if code}


@dataclass(frozen=True)
class Mismatch:
    """The code came from another portal than the one typed. `token`: the typed portal's
    token for this app, which staff may confirm the pair for (None: nothing can wait)."""

    message: str
    field: str
    domain: str
    token: Token | None


def mismatch(typed_domain: str, client_id: str, grant: TokenGrant) -> Mismatch | None:
    typed = Portal.objects.filter(domain=typed_domain).first()
    domain = answering_domain(grant, typed_domain)
    if typed is not None and states.other_portal(typed, grant):
        log.warning("connect %s/%s: the code came from member %r at %s", typed_domain,
                    client_id, grant.member_id, domain)  # fmt: skip
        token = Token.objects.filter(portal=typed, app__client_id=client_id).first()
        return Mismatch(_other_member(typed, grant, domain, token), "code", domain, token)
    known = typed is not None and bool(typed.member_id)  # then the same member: a rename
    if domain != typed_domain and not known:
        log.warning("connect %r/%r: the code came from %r", typed_domain, client_id, domain)
        message = _(
            "This code came from %(domain)s, not from %(typed)s. Nothing was stored. Enter "
            "%(domain)s as the portal, or open the authorize URL of %(typed)s and use the code "
            "it shows."
        )
        return Mismatch(message % {"domain": domain, "typed": typed_domain}, "portal", domain, None)
    return None


def _other_member(typed: Portal, grant: TokenGrant, domain: str, token: Token | None) -> str:
    message = _(
        "This code came from %(domain)s (member_id %(member_id)s), but %(typed)s is member_id "
        "%(typed_member)s: another portal, or %(typed)s deleted and created again. Nothing was "
        "stored. To connect %(typed)s, open its authorize URL and use the code it shows."
    )
    if token is not None:
        message += " " + _(
            "To move its token “%(reference)s” to %(domain)s, use Add task in the admin: it "
            "asks you to confirm."
        )
    values = {
        "domain": domain,
        "member_id": grant.member_id,
        "typed": typed.domain,
        "typed_member": typed.member_id,
        "reference": token.reference if token else "",
    }
    return message % values


def answering_domain(grant: TokenGrant, fallback: str) -> str:
    """The portal a grant belongs to: the host of the REST root the authorization server
    named (docs/bitrix24-protocol.md §2), else `fallback`."""
    try:
        return normalize_portal_address(grant.client_endpoint or fallback)
    except ValidationError:
        return fallback
