"""The fake portal's event sender (docs/bitrix24-protocol.md §6, §10): what Bitrix24 posts to an
app's install and event handlers, form-encoded with bracketed keys, every value a string.

The tokens in an install or update payload are minted by the fake authorization server, so
`app.info` there vouches for them exactly as the real one would; they belong to the portal's
first user (an administrator) unless `user=` names another (`fake.add_user()`). Each (app,
portal) install has its own application_token, kept by the fake (bitrix_apps.py) for the later
events. `uninstall_app()` removes the app as a portal administrator would: the fake posts
ONAPPUNINSTALL to every handler bound for it with `event.bind`. Standard library only.

    sender = EventSender(fake, client_id)
    form = sender.install("acme.bitrix24.com")            # keyword arguments override auth[...]
    status, body = sender.post(f"{live_server.url}/bitrix/{client_id}/events/", form)
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from .bitrix import FakeBitrix
from .bitrix_state import portal_rest_url

FORM = "application/x-www-form-urlencoded"


class EventSender:
    def __init__(self, fake: FakeBitrix, client_id: str) -> None:
        self.fake = fake
        self.client_id = client_id

    def application_token(self, domain: str) -> str:
        """The install's per-portal secret (32 characters of [a-z0-9], §9)."""
        return self.fake.application_token(self.client_id, domain)

    # -- payloads --------------------------------------------------------------------------

    def install(self, domain: str, /, user: int | None = None, **overrides: str) -> dict[str, str]:
        """ONAPPINSTALL with a fresh pair from the fake (§6.2), as `user` (default: the
        portal's first user, an administrator)."""
        data = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
        return self._with_tokens("ONAPPINSTALL", domain, data, overrides, user)

    def update(self, domain: str, /, user: int | None = None, **overrides: str) -> dict[str, str]:
        """ONAPPUPDATE: the new version's pair (§6.2)."""
        data = {"VERSION": "2", "LANGUAGE_ID": "en"}
        return self._with_tokens("ONAPPUPDATE", domain, data, overrides, user)

    def uninstall(
        self, domain: str, /, clean: bool = False, handler_id: int = 12, **overrides: str
    ) -> dict[str, str]:
        """ONAPPUNINSTALL: no tokens, only the application_token to prove it (§6.3)."""
        portal = self.fake._portal(domain)
        auth = {
            "domain": domain,
            "server_endpoint": f"{self.fake.base_url}/rest/",
            "client_endpoint": portal_rest_url(domain),
            "member_id": portal.member_id,
            "application_token": self.application_token(domain),
        }
        data = {"LANGUAGE_ID": "en", "CLEAN": "1" if clean else "0"}
        return _form("ONAPPUNINSTALL", auth | _auth_overrides(overrides), data, handler_id)

    def uninstall_app(
        self, domain: str, /, clean: bool = False
    ) -> list[tuple[str, int, dict[str, object]]]:
        """A portal administrator removes the app: it is no longer installed, Bitrix24 posts
        ONAPPUNINSTALL to each handler bound for it (nowhere if none is bound, §6.3) and drops
        the app's handlers. Returns (handler, status, body) for each POST."""
        self.fake.set_installed(self.client_id, domain, False)
        sent = []
        for bound in self.fake.drop_handlers(self.client_id, domain):
            if bound.event == "ONAPPUNINSTALL":
                form = self.uninstall(domain, clean=clean, handler_id=bound.id)
                sent.append((bound.handler, *self.post(bound.handler, form)))
        return sent

    def frame(self, domain: str, user: int | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """The install frame's POST (§6.1): (query, form body)."""
        body = self.fake.issue_tokens(self.client_id, domain, user)
        query = {"DOMAIN": domain, "PROTOCOL": "1", "LANG": "en", "APP_SID": secrets.token_hex(8)}
        form = {
            "AUTH_ID": str(body["access_token"]),
            "AUTH_EXPIRES": "3600",
            "REFRESH_ID": str(body["refresh_token"]),
            "SERVER_ENDPOINT": str(body["server_endpoint"]),
            "APPLICATION_TOKEN": self.application_token(domain),
            "APPLICATION_SCOPE": str(body["scope"]),
            "member_id": str(body["member_id"]),
            "status": "L",
            "PLACEMENT": "DEFAULT",
            "PLACEMENT_OPTIONS": "{}",
        }
        return query, form

    def _with_tokens(
        self,
        event: str,
        domain: str,
        data: dict[str, str],
        overrides: dict[str, str],
        user: int | None,
    ) -> dict[str, str]:
        body = self.fake.issue_tokens(self.client_id, domain, user)
        auth = {
            "access_token": str(body["access_token"]),
            "expires": str(body["expires"]),
            "expires_in": str(body["expires_in"]),
            "scope": str(body["scope"]),
            "domain": domain,
            "server_endpoint": str(body["server_endpoint"]),
            "status": "L",
            "client_endpoint": str(body["client_endpoint"]),
            "member_id": str(body["member_id"]),
            "user_id": str(body["user_id"]),
            "refresh_token": str(body["refresh_token"]),
            "application_token": self.application_token(domain),
        }
        return _form(event, auth | _auth_overrides(overrides), data)

    # -- the wire --------------------------------------------------------------------------

    @staticmethod
    def encode(form: dict[str, str]) -> str:
        return urlencode(form)

    def post(self, url: str, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """POST the form as the event queue does; (status, JSON body or {})."""
        request = urllib.request.Request(
            url, data=self.encode(form).encode(), headers={"Content-Type": FORM}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as err:
            return err.code, _json(err.read())


def wrong_token(form: dict[str, str]) -> dict[str, str]:
    """The same event with an application_token that is not the install's."""
    return {**form, "auth[application_token]": secrets.token_hex(16)}


def _auth_overrides(overrides: dict[str, str]) -> dict[str, str]:
    return {key: str(value) for key, value in overrides.items()}


def _form(
    event: str, auth: dict[str, str], data: dict[str, str], handler_id: int = 12
) -> dict[str, str]:
    form = {"event": event, "event_handler_id": str(handler_id), "ts": str(int(time.time()))}
    form |= {f"data[{key}]": value for key, value in data.items()}
    form |= {f"auth[{key}]": value for key, value in auth.items()}
    return form


def _json(raw: bytes) -> dict[str, object]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
