"""Install and app events from Bitrix24 (docs/bitrix24-protocol.md §6): the install frame and
`ONAPPINSTALL` (POST /bitrix/<client_id>/install/), and `ONAPPINSTALL`, `ONAPPUPDATE`,
`ONAPPUNINSTALL` and any other event at the event handler (POST /bitrix/<client_id>/events/).

- A pair (install, frame, update) is applied only when portals.connect.pair_proof proves it
  (app.info, then user.admin: only a portal administrator installs or updates) and it is newer
  than the stored one. The domain and REST root stored come from app.info, never from the payload.
- Only a verified install sets the application_token, and only it may move a portal to a new
  address (portals.addresses); an update keeps the stored domain. Events never rename.
- Other events are authenticated by the install's application_token, compared in constant time
  with the stored one (an ONAPPUPDATE too, when one is stored). ONAPPUNINSTALL of a token
  connected by code, which has none, is checked by one refresh (portals.connect.uninstall).
- An event that is authenticated but whose pair is stale or unproved is ignored: 200, logged.

Every refusal raises EventRefused. Its `reason` is for the server log only (values from the
request as %r); the caller answers one refusal for every unauthenticated event, whatever the
reason, so nobody learns which portals are connected. `message` is what the install frame's
page says.
"""

import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest, QueryDict
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from portals.bitrix.identifiers import normalize_portal_address
from portals.bitrix.oauth import TokenGrant
from portals.connect import grants, pair_proof, uninstall
from portals.models import AppCredentials, RefreshAttempt, Token
from portals.tokens import state

log = logging.getLogger(__name__)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
FRAME = "FRAME"  # the install frame's POST (§6.1), which names no event
INSTALL_EVENTS = ("ONAPPINSTALL", FRAME)
# The frame's own field names for what events carry in auth[...] (§6.1).
FRAME_FIELDS = {
    "access_token": "AUTH_ID",
    "refresh_token": "REFRESH_ID",
    "expires_in": "AUTH_EXPIRES",
    "server_endpoint": "SERVER_ENDPOINT",
    "application_token": "APPLICATION_TOKEN",
    "scope": "APPLICATION_SCOPE",
    "member_id": "member_id",
    "status": "status",
}
NOT_CONFIRMED = _(
    "b24keeper could not confirm this installation with Bitrix24, so nothing was stored. Open "
    "the application from the portal again; if this persists, ask the b24keeper "
    "administrators to look at its log."
)
NOT_ADMIN = _(
    "Only an administrator of the portal can install or update this application. Nothing was "
    "stored: ask a portal administrator to open the application once."
)
ADDRESS_TAKEN = _(
    "Another portal connected to b24keeper still holds this portal's address, so nothing was "
    "stored. Ask the b24keeper administrators to check both portals."
)
BAD_FORM = _(
    "The installation request was incomplete, so nothing was stored. Open the application "
    "from the portal again."
)


class EventRefused(Exception):
    def __init__(self, reason: str, status: int = 403, message: str | Promise = NOT_CONFIRMED):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message


@dataclass(frozen=True, repr=False)
class Payload:
    event: str
    auth: dict[str, str]
    data: dict[str, str]

    def __repr__(self) -> str:  # auth holds tokens: keep them out of tracebacks
        return f"Payload(event={self.event!r}, member_id={self.auth.get('member_id')!r})"


@dataclass(frozen=True)
class Outcome:
    event: str
    result: str  # "installed", "accepted" or "ignored" (stale or unproved pair, nothing changed)


def parse(request: HttpRequest) -> Payload:
    """The form Bitrix24 posts, with its bracketed keys (§6.2), or the install frame's."""
    if request.content_type not in FORM_TYPES:
        raise EventRefused(
            f"body is {request.content_type or 'empty'!r}, not a form", 400, BAD_FORM
        )
    form = request.POST
    if form.get("event"):
        payload = Payload(
            str(form["event"]).upper(), _bracketed(form, "auth"), _bracketed(form, "data")
        )
    elif form.get("AUTH_ID"):
        auth = {name: form.get(key, "") for name, key in FRAME_FIELDS.items()}
        auth["domain"] = request.GET.get("DOMAIN", "")
        payload = Payload(FRAME, auth, {})
    else:
        raise EventRefused("the form has neither event nor AUTH_ID", 400, BAD_FORM)
    if not payload.auth.get("member_id") or not payload.auth.get("domain"):
        raise EventRefused("the form lacks auth[member_id] or auth[domain]", 400, BAD_FORM)
    return payload


def _bracketed(form: QueryDict, prefix: str) -> dict[str, str]:
    start = f"{prefix}["
    return {
        key[len(start) : -1]: str(value)
        for key, value in form.items()
        if key.startswith(start) and key.endswith("]")
    }


def handle(app: AppCredentials, payload: Payload) -> Outcome:
    """Act on one payload, or raise EventRefused."""
    if payload.event in INSTALL_EVENTS:
        return install(app, payload)
    token = _token_of(app, payload)
    if payload.event == "ONAPPUPDATE":
        return update(token, payload)
    if payload.event == "ONAPPUNINSTALL" and not token.application_token:
        uninstall.check_by_refresh(token)
        raise EventRefused(f"ONAPPUNINSTALL for {token}, which has no application_token stored")
    _require_application_token(token, payload)
    if payload.event == "ONAPPUNINSTALL":
        uninstall.mark(token, clean=payload.data.get("CLEAN") == "1")
    else:
        log.info("event %r for %s: accepted, nothing to do", payload.event, token)
    return Outcome(payload.event, "accepted")


# --- Pairs: install, frame, update -------------------------------------------------------------
@sensitive_variables()
def install(app: AppCredentials, payload: Payload) -> Outcome:
    grant = _grant(payload)
    stored = _stored(app, grant.member_id)
    try:
        proof = pair_proof.prove(app.client_id, grant, _domain(payload))
    except pair_proof.NotProved as err:
        return _unproved(stored, payload, err)
    token = _apply(app, proof, payload, application_token=payload.auth.get("application_token"))
    if token is None:
        return Outcome(payload.event, "ignored")
    log.info("install on %s (member %s) stored as token %s", token.portal.domain,
             proof.info.member_id, token)  # fmt: skip
    return Outcome(payload.event, "installed")


@sensitive_variables()
def update(token: Token, payload: Payload) -> Outcome:
    """ONAPPUPDATE: the new version's pair, proved like an install's; the portal keeps its
    address and the application_token stays the install's."""
    if token.application_token:
        _require_application_token(token, payload)
    try:
        proof = pair_proof.prove(token.app.client_id, _grant(payload), token.portal.domain)
    except pair_proof.NotProved as err:
        return _unproved(token, payload, err)
    stored = _apply(token.app, proof, payload, token=token)
    return Outcome(payload.event, "accepted" if stored else "ignored")


@sensitive_variables()
def _apply(
    app: AppCredentials,
    proof: pair_proof.Proof,
    payload: Payload,
    *,
    token: Token | None = None,
    application_token: str | None = None,
) -> Token | None:
    """Store the proved pair if it is newer than the stored one; None when it is not."""
    began, started = time.monotonic(), timezone.now()
    domain = token.portal.domain if token is not None else proof.grant.domain
    try:
        stored = grants.store_grant(
            app, proof.grant, domain, token=token, started=started,
            duration_ms=int((time.monotonic() - began) * 1000),
            application_token=application_token or None, kind=RefreshAttempt.Kind.EVENT,
            address_confirmed=True, only_if_newer=True,
        )  # fmt: skip
    except grants.StalePair:
        log.info("%s for %s: the pair is not newer than the stored one; ignored",
                 payload.event, domain)  # fmt: skip
        return None
    except grants.ConnectError:
        # portals.addresses logged the two portals; the poster learns no more than this.
        reason = f"{domain!r} is held by another live portal"
        raise EventRefused(reason, 409, ADDRESS_TAKEN) from None
    if proof.info.scope:
        state.record_scope(stored.pk, proof.info.scope)
    return stored


def _unproved(token: Token | None, payload: Payload, err: pair_proof.NotProved) -> Outcome:
    """A pair that did not prove itself: refused, unless the event is authenticated by the
    stored application_token (a replay, an update racing a refresh), which is ignored."""
    if err.not_admin:
        raise EventRefused(err.reason, 403, NOT_ADMIN)
    if token is None or not _application_token_matches(token, payload):
        raise EventRefused(err.reason)
    log.info("%s for %s: pair not applied (%s); ignored", payload.event, token, err.reason)
    return Outcome(payload.event, "ignored")


# --- Authentication ------------------------------------------------------------------------------
def _token_of(app: AppCredentials, payload: Payload) -> Token:
    token = _stored(app, payload.auth.get("member_id", ""))
    if token is None:
        raise EventRefused(f"unknown member_id {payload.auth.get('member_id', '')[:40]!r}")
    return token


def _stored(app: AppCredentials, member_id: str) -> Token | None:
    tokens = Token.objects.select_related("portal", "app")
    return tokens.filter(app=app, portal__member_id=member_id).first() if member_id else None


@sensitive_variables()
def _application_token_matches(token: Token, payload: Payload) -> bool:
    given = payload.auth.get("application_token", "").encode()
    stored = (token.application_token or "").encode()
    return bool(given and stored) and hmac.compare_digest(given, stored)


def _require_application_token(token: Token, payload: Payload) -> None:
    if not _application_token_matches(token, payload):
        raise EventRefused(f"application_token does not match the one stored for {token}")


# --- Reading the payload -------------------------------------------------------------------------
def _domain(payload: Payload) -> str:
    try:
        return normalize_portal_address(payload.auth.get("domain", ""))
    except ValidationError:
        raise EventRefused("auth[domain] is not a portal address", 400, BAD_FORM) from None


@sensitive_variables()
def _grant(payload: Payload) -> TokenGrant:
    auth = payload.auth
    if not auth.get("access_token") or not auth.get("refresh_token"):
        raise EventRefused("the form carries no token pair", 400, BAD_FORM)
    # Unknown (an old-format token, or auth[expires] contradicting the token): due at once,
    # and never newer than a stored pair.
    expires = pair_proof.pair_expiry(auth.get("expires", ""), auth["access_token"])
    try:
        expires_at = datetime.fromtimestamp(expires, tz=UTC) if expires else timezone.now()
    except (ValueError, OverflowError, OSError):
        raise EventRefused("auth[expires] is not a usable time", 400, BAD_FORM) from None
    user_id = auth.get("user_id", "")
    return TokenGrant(
        access_token=auth["access_token"],
        refresh_token=auth["refresh_token"],
        expires_at=expires_at,
        scope=auth.get("scope", ""),
        server_endpoint=auth.get("server_endpoint", ""),
        client_endpoint="",  # app.info's, once proved
        member_id=auth.get("member_id", "")[:32],
        user_id=int(user_id) if user_id.isdigit() and len(user_id) < 10 else None,
        domain=auth.get("domain", ""),
    )
