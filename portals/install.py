"""Install and app events from Bitrix24 (docs/bitrix24-protocol.md §6, §7): the install frame
and `ONAPPINSTALL` (POST /bitrix/<client_id>/install/), and `ONAPPINSTALL`, `ONAPPUPDATE`,
`ONAPPUNINSTALL` at the event handler (POST /bitrix/<client_id>/events/).

- An install is the first contact from a portal, so nothing stored can vouch for it: it is
  trusted only after `app.info` at the payload's server_endpoint (one of BITRIX_AUTH_SERVERS)
  says the access token is live and belongs to this client_id, member_id and domain.
- Later events are authenticated by the install's `application_token`, compared in constant
  time with the one stored for that portal and app.
- A portal is keyed by member_id: an event whose auth[domain] changed renames it.

Every refusal raises EventRefused with an HTTP status and a reason for the log; the reason
never holds a secret.
"""

import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest, QueryDict
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from portals import connect, lifecycle
from portals.errors import ConfigurationError, OAuthError, PermanentOAuthError, advice_for
from portals.models import AppCredentials, RefreshAttempt, Token
from portals.oauth import AppInfo, BitrixOAuthClient, TokenGrant
from portals.validation import normalize_portal_address

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


class EventRefused(Exception):
    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, repr=False)
class Payload:
    event: str
    auth: dict[str, str]
    data: dict[str, str]

    def __repr__(self) -> str:  # auth holds tokens: keep them out of tracebacks
        return f"Payload(event={self.event!r}, member_id={self.auth.get('member_id')!r})"


def parse(request: HttpRequest) -> Payload:
    """The form Bitrix24 posts, with its bracketed keys (§6.2), or the install frame's."""
    if request.content_type not in FORM_TYPES:
        raise EventRefused(f"body is {request.content_type or 'empty'}, not a form", 400)
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
        raise EventRefused("the form has neither event nor AUTH_ID", 400)
    if not payload.auth.get("member_id") or not payload.auth.get("domain"):
        raise EventRefused("the form lacks auth[member_id] or auth[domain]", 400)
    return payload


def _bracketed(form: QueryDict, prefix: str) -> dict[str, str]:
    start = f"{prefix}["
    return {
        key[len(start) : -1]: str(value)
        for key, value in form.items()
        if key.startswith(start) and key.endswith("]")
    }


def handle(app: AppCredentials, payload: Payload) -> Token | None:
    """Act on one accepted payload; None for events b24keeper does not use."""
    if payload.event in INSTALL_EVENTS:
        return install(app, payload)
    token = authenticate(app, payload)
    if payload.event == "ONAPPUPDATE":
        return update(token, payload)
    if payload.event == "ONAPPUNINSTALL":
        return uninstall(token, payload)
    log.info("event %s for %s: accepted, nothing to do", payload.event, token)
    return None


# --- Install ----------------------------------------------------------------------------------
@sensitive_variables()
def install(app: AppCredentials, payload: Payload) -> Token:
    grant, domain = _grant(payload), _domain(payload)
    started, began = timezone.now(), time.monotonic()
    info = _verify(app, grant, domain)
    token = connect.store_grant(
        app,
        grant,
        domain,
        started=started,
        duration_ms=int((time.monotonic() - began) * 1000),
        application_token=payload.auth.get("application_token", ""),
        kind=RefreshAttempt.Kind.EVENT,
    )
    if info.scope:
        lifecycle.record_scope(token.pk, info.scope)
    log.info("install on %s (member %s) stored as token %s", domain, grant.member_id, token)
    return token


@sensitive_variables()
def _verify(app: AppCredentials, grant: TokenGrant, domain: str) -> AppInfo:
    """One app.info call at the payload's server_endpoint: the only proof of an install."""
    try:
        connect.check_answer(grant)
        info = BitrixOAuthClient(server=grant.server_endpoint).app_info(grant.access_token)
    except ConfigurationError:
        raise EventRefused("server_endpoint is not one of BITRIX_AUTH_SERVERS") from None
    except OAuthError as err:
        raise EventRefused(f"app.info refused the token ({err.code})") from None
    claimed = (app.client_id, grant.member_id, domain)
    if (info.client_id, info.member_id, info.domain) != claimed:
        raise EventRefused(
            f"app.info says the token belongs to {info.client_id} / {info.member_id} / "
            f"{info.domain}, not to {' / '.join(claimed)}"
        )
    return info


# --- Later events -------------------------------------------------------------------------------
@sensitive_variables()
def authenticate(app: AppCredentials, payload: Payload) -> Token:
    """The token of this app on the payload's portal, if its application_token matches."""
    member_id = payload.auth.get("member_id", "")
    token = (
        Token.objects.select_related("portal", "app")
        .filter(app=app, portal__member_id=member_id)
        .first()
    )
    if token is None:
        raise EventRefused(f"unknown member_id {member_id[:32]!r}")
    given = payload.auth.get("application_token", "").encode()
    stored = (token.application_token or "").encode()
    if not given or not stored or not hmac.compare_digest(given, stored):
        raise EventRefused(f"application_token does not match the one stored for {token}")
    domain = _domain(payload)
    if domain != token.portal.domain:
        connect.rename_portal(token.portal, domain)
        token.portal.save()
    return token


@sensitive_variables()
def update(token: Token, payload: Payload) -> Token:
    """ONAPPUPDATE: the new version's pair (and application_token, if it brings one)."""
    grant = _grant(payload)
    try:
        connect.check_answer(grant)
    except ConfigurationError:
        raise EventRefused("server_endpoint is not one of BITRIX_AUTH_SERVERS") from None
    token = connect.store_grant(
        token.app,
        grant,
        token.portal.domain,
        token=token,
        started=timezone.now(),
        duration_ms=0,
        application_token=payload.auth.get("application_token", ""),
        kind=RefreshAttempt.Kind.EVENT,
    )
    connect.check_scope(token)
    return token


def uninstall(token: Token, payload: Payload) -> Token:
    """ONAPPUNINSTALL: the token is dead. One notice; secrets wiped if data[CLEAN]=1."""
    error = PermanentOAuthError(
        "app_uninstalled",
        f"ONAPPUNINSTALL: the app was removed from {token.portal.domain}",
        str(advice_for("not_installed") or ""),
    )
    lifecycle.mark_uninstalled(token, error, clean=payload.data.get("CLEAN") == "1")
    log.warning("token %s: the app was uninstalled from %s", token, token.portal.domain)
    return token


# --- Reading the payload -------------------------------------------------------------------------
def _domain(payload: Payload) -> str:
    try:
        return normalize_portal_address(payload.auth.get("domain", ""))
    except ValidationError:
        raise EventRefused("auth[domain] is not a portal address", 400) from None


@sensitive_variables()
def _grant(payload: Payload) -> TokenGrant:
    auth = payload.auth
    if not auth.get("access_token") or not auth.get("refresh_token"):
        raise EventRefused("the form carries no token pair", 400)
    try:
        expires = int(auth.get("expires") or time.time() + int(auth.get("expires_in") or 3600))
        expires_at = datetime.fromtimestamp(expires, tz=UTC)
        user_id = int(auth["user_id"]) if auth.get("user_id", "").isdigit() else None
    except (ValueError, OverflowError, OSError):
        raise EventRefused("auth[expires] is not a number", 400) from None
    return TokenGrant(
        access_token=auth["access_token"],
        refresh_token=auth["refresh_token"],
        expires_at=expires_at,
        scope=auth.get("scope", ""),
        server_endpoint=auth.get("server_endpoint", ""),
        client_endpoint=auth.get("client_endpoint", ""),
        member_id=auth.get("member_id", "")[:32],
        user_id=user_id,
        domain=auth.get("domain", ""),
    )
