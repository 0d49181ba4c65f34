"""The rules of a connect started in the browser (docs/bitrix24-protocol.md §1).

- An OAuth `state` is 32 random bytes, given to the browser once and stored only as its
  SHA-256, bound to the login session (also hashed), the user, the app and, for a re-connect,
  the token. It is valid STATE_TTL and used at most once: the claim is a conditional UPDATE
  that exactly one callback can win.
- A re-connect answered by a portal with another member_id (`other_portal`; the Connect
  button's callback and "Add task" alike) leaves its pair here, encrypted, for PENDING_TTL,
  until the same user confirms or cancels it.
- The "Add task" form keeps a client secret typed in a failed attempt in the session,
  encrypted with ENCRYPTION_KEYS, for HELD_SECRET_TTL, so a second attempt need not retype it.

Refusals raise StateRefused with a message that says what to do; nothing is stored by them.
"""

import hashlib
import secrets
import time
from datetime import timedelta

from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_variables

from encryption import crypto
from encryption.crypto import DecryptionError
from portals.bitrix.oauth import TokenGrant
from portals.models import AppCredentials, ConnectState, PendingPair, Portal, Token

STATE_TTL = timedelta(minutes=10)
PENDING_TTL = timedelta(minutes=10)
HELD_SECRET_TTL = timedelta(minutes=10)
HELD_SECRET_KEY = "b24keeper_held_secret"
START_AGAIN = gettext_lazy(
    "Start again with the Connect button on the token's page or “Connect a new portal”."
)


class StateRefused(Exception):
    """The callback's `state` cannot be accepted; the message says why and what to do."""

    def __init__(self, reason: "str | Promise", status: int = 400) -> None:
        # `reason` stays lazy: the page says it in the reader's language, the log in English.
        super().__init__(f"{reason} {START_AGAIN}")
        self.reason = reason
        self.status = status


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def session_hash(session: SessionBase) -> str:
    if not session.session_key:
        session.save()  # a session row must exist for the callback to find it again
    return _hash(f"session:{session.session_key}")


# --- The OAuth state --------------------------------------------------------------------------
@sensitive_variables()
def issue(
    session: SessionBase,
    user_id: int,
    app: AppCredentials,
    portal_domain: str,
    *,
    token: Token | None = None,
    reference: str = "",
) -> str:
    """A new state for the authorize URL; only its hash is stored."""
    _forget_expired()
    state = secrets.token_urlsafe(32)
    ConnectState.objects.create(
        state_hash=_hash(state),
        session_hash=session_hash(session),
        user_id=user_id,
        app=app,
        token=token,
        portal_domain=portal_domain,
        reference=reference,
        expires_at=timezone.now() + STATE_TTL,
    )
    return state


@sensitive_variables()
def consume(state: str, session: SessionBase, user_id: int, client_id: str) -> ConnectState:
    """The state's record, claimed for this callback; StateRefused otherwise."""
    if not state:
        raise StateRefused(
            gettext_lazy(
                "The answer from Bitrix24 carries no state, so it cannot be matched to a "
                "connect started here."
            )
        )
    found = (
        ConnectState.objects.select_related("app", "token__portal")
        .filter(state_hash=_hash(state))
        .first()
    )
    if found is None:
        raise StateRefused(gettext_lazy("This connect is unknown here (or was cleaned up)."))
    if found.session_hash != session_hash(session) or found.user_id != user_id:
        raise StateRefused(
            gettext_lazy(
                "This connect was started by someone else, or in another login session. Only "
                "the person who pressed Connect can finish it, in the same browser."
            ),
            403,
        )
    if found.used_at is not None:
        raise StateRefused(
            gettext_lazy("This connect was already finished; an answer counts once.")
        )
    if found.expires_at <= timezone.now():
        raise StateRefused(gettext_lazy("This connect was started more than 10 minutes ago."))
    if found.app.client_id != client_id:
        raise StateRefused(gettext_lazy("This answer arrived at another app's address."))
    claimed = ConnectState.objects.filter(pk=found.pk, used_at=None).update(used_at=timezone.now())
    if not claimed:  # another request with the same state won the race
        raise StateRefused(
            gettext_lazy("This connect was already finished; an answer counts once.")
        )
    return found


def _forget_expired() -> None:
    """Old states and pairs are of no use to anyone: drop them as new ones come."""
    now = timezone.now()
    ConnectState.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    PendingPair.objects.filter(valid_until__lt=now).delete()


# --- A re-connect's pair from another portal --------------------------------------------------
def other_portal(portal: Portal, grant: TokenGrant) -> bool:
    """Does the pair come from another portal than `portal` (both member_ids known and
    different)? Then it waits for staff to confirm: the Connect button and "Add task" alike."""
    return bool(portal.member_id and grant.member_id and portal.member_id != grant.member_id)


@sensitive_variables()
def hold_pair(
    token: Token, grant: TokenGrant, domain: str, session: SessionBase, user_id: int
) -> PendingPair:
    return PendingPair.objects.create(
        token=token,
        user_id=user_id,
        session_hash=session_hash(session),
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        expires_at=grant.expires_at,
        scope=grant.scope[:500],
        server_endpoint=grant.server_endpoint,
        client_endpoint=grant.client_endpoint,
        member_id=grant.member_id,
        domain=domain,
        bitrix_user_id=grant.user_id,
        valid_until=timezone.now() + PENDING_TTL,
    )


def pending_for(pk: int, session: SessionBase, user_id: int) -> PendingPair | None:
    """The user's own waiting pair, if it is still valid (someone else's is never shown)."""
    return (
        PendingPair.objects.select_related("token__portal", "token__app")
        .filter(pk=pk, user_id=user_id, session_hash=session_hash(session))
        .filter(valid_until__gt=timezone.now())
        .first()
    )


@sensitive_variables()
def grant_of(pending: PendingPair) -> TokenGrant:
    return TokenGrant(
        access_token=pending.access_token,
        refresh_token=pending.refresh_token,
        expires_at=pending.expires_at,
        scope=pending.scope,
        server_endpoint=pending.server_endpoint,
        client_endpoint=pending.client_endpoint,
        member_id=pending.member_id,
        user_id=pending.bitrix_user_id,
        domain=pending.domain,
    )


# --- The form's client secret, kept for a second attempt ----------------------------------------
@sensitive_variables()
def hold_secret(session: SessionBase, secret: str) -> None:
    session[HELD_SECRET_KEY] = {"ciphertext": crypto.encrypt(secret), "at": time.time()}


@sensitive_variables()
def held_secret(session: SessionBase) -> str | None:
    """The secret of the last failed attempt, if it is younger than HELD_SECRET_TTL."""
    held = session.get(HELD_SECRET_KEY)
    if not isinstance(held, dict):
        return None
    if time.time() - float(held.get("at", 0)) > HELD_SECRET_TTL.total_seconds():
        forget_secret(session)
        return None
    try:
        return crypto.decrypt(str(held.get("ciphertext", "")))
    except DecryptionError:
        forget_secret(session)
        return None


def forget_secret(session: SessionBase) -> None:
    session.pop(HELD_SECRET_KEY, None)
