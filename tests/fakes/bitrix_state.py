"""State and protocol rules of the fake Bitrix24 authorization server (no HTTP here).

`FakeBitrix` in `bitrix.py` subclasses `BitrixState` and adds the wire layer, fault injection
and observation. The rules follow docs/bitrix24-protocol.md §2, §3 and §10:
validation order, error codes, statuses and descriptions mirror the 2018 `oauth` server module
where it is known.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Anything outside this set is "invalid", anything inside but unsupported is
# "unsupported": the real server tells the two apart with a regexp before the list check.
_KNOWN_GRANT_TYPES = {"authorization_code", "refresh_token", "password", "client_credentials"}
_SUPPORTED_GRANT_TYPES = {"authorization_code", "refresh_token"}

Body = dict[str, object]
Reply = tuple[int, Body]


def make_token(expiry: int, length: int = 70) -> str:
    """A lowercase hex token whose first 8 chars are the little-endian uint32 expiry (§3.2)."""
    prefix = expiry.to_bytes(4, "little").hex()
    return prefix + secrets.token_hex((length - len(prefix)) // 2)


@dataclass
class App:
    client_id: str
    client_secret: str
    scope: str
    redirect_uri: str | None


@dataclass
class Portal:
    domain: str
    member_id: str
    user_id: int  # the portal's first user, an administrator; codes are issued for them
    admins: dict[int, bool] = field(default_factory=dict)  # other users: may they manage apps?

    def is_admin(self, user_id: int) -> bool:
        return user_id == self.user_id or self.admins.get(user_id, False)


@dataclass
class Code:
    client_id: str
    domain: str
    issued_at: float
    used: bool = False
    user_id: int = 0


@dataclass
class Grant:
    """One issued access/refresh pair; `chain` groups the pairs descended from one code."""

    client_id: str
    domain: str
    chain: int
    serial: int
    access_token: str
    access_expires: int
    refresh_token: str
    refresh_expires: int
    access_alive: bool = True
    refresh_alive: bool = True
    user_id: int = 0  # whom the pair acts as; a refresh keeps it


class TokenError(Exception):
    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description

    def reply(self) -> Reply:
        body: Body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return self.status, body


def _invalid_grant() -> TokenError:
    return TokenError(400, "invalid_grant")


class BitrixState:
    """Apps, portals, codes and token chains, guarded by one lock."""

    def __init__(self) -> None:
        self.rotation = "strict"
        self.code_lifetime = 30
        self.access_lifetime = 3600
        self.refresh_lifetime = 30 * 86400
        self.expired_refresh_error = "expired_token"
        self.refusing = False  # refuse_every_access()
        # The HTTP layer overwrites these once the socket is bound.
        self.server_host = "oauth.fake.invalid"
        self.base_url = f"http://{self.server_host}"
        self._lock = threading.RLock()
        self._offset = 0.0
        self._apps: dict[str, App] = {}
        self._portals: dict[str, Portal] = {}
        self._flags: dict[tuple[str, str], dict[str, bool]] = {}
        self._codes: dict[str, Code] = {}
        self._by_access: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}
        self._serial = 0

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    # -- apps and portals ----------------------------------------------------------------

    def register_app(
        self,
        client_id: str,
        client_secret: str,
        scope: str = "crm,user",
        redirect_uri: str | None = None,
    ) -> None:
        with self._lock:
            self._apps[client_id] = App(client_id, client_secret, scope, redirect_uri)

    def add_portal(self, domain: str, member_id: str | None = None, user_id: int = 1) -> str:
        with self._lock:
            old = self._portals.get(domain)
            mid = member_id or (old.member_id if old else secrets.token_hex(16))
            self._portals[domain] = Portal(domain, mid, user_id)
            return mid

    def set_installed(self, client_id: str, domain: str, installed: bool) -> None:
        self._set_flag(client_id, domain, "installed", installed)

    def set_paid(self, client_id: str, domain: str, paid: bool) -> None:
        self._set_flag(client_id, domain, "paid", paid)

    def _set_flag(self, client_id: str, domain: str, name: str, value: bool) -> None:
        with self._lock:
            self._portal(domain)
            self._flags.setdefault((client_id, domain), {})[name] = value

    def _flag(self, client_id: str, domain: str, name: str) -> bool:
        # Every registered app counts as installed and paid on every portal unless told not.
        return self._flags.get((client_id, domain), {}).get(name, True)

    def _portal(self, domain: str) -> Portal:
        if domain not in self._portals:
            self.add_portal(domain)
        return self._portals[domain]

    def _app(self, client_id: str) -> App:
        if client_id not in self._apps:
            raise KeyError(f"FakeBitrix: app {client_id!r} is not registered")
        return self._apps[client_id]

    # -- seeding helpers -----------------------------------------------------------------

    def issue_code(self, client_id: str, domain: str) -> str:
        with self._lock:
            self._app(client_id)
            self._portal(domain)
            code = make_token(int(self.now()) + self.code_lifetime, length=68)
            self._codes[code] = Code(client_id, domain, self.now())
            return code

    def issue_tokens(
        self, client_id: str, domain: str, user_id: int | None = None
    ) -> dict[str, object]:
        """A fresh pair, as an install or a frame brings it; for the portal's first user (an
        administrator) unless `user_id` says whose."""
        with self._lock:
            app = self._app(client_id)
            portal = self._portal(domain)
            grant = self._mint(app, portal, chain=None, user_id=user_id)
            return self._success_body(app, portal, grant)

    def revoke_chain(self, refresh_token: str) -> None:
        with self._lock:
            grant = self._by_refresh.get(refresh_token)
            if grant is None:
                return
            for other in [g for g in self._by_refresh.values() if g.chain == grant.chain]:
                other.access_alive = other.refresh_alive = False
                del self._by_refresh[other.refresh_token]

    def refuse_access(self, access_token: str) -> None:
        """The portal stops accepting `access_token` before its expiry (as after a password
        change or a revoked session); its refresh token still works. What b24keeper cannot
        know until a consumer tells it."""
        with self._lock:
            grant = self._by_access.get(access_token)
            if grant is not None:
                grant.access_alive = False

    def refuse_every_access(self, refuse: bool = True) -> None:
        """While on, the portal refuses every access token, even freshly issued ones (a
        refusal that persists: the app's rights were taken away, say)."""
        with self._lock:
            self.refusing = refuse

    # -- inspection ----------------------------------------------------------------------

    def current_refresh_token(self, member_id: str, client_id: str) -> str | None:
        with self._lock:
            now = self.now()
            live = [
                g
                for g in self._by_refresh.values()
                if g.client_id == client_id
                and self._portals[g.domain].member_id == member_id
                and g.refresh_alive
                and now < g.refresh_expires
            ]
            return max(live, key=lambda g: g.serial).refresh_token if live else None

    def access_token_valid(self, access_token: str) -> bool:
        with self._lock:
            grant = self._by_access.get(access_token)
            alive = grant and grant.access_alive and not self.refusing
            return bool(alive and self.now() < grant.access_expires)

    # -- /oauth/token/ -------------------------------------------------------------------

    def token_reply(self, params: dict[str, str], commit: bool = True) -> Reply:
        """Answer one token request. With commit=False nothing changes and the success
        body lacks both tokens (the "missing_fields" fault)."""
        with self._lock:
            try:
                app, source = self._validate(params)
            except TokenError as err:
                return err.reply()
            portal = self._portals[source.domain]
            if not commit:
                return 200, self._success_body(app, portal, None)
            if isinstance(source, Code):
                source.used = True
                grant = self._mint(app, portal, chain=None, user_id=source.user_id)
            else:
                if self.rotation == "strict":
                    source.refresh_alive = source.access_alive = False
                grant = self._mint(app, portal, chain=source.chain, user_id=source.user_id)
            return 200, self._success_body(app, portal, grant)

    def _validate(self, params: dict[str, str]) -> tuple[App, Code | Grant]:
        app = self._apps.get(params.get("client_id", ""))
        if app is None:
            # The token page checks the client before anything else and answers 200.
            raise TokenError(200, "wrong_client")
        grant_type = params.get("grant_type", "")
        if grant_type not in _KNOWN_GRANT_TYPES:
            raise TokenError(
                400, "invalid_request", "Invalid grant_type parameter or parameter missing"
            )
        if grant_type not in _SUPPORTED_GRANT_TYPES:
            raise TokenError(400, "unsupported_grant_type")
        secret = params.get("client_secret", "")
        if not secret or not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            raise TokenError(400, "invalid_client")
        source: Code | Grant
        if grant_type == "authorization_code":
            source = self._check_code(app, params.get("code", ""))
        else:
            source = self._check_refresh(app, params.get("refresh_token", ""))
        if not self._flag(app.client_id, source.domain, "installed"):
            raise TokenError(401, "NOT_INSTALLED", "Application not installed")
        if not self._flag(app.client_id, source.domain, "paid"):
            raise TokenError(401, "PAYMENT_REQUIRED", "Payment required")
        return app, source

    def _check_code(self, app: App, code: str) -> Code:
        if not code:
            raise TokenError(400, "invalid_request", 'No "code" parameter found')
        record = self._codes.get(code)
        if record is None or record.client_id != app.client_id:
            raise _invalid_grant()
        if self.now() > record.issued_at + self.code_lifetime:
            raise TokenError(401, "expired_token", "The authorization token provided has expired.")
        if record.used:
            raise _invalid_grant()
        return record

    def _check_refresh(self, app: App, token: str) -> Grant:
        if not token:
            raise TokenError(400, "invalid_request", 'No "refresh_token" parameter found')
        grant = self._by_refresh.get(token)
        if grant is None or grant.client_id != app.client_id or not grant.refresh_alive:
            raise _invalid_grant()
        if self.now() >= grant.refresh_expires:
            description = "The refresh token provided has expired."
            if self.expired_refresh_error == "invalid_grant":
                raise TokenError(400, "invalid_grant", description)
            raise TokenError(401, "expired_token", description)
        return grant

    def _mint(
        self, app: App, portal: Portal, chain: int | None, user_id: int | None = None
    ) -> Grant:
        self._serial += 1
        now = int(self.now())
        access_expires = now + self.access_lifetime
        refresh_expires = now + self.refresh_lifetime
        grant = Grant(
            client_id=app.client_id,
            domain=portal.domain,
            chain=self._serial if chain is None else chain,
            serial=self._serial,
            access_token=make_token(access_expires),
            access_expires=access_expires,
            refresh_token=make_token(refresh_expires),
            refresh_expires=refresh_expires,
            user_id=user_id or portal.user_id,
        )
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        return grant

    def _success_body(self, app: App, portal: Portal, grant: Grant | None) -> Body:
        """The §2 body, keys in the real order; without tokens when grant is None."""
        expires = grant.access_expires if grant else int(self.now()) + self.access_lifetime
        body: Body = {}
        if grant:
            body["access_token"] = grant.access_token
        body |= {
            "expires": expires,
            "expires_in": self.access_lifetime,
            "scope": app.scope,
            "domain": self.server_host,
            "server_endpoint": f"{self.base_url}/rest/",
            "status": "L",
            "client_endpoint": portal_rest_url(portal.domain),
            "member_id": portal.member_id,
            "user_id": grant.user_id if grant else portal.user_id,
        }
        if grant:
            body["refresh_token"] = grant.refresh_token
        return body

    # -- /oauth/authorize/ and /rest/app.info --------------------------------------------

    def authorize(
        self, client_id: str, domain: str, state: str | None
    ) -> tuple[str | None, dict[str, str]] | str:
        """(redirect_uri, query) on success, or an error message for the HTML page."""
        with self._lock:
            app = self._apps.get(client_id)
            if app is None:
                return "Application not found"
            if not self._flag(client_id, domain, "installed"):
                return "Application not installed"
            code = self.issue_code(client_id, domain)
            query = {"code": code}
            if state is not None:
                query["state"] = state
            query |= {
                "domain": domain,
                "member_id": self._portals[domain].member_id,
                "scope": app.scope,
                "server_domain": self.server_host,
            }
            return app.redirect_uri, query

    def app_info_reply(self, access_token: str) -> Reply:
        """The §7 shape of `app.info` on the authorization server."""
        with self._lock:
            if not access_token:
                return TokenError(401, "NO_AUTH_FOUND", "Wrong authorization data").reply()
            grant = self._by_access.get(access_token)
            if grant is None:
                return TokenError(
                    401, "invalid_token", "Unable to get application by token"
                ).reply()
            if not self.access_token_valid(access_token):
                description = "The access token provided has expired"
                return TokenError(401, "expired_token", description).reply()
            app, portal = self._apps[grant.client_id], self._portals[grant.domain]
            result = {
                "client_id": app.client_id,
                "scope": app.scope,
                "expires": _iso(grant.access_expires),
                "user_id": grant.user_id,
                "install": {
                    "installed": self._flag(app.client_id, portal.domain, "installed"),
                    "version": "1",
                    "status": "L",
                    "scope": app.scope,
                    "domain": portal.domain,
                    "uri": app.redirect_uri or "",
                    "client_endpoint": portal_rest_url(portal.domain),
                    "member_id": portal.member_id,
                    "member_type": "PORTAL",
                },
            }
            return 200, {"result": result, "time": self._time_envelope()}

    def _time_envelope(self) -> Body:
        now = self.now()
        return {
            "start": now,
            "finish": now,
            "duration": 0.0,
            "processing": 0.0,
            "date_start": _iso(now),
            "date_finish": _iso(now),
        }


# The fake's hosts that speak https (FakeBitrix.secure_host()); unique by port.
SECURE_HOSTS: set[str] = set()


def portal_rest_url(domain: str) -> str:
    """A portal's REST root; plain http for the fake's own hosts (localhost:PORT), which the
    REST client then reaches like a real portal, unless that port speaks https."""
    local = domain.split(":")[0] in ("localhost", "127.0.0.1") and domain not in SECURE_HOSTS
    return f"{'http' if local else 'https'}://{domain}/rest/"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).isoformat()
