"""Who may hold a portal's address (docs/bitrix24-protocol.md §9): the rule for renames.

A portal is found by its permanent member_id; its address (domain) can change. A new address is
taken only on Bitrix24's word: app.info's install data (a verified install,
portals.connect.pair_proof; a code connect whose portal moved is checked with `confirm_address`), or
the REST client's confirmed move (portals.bitrix.transport.confirm_move). Events never rename.

Nor does a portal take the address of another *live* portal row. A row whose tokens are all
uninstalled, or whose app.info fails (the token is dead, or Bitrix24 says that portal now lives
elsewhere), gives its address up: it is renamed to `<member_id>.renamed.invalid`, with a
warning in the log. A row that may still live refuses the move, with a message naming both
portals. Both checks call the authorization server: run them outside any transaction.
Used by portals.connect.grants.store_grant and portals.tokens.state.move_portal.
"""

import logging

from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from encryption.crypto import DecryptionError
from portals.bitrix.errors import ConfigurationError, OAuthError
from portals.bitrix.oauth import BitrixOAuthClient, TokenGrant
from portals.models import Portal, Token, TokenStatus

log = logging.getLogger(__name__)


class AddressTaken(Exception):
    """The address is held by another portal that may still live there; the message names
    both portals and what to do."""


def free_for(member_id: str | None, domain: str) -> int | None:
    """The pk of the portal row to move aside so that the portal `member_id` can take
    `domain`, None when no other row holds it (or the holder is a row that never learned its
    member_id, which the portal then adopts). AddressTaken when the holder may be live."""
    own = Portal.objects.filter(member_id=member_id).first() if member_id else None
    holders = Portal.objects.filter(domain=domain)
    holder = (holders.exclude(pk=own.pk) if own else holders).first()
    if holder is None or (own is None and not holder.member_id):
        return None
    if is_live(holder):
        moving = own.domain if own else domain
        log.warning(
            "portal %s (member %s) cannot take %s: portal %s (member %s) may still live there",
            moving, member_id, domain, holder.pk, holder.member_id,
        )  # fmt: skip
        raise AddressTaken(
            _(
                "Portal %(moving)s (member_id %(member)s) now answers at %(domain)s, but "
                "another connected portal in b24keeper, %(holder)s (member_id %(held_by)s), "
                "still holds that address. Nothing was changed: check both portals in the "
                "admin, and disable or delete the one that no longer exists."
            )
            % {
                "moving": moving,
                "member": member_id or "?",
                "domain": domain,
                "holder": holder.domain,
                "held_by": holder.member_id,
            }
        )
    return holder.pk


def move_aside(portal_id: int, domain: str, member_id: str | None) -> None:
    """The dead holder gives `domain` up (run inside the move's transaction)."""
    held = Portal.objects.select_for_update().get(pk=portal_id)
    held.domain = f"{held.member_id or held.pk}.renamed.invalid"
    held.save(update_fields=["domain", "updated_at"])
    log.warning("portal %s: address %s taken over by member %s; the old row is now %s",
                held.pk, domain, member_id, held.domain)  # fmt: skip


@sensitive_variables()
def is_live(portal: Portal) -> bool:
    """Whether `portal` may still live at its address: one of its tokens that is not
    uninstalled gets an app.info answer naming this portal there, or an answer that cannot
    tell (a network failure). A refused token, or an answer naming another address, is dead."""
    try:
        tokens = list(Token.objects.filter(portal=portal).exclude(status=TokenStatus.UNINSTALLED))
    except DecryptionError:  # its secrets cannot be read here: cannot tell, so it may live
        return True
    for token in tokens:
        if not token.access_token:
            continue
        server = token.server_endpoint or portal.authorization_server()
        try:
            info = BitrixOAuthClient(server=server).app_info(token.access_token)
        except ConfigurationError:
            continue
        except OAuthError as err:
            if err.permanent or err.code == "expired_token":
                continue  # app.info fails: this token is dead
            return True  # cannot tell now: better refused than a live portal evicted
        if info.domain == portal.domain and info.member_id in ("", portal.member_id or ""):
            return True
    return False


@sensitive_variables()
def confirm_address(grant: TokenGrant, old_domain: str, domain: str) -> None:
    """A code connect stores the pair of a known portal under another address: allowed only
    when app.info, asked with the new pair, says this portal lives there now."""
    try:
        info = BitrixOAuthClient(server=grant.server_endpoint or None).app_info(grant.access_token)
        confirmed = info.member_id == grant.member_id and info.domain == domain
    except (OAuthError, ConfigurationError) as err:
        log.warning("portal %s: app.info for the move to %s failed (%s)", old_domain, domain,
                    getattr(err, "code", type(err).__name__))  # fmt: skip
        confirmed = False
    if not confirmed:
        raise AddressTaken(
            _(
                "Bitrix24 did not confirm that portal %(old)s (member_id %(member)s) now lives "
                "at %(new)s; nothing was stored. Connect it under the address Bitrix24 shows."
            )
            % {"old": old_domain, "member": grant.member_id, "new": domain}
        )
