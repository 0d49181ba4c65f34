"""ONAPPUNINSTALL (docs/bitrix24-protocol.md §6.3): when b24keeper believes an app was removed.
Called by portals.connect.install once the event's token is found.

- A token installed through b24keeper holds the install's application_token: an uninstall that
  carries the same value marks the token *app uninstalled* at once (one permanent failure: one
  incident, one alert) and, with data[CLEAN]=1, wipes its secrets.
- A token connected by code holds none, so its uninstall proves nothing by itself (anyone may
  post one). It triggers one refresh instead, at most once per token per CHECK_EVERY: the token
  is made due now and the refresh task (portals.tasks.refresh_due_token) is enqueued after the
  commit, never run inside the web request. The token becomes *app uninstalled* only if Bitrix24
  answers that refresh NOT_INSTALLED (portals.bitrix.errors maps it); data[CLEAN] is ignored.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from core import publish
from portals.bitrix.errors import PermanentOAuthError, advice_for
from portals.models import Token
from portals.tokens import state, sweep

log = logging.getLogger(__name__)
CHECK_EVERY = timedelta(minutes=10)
BROKER_WAIT = 2  # seconds: the web request never waits longer for the broker


def mark(token: Token, *, clean: bool) -> None:
    """The authenticated uninstall: every stored token of the install is dead."""
    error = PermanentOAuthError(
        "app_uninstalled",
        f"ONAPPUNINSTALL: the app was removed from {token.portal.domain}",
        str(advice_for("not_installed") or ""),
    )
    state.mark_uninstalled(token, error, clean=clean)
    log.warning("token %s: the app was uninstalled from %r", token, token.portal.domain)


def check_by_refresh(token: Token) -> bool:
    """An uninstall that cannot be authenticated: ask Bitrix24 with one refresh. False when
    one was asked for less than CHECK_EVERY ago, or the token is not refreshed at all."""
    if not state.claim_uninstall_check(token.pk, CHECK_EVERY):
        log.info("token %s: uninstall already being checked (or not refreshable)", token)
        return False
    log.info("token %s: no application_token stored; checking the uninstall with a refresh", token)
    transaction.on_commit(lambda: _enqueue(token.pk))
    return True


def _enqueue(token_id: int) -> None:
    try:
        publish.send(
            sweep.REFRESH_TASK,
            (token_id,),
            expires=settings.REFRESH_TASK_EXPIRES,
            connect_timeout=BROKER_WAIT,
            retry=False,
        )
    except Exception as err:  # the broker is away: the token is due, the next sweep takes it
        log.warning("token %s: refresh not enqueued (%s); the next sweep runs it", token_id,
                    type(err).__name__)  # fmt: skip
