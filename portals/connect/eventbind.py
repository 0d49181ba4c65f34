"""Binding the uninstall and update handlers (docs/bitrix24-protocol.md §6.4).

Bitrix24 posts ONAPPUNINSTALL only to a handler the app bound beforehand with `event.bind`, and
drops an app's handlers when it is updated; so after every connect, and after every accepted
ONAPPUPDATE, b24keeper binds ONAPPUNINSTALL and ONAPPUPDATE to SITE_URL/bitrix/<client_id>/events/
through the REST client (portals.rest), asking `event.get` first and binding only what is
missing. A daily check (the task portals.tasks.check_event_bindings) does the same for every
connected token, since ONAPPUPDATE may never arrive. BITRIX_BIND_EVENTS=false turns all of it off
(the operator binds the handlers).

Who calls: portals.connect.grants.store_grant registers `after_connect` to run once the pair is
committed; the daily task calls `check_all`. A failed bind never fails anything: it is recorded
on the token (`events_bind_error`), whose admin page says "uninstall events not bound". Nothing is
bound when SITE_URL cannot receive the events (not https, unless BITRIX_ALLOW_HTTP is on for
tests and local fakes; or a local address a portal elsewhere cannot reach): the page then says
"uninstall events cannot arrive".
"""

import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _

from portals.bitrix.errors import OAuthError
from portals.models import REFRESHABLE_STATUSES, Token, TokenStatus
from portals.rest import Bitrix24
from portals.tokens import TokenError, state

log = logging.getLogger(__name__)
EVENTS = ("ONAPPUNINSTALL", "ONAPPUPDATE")
# Tokens that have no events to receive: never connected, or already removed from the portal.
WITHOUT_EVENTS = (TokenStatus.AWAITING_CODE, TokenStatus.UNINSTALLED)
ERROR_MAX = 500
# Seconds each binding call may take: it runs in the request of an install or a connect, and a
# slow portal must not hold that page for BITRIX_REST_DEADLINE (the daily check tries again).
BIND_DEADLINE = 10.0


@dataclass(frozen=True)
class Notice:
    """What the token's admin page says about its uninstall events."""

    kind: str  # "cannot_arrive" or "not_bound"
    text: str


def handler_url(client_id: str) -> str:
    return settings.SITE_URL + reverse("bitrix_events", args=[client_id])


def unreachable_because(portal_domain: str) -> str | None:
    """Why Bitrix24 cannot post this portal's events to SITE_URL, or None if it can."""
    site = urlsplit(settings.SITE_URL)
    if site.scheme != "https" and not (site.scheme == "http" and settings.BITRIX_ALLOW_HTTP):
        return _(
            "SITE_URL (%(url)s) is not an https:// address, and Bitrix24 calls only those."
        ) % {"url": settings.SITE_URL or "—"}
    if not site.hostname:
        return _("SITE_URL is not set.")
    portal_host = urlsplit(f"//{portal_domain}").hostname or ""
    if _is_local(site.hostname) and not _is_local(portal_host):
        return _("SITE_URL (%(url)s) is a local address; a portal elsewhere cannot reach it.") % {
            "url": settings.SITE_URL
        }
    return None


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def after_connect(token_id: int) -> None:
    """Run once a connect is committed; never raises (the connect stands whatever happens)."""
    try:
        ensure(token_id)
    except Exception:  # a bug here must not turn a stored connect into an error page
        log.exception("token %s: binding the uninstall handler failed unexpectedly", token_id)


def ensure(token_id: int) -> bool:
    """Bind what is missing of EVENTS for the token's app and portal; True when all are bound.
    The outcome is recorded on the token (bound at, or the error)."""
    token = Token.objects.select_related("portal", "app").filter(pk=token_id).first()
    if token is None or token.status in WITHOUT_EVENTS or not settings.BITRIX_BIND_EVENTS:
        return False
    if unreachable_because(token.portal.domain):
        return False
    url = handler_url(token.app.client_id)
    try:
        b24 = Bitrix24(token.reference, deadline=min(BIND_DEADLINE, settings.BITRIX_REST_DEADLINE))
        bound = b24.call("event.get")
        have = {
            (str(h.get("event", "")).upper(), h.get("handler"))
            for h in (bound if isinstance(bound, list) else [])
            if isinstance(h, dict)
        }
        missing = [event for event in EVENTS if (event, url) not in have]
        for event in missing:
            b24.call("event.bind", {"event": event, "handler": url})
    except (OAuthError, TokenError) as err:
        reason = _reason(err)
        log.warning("token %s: uninstall handler not bound: %s", token, reason)
        state.record_binding(token_id, reason[:ERROR_MAX])
        return False
    state.record_binding(token_id)
    if missing:
        log.info("token %s: bound %s to %s", token, ", ".join(missing), url)
    return True


def _reason(err: OAuthError | TokenError) -> str:
    if isinstance(err, OAuthError):
        return f"{err.code}: {err.description}" if err.description else err.code
    return f"{type(err).__name__}: {err}"


def check_all() -> int:
    """The daily check: re-bind for every token that can receive events; how many are bound."""
    ids = Token.objects.filter(status__in=REFRESHABLE_STATUSES).values_list("pk", flat=True)
    return sum(ensure(token_id) for token_id in ids)


def notice(token: Token) -> Notice | None:
    """For the token's admin page: None when its uninstall events are bound (or moot)."""
    if token.status in WITHOUT_EVENTS:
        return None
    reason = unreachable_because(token.portal.domain)
    if reason:
        return Notice("cannot_arrive", reason)
    if not settings.BITRIX_BIND_EVENTS:
        text = _("BITRIX_BIND_EVENTS is off: bind ONAPPUNINSTALL to %(url)s yourself.")
        return Notice("not_bound", text % {"url": handler_url(token.app.client_id)})
    if token.events_bind_error:
        return Notice("not_bound", token.events_bind_error)
    if token.events_bound_at is None:
        return Notice("not_bound", _("not tried yet; the daily check binds them."))
    return None
