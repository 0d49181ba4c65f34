"""The changes of a token's life that are not a refresh: connecting (a code exchange, an
install), recording the granted scope, an uninstall, staff disabling and enabling it or
editing what is theirs, the sweep's claim ending, a portal moving to another address.

Part of the token service (portals/service.py holds loading, refreshed pairs, the journal and
failures), under the same rules: a pair is written fenced by `version`, staff changes never
bump it, and what happened is announced through portals.signals.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from portals import addresses, schedule, signals
from portals.errors import (
    OAuthError,
)
from portals.models import (
    SCHEDULED_STATUSES,
    Portal,
    RefreshAttempt,
    Token,
    TokenStatus,
)
from portals.oauth import TokenGrant
from portals.service import SECRETS, record_attempt, record_failure

log = logging.getLogger(__name__)
Outcome = RefreshAttempt.Outcome


# --- Connecting -----------------------------------------------------------------------------
@sensitive_variables()
def store_connection(
    token: Token,
    grant: TokenGrant,
    *,
    scope: str,
    started: datetime,
    duration_ms: int,
    application_token: str | None = None,
    kind: str = RefreshAttempt.Kind.CODE_EXCHANGE,
) -> Token:
    """Store the pair of a code exchange (or of an install event, `kind` EVENT) on `token`
    (new, or re-connected). A new pair starts a new chain: `version` moves on, so a refresh
    still in flight on the old chain drops its pair. Runs inside the connect transaction, with
    `token`'s row locked (select_for_update)."""
    now = timezone.now()
    if application_token:
        token.application_token = application_token
    token.access_token, token.refresh_token = grant.access_token, grant.refresh_token
    token.expires_at, token.scope = grant.expires_at, scope
    token.server_endpoint, token.client_endpoint = grant.server_endpoint, grant.client_endpoint
    token.user_id, token.status = grant.user_id, TokenStatus.ACTIVE
    token.version, token.last_refreshed_at = token.version + 1, now
    token.failure_count, token.last_error_code, token.last_error = 0, "", ""
    token.failing_since = token.refresh_started_at = token.claimed_until = None
    token.next_refresh_at = schedule.next_refresh_after_success(token.app, grant.expires_at, now)
    token.save()
    record_attempt(token, kind, Outcome.SUCCESS, started, duration_ms)
    signals.token_recovered.send(sender=Token, token=token)
    return token


def record_scope(token_id: int, scope: str) -> None:
    """The scope Bitrix24 says the token has (app.info after a connect, §7)."""
    Token.objects.filter(pk=token_id).update(scope=scope[:500])


def mark_uninstalled(token: Token, error: OAuthError, *, clean: bool) -> None:
    """The app was removed from the portal (ONAPPUNINSTALL): every stored token is dead. One
    permanent failure is recorded (one incident, one alert); with `clean` the secrets go too,
    and `version` moves on so a refresh in flight cannot store a pair afterwards."""
    if token.status == TokenStatus.UNINSTALLED and token.failure_count:
        log.info("token %s: already marked uninstalled", token)
    else:
        record_failure(
            token,
            RefreshAttempt.Kind.EVENT,
            error,
            timezone.now(),
            0,
            status=TokenStatus.UNINSTALLED,
        )
    if clean:
        Token.objects.filter(pk=token.pk).update(
            access_token="",
            refresh_token="",
            application_token="",
            expires_at=None,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )


def claim_uninstall_check(token_id: int, every: timedelta) -> bool:
    """Make the token due now, so one refresh tells whether its app is still installed; at
    most once per `every` (a conditional UPDATE: of two callers at once, one wins)."""
    now = timezone.now()
    claimed = (
        Token.objects.filter(pk=token_id, status__in=SCHEDULED_STATUSES)
        .filter(Q(uninstall_checked_at=None) | Q(uninstall_checked_at__lt=now - every))
        .update(uninstall_checked_at=now, next_refresh_at=now)
    )
    return claimed == 1


# --- Staff and the scheduler ----------------------------------------------------------------
def release_sweep_claim(token_id: int) -> None:
    """The sweep's claim (`claimed_until`) ends with its task, whatever the task found."""
    Token.objects.filter(pk=token_id).exclude(claimed_until=None).update(claimed_until=None)


def disable(token_ids: list[int]) -> int:
    """Stop refreshing. The pair stays; a refresh in flight still stores its pair but leaves
    the token disabled (no version bump here, see the module docstring)."""
    tokens = list(Token.objects.filter(pk__in=token_ids).defer(*SECRETS))
    count = Token.objects.filter(pk__in=token_ids).update(
        status=TokenStatus.DISABLED, next_refresh_at=None, claimed_until=None
    )
    for token in tokens:
        signals.token_disabled.send(sender=Token, token=token)
    return count


def enable(token_ids: list[int]) -> int:
    """Refresh on schedule again, starting now, and close the token's incident. Tokens never
    connected (no refresh token) stay as they are. A live refresh claim is left alone."""
    enabled = Token.objects.filter(pk__in=token_ids).exclude(status=TokenStatus.AWAITING_CODE)
    tokens = list(enabled.select_related("portal").defer(*SECRETS))
    count = enabled.update(
        status=TokenStatus.ACTIVE,
        next_refresh_at=timezone.now(),
        claimed_until=None,
        failure_count=0,
        failing_since=None,
        last_error_code="",
        last_error="",
    )
    for token in tokens:
        signals.token_recovered.send(sender=Token, token=token)
    return count


def update_staff_fields(token_id: int, **fields: object) -> None:
    """What staff own on a token: its reference, owner and notes; nothing else."""
    allowed = {"reference", "owner", "owner_id", "notes"}
    if unknown := set(fields) - allowed:
        raise ValueError(f"Staff may not change {', '.join(sorted(unknown))} on a token.")
    Token.objects.filter(pk=token_id).update(**fields, updated_at=timezone.now())


# --- A renamed portal -------------------------------------------------------------------------
class PortalMoveRefused(Exception):
    """The portal cannot be moved to the new address (another live portal holds it)."""


def move_portal(member_id: str, domain: str, client_endpoint: str) -> Portal:
    """Bitrix24 confirmed that the portal `member_id` now lives at `domain` (it was renamed;
    docs/bitrix24-protocol.md §4.3): store the new address on the portal and the new REST root
    on its tokens. Neither is a pair change, so `version` stays. Another portal row holding
    the address gives it up only if it is dead (portals.addresses)."""
    try:
        move_aside = addresses.free_for(member_id, domain)  # may ask app.info: no transaction
    except addresses.AddressTaken as err:
        raise PortalMoveRefused(str(err)) from None
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(member_id=member_id)
        if move_aside is not None:
            addresses.move_aside(move_aside, domain, member_id)
        old, portal.domain = portal.domain, domain
        Portal.objects.filter(pk=portal.pk).update(domain=domain, updated_at=timezone.now())
        Token.objects.filter(portal_id=portal.pk).update(client_endpoint=client_endpoint)
    if old != domain:
        log.warning("portal %r was renamed to %r", old, domain)
    return portal
