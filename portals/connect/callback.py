"""The OAuth callback (`GET /bitrix/<client_id>/callback/`, docs/bitrix24-protocol.md §1, §2):
match the answer to the connect staff started, exchange the code within this request (it lives
30 seconds), check that the portal that answered is the one they started from, and store the
token through portals.connect. Every refusal raises CallbackRefused with what to do next, and
stores nothing.

A re-connect answered by a portal with another member_id stores nothing yet either: the pair
waits (portals.connect.states.hold_pair) for staff to confirm or cancel.
"""

import logging
import time
from dataclasses import dataclass

from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from encryption.crypto import DecryptionError
from portals.bitrix import authservers
from portals.bitrix.errors import ConfigurationError, OAuthError, form_field
from portals.bitrix.identifiers import normalize_portal_address
from portals.bitrix.oauth import BitrixOAuthClient, TokenGrant
from portals.connect import grants, states
from portals.connect_models import ConnectState, PendingPair
from portals.models import Portal, Token

log = logging.getLogger(__name__)


class CallbackRefused(Exception):
    """The callback cannot be accepted; `status` is the HTTP status of the page."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Connected:
    token: Token
    missing_scopes: list[str]


@dataclass(frozen=True)
class Held:
    """A re-connect answered by another portal: the pair waits for staff to confirm."""

    pending: PendingPair


Outcome = Connected | Held


@dataclass(frozen=True)
class Answer:
    """The query Bitrix24 redirected with (§1)."""

    code: str
    state: str
    domain: str
    member_id: str
    server_domain: str

    @classmethod
    def from_query(cls, query: QueryDict) -> "Answer":
        values = {name: (query.get(name) or "").strip() for name in cls.__dataclass_fields__}
        return cls(**values)

    def __repr__(self) -> str:  # the code stays out of tracebacks
        return f"Answer(domain={self.domain!r}, member_id={self.member_id!r})"


@sensitive_variables()
def finish(query: QueryDict, client_id: str, session: SessionBase, user_id: int) -> Outcome:
    answer = Answer.from_query(query)
    try:
        state = states.consume(answer.state, session, user_id, client_id)
    except states.StateRefused as err:
        with translation.override("en"):  # logs are English, whoever's browser answered
            log.warning("callback for %r refused: %s", client_id, str(err.reason))
        raise CallbackRefused(str(err), err.status) from None
    domain = _answered_domain(answer, state)
    server = _auth_server(answer)
    if not answer.code:
        raise CallbackRefused(_("The answer from Bitrix24 carries no code. Press Connect again."))
    started, began = timezone.now(), time.monotonic()
    grant = _exchange(state, server, answer.code)
    duration_ms = int((time.monotonic() - began) * 1000)  # the exchange, as the audit log shows
    if answer.member_id and grant.member_id and answer.member_id != grant.member_id:
        log.warning("callback for %r refused: member_id differs from the grant", client_id)
        raise CallbackRefused(
            _(
                "The authorization server's answer belongs to another portal than the redirect "
                "named; nothing was stored. Press Connect again."
            )
        )
    token = state.token
    if token is not None and states.other_portal(token.portal, grant):
        pending = states.hold_pair(token, grant, domain, session, user_id)
        return Held(pending)
    stored = grants.store_grant(
        state.app,
        grant,
        domain,
        reference=state.reference,
        owner_id=user_id,
        token=token,
        started=started,
        duration_ms=duration_ms,
    )
    return Connected(stored, grants.check_scope(stored))


def _answered_domain(answer: Answer, state: ConnectState) -> str:
    """The portal that answered must be the one staff started from (same domain, or the same
    member_id under a new name); checked before the code is spent."""
    try:
        domain = normalize_portal_address(answer.domain)
    except ValidationError:
        raise CallbackRefused(_("The answer from Bitrix24 names no valid portal.")) from None
    started = state.token.portal if state.token else Portal(domain=state.portal_domain)
    if state.token is None:
        started = Portal.objects.filter(domain=state.portal_domain).first() or started
    renamed = bool(started.member_id) and answer.member_id == started.member_id
    if domain != started.domain and not renamed:
        log.warning("callback: %r answered a connect started for %r", domain, started.domain)
        message = _(
            "You started connecting %(started)s, but %(answered)s answered. Open the portal "
            "you mean (or log out of the other one in Bitrix24) and press Connect again."
        )
        raise CallbackRefused(message % {"started": started.domain, "answered": domain})
    return domain


def _auth_server(answer: Answer) -> str:
    server = authservers.for_host(answer.server_domain)
    if server is None:
        log.warning("callback refused: server_domain %r is not allowed", answer.server_domain)
        message = _(
            "Bitrix24 named the authorization server “%(server)s”, which is not one of "
            "BITRIX_AUTH_SERVERS; nothing was sent there. If it really is Bitrix24's, add it "
            "to BITRIX_AUTH_SERVERS and press Connect again."
        )
        raise CallbackRefused(message % {"server": answer.server_domain or "?"}, 403)
    return server


@sensitive_variables()
def _exchange(state: ConnectState, server: str, code: str) -> TokenGrant:
    began = time.monotonic()
    try:
        grant = BitrixOAuthClient(server=server).exchange_code(
            state.app.client_id, state.app.client_secret, code
        )
        grants.check_answer(grant)
    except OAuthError as err:
        log.info("callback for %r: Bitrix24 refused the code: %s", state.app.client_id, err.code)
        raise CallbackRefused(_refusal(err)) from None
    except (ConfigurationError, DecryptionError) as err:
        log.warning("callback for %r: %s", state.app.client_id, type(err).__name__)
        raise CallbackRefused(str(err), 500) from None
    log.info("callback for %r: code exchanged in %d ms", state.app.client_id,
             (time.monotonic() - began) * 1000)  # fmt: skip
    return grant


def _refusal(err: OAuthError) -> str:
    if form_field(err) == "code":
        message = _(
            "Bitrix24 refused the code (%(code)s): a code works once and lives 30 seconds. "
            "Nothing was stored. Press Connect again."
        )
        return message % {"code": err.code}
    return _("Bitrix24 refused the connect; nothing was stored. %(error)s") % {"error": err}
