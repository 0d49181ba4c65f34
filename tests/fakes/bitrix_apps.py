"""The fake portals' app-level REST methods (docs/bitrix24-protocol.md §6.4, §10): `user.admin`,
and the event handlers an app binds with `event.bind`, lists with `event.get` and drops with
`event.unbind`; plus each install's `application_token`.

`PortalApps` is mixed into `FakeBitrix` (bitrix.py) before `PortalRest`, whose `app_method` hook
it fills. Handlers and application tokens are kept per app and portal (by member_id, so a
renamed portal keeps them). `EventSender.uninstall_app()` (bitrix_events.py) uses them to post
ONAPPUNINSTALL to every handler bound for the app, as Bitrix24's event queue does.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from .bitrix_rest import RestFailure

_EVENT_NAME = re.compile(r"^ON[A-Z0-9_]{2,60}$")


@dataclass
class Handler:
    """One bound event handler, as `event.get` lists it."""

    id: int
    event: str  # upper case, as Bitrix24 stores it
    handler: str
    auth_type: str = "0"
    offline: int = 0

    def listed(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "handler": self.handler,
            "auth_type": self.auth_type,
            "offline": self.offline,
        }


class PortalApps:
    """Expects BitrixState's attributes (its lock and portals)."""

    def __init__(self) -> None:
        super().__init__()
        self._handlers: dict[tuple[str, str], list[Handler]] = {}
        self._app_tokens: dict[tuple[str, str], str] = {}
        self._handler_ids = 0

    # -- knobs and observation -----------------------------------------------------------

    def add_user(self, domain: str, user_id: int, admin: bool = False) -> None:
        """Another user of the portal: their tokens pass app.info like anyone's, and
        `user.admin` answers `admin` for them."""
        with self._lock:
            self._portal(domain).admins[user_id] = admin

    def application_token(self, client_id: str, domain: str) -> str:
        """The install's per-portal secret (32 characters of [a-z0-9], §9), made once."""
        with self._lock:
            key = (client_id, self._portal(domain).member_id)
            return self._app_tokens.setdefault(key, secrets.token_hex(16))

    def handlers(self, client_id: str, domain: str) -> list[Handler]:
        """The handlers bound for the app on the portal."""
        with self._lock:
            return list(self._handlers.get(self._key(client_id, domain), []))

    def drop_handlers(self, client_id: str, domain: str) -> list[Handler]:
        """Forget every handler of the app on the portal (Bitrix24 does this when the app is
        updated or removed) and return them."""
        with self._lock:
            return self._handlers.pop(self._key(client_id, domain), [])

    def _key(self, client_id: str, domain: str) -> tuple[str, str]:
        return client_id, self._portal(domain).member_id

    # -- the REST methods (called under the lock by PortalRest._run) ---------------------

    def app_method(self, grant: Any, method: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """(True, result) for a method this mixin serves, else (False, None)."""
        portal = self._portals[grant.domain]
        if method == "user.admin":
            return True, portal.is_admin(grant.user_id)
        if method in ("user.current", "profile"):
            user = {"ID": str(grant.user_id), "ADMIN": portal.is_admin(grant.user_id)}
            return True, user | {"NAME": "Test"}
        key = (grant.client_id, portal.member_id)
        if method == "event.get":
            return True, [handler.listed() for handler in self._handlers.get(key, [])]
        if method == "event.bind":
            return True, self._bind(key, args)
        if method == "event.unbind":
            return True, {"count": self._unbind(key, args)}
        return False, None

    def _bind(self, key: tuple[str, str], args: dict[str, Any]) -> bool:
        event, handler = _event_and_handler(args)
        bound = self._handlers.setdefault(key, [])
        if any(h.event == event and h.handler == handler for h in bound):
            # What the real portal answers to a second identical bind is not confirmed; the
            # fake refuses it, so a client that binds blindly is caught.
            raise RestFailure("ERROR_CORE", "Handler already binded")
        self._handler_ids += 1
        bound.append(Handler(self._handler_ids, event, handler))
        return True

    def _unbind(self, key: tuple[str, str], args: dict[str, Any]) -> int:
        event, handler = _event_and_handler(args)
        bound = self._handlers.get(key, [])
        kept = [h for h in bound if not (h.event == event and h.handler == handler)]
        self._handlers[key] = kept
        return len(bound) - len(kept)


def _event_and_handler(args: dict[str, Any]) -> tuple[str, str]:
    event = str(args.get("event") or args.get("EVENT") or "").upper()
    handler = str(args.get("handler") or args.get("HANDLER") or "")
    if not event or not handler:
        raise RestFailure("ERROR_REQUIRED_PARAMETERS_MISSING", "Required parameters missing")
    if not _EVENT_NAME.match(event):
        raise RestFailure("ERROR_EVENT_NOT_FOUND", "Event not found")
    if not handler.startswith(("https://", "http://")):
        raise RestFailure("ERROR_HANDLER_URL", "Wrong handler URL")
    return event, handler
