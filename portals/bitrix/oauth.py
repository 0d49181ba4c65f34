"""A plain client for the Bitrix24 authorization server (docs/bitrix24-protocol.md §1, §2, §4.2,
§7): code exchange, refresh, and `app.info`, the trusted answer on what a token belongs to.

No ORM access: credentials in, a TokenGrant or an OAuthError out. The server must be one of
BITRIX_AUTH_SERVERS (ConfigurationError otherwise, before anything is sent).

Requests go as POST with a form body (b24jssdk's approach, checked against
oauth.bitrix24.tech): the secret, the code and the refresh token then never appear in a URL,
so neither urllib3's debug log nor any proxy's access log can hold them.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from core import http
from portals.bitrix import authservers
from portals.bitrix.errors import OAuthError, Source, classify, own

REQUIRED_FIELDS = ("access_token", "refresh_token")
# What the informational fields of an answer can hold (docs/bitrix24-protocol.md §2, §9): a
# user id is a 32-bit integer, member_id 32 hex characters, an endpoint a short URL (our
# columns hold 200 characters). A value outside these is dropped, never the token pair with it.
USER_ID_MAX = 2**31 - 1
MEMBER_ID_LENGTH = 32
ENDPOINT_MAX_LENGTH = 200


APP_STATUSES = ("L", "F", "D", "T", "P", "S")


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str
    expires_at: datetime
    scope: str
    server_endpoint: str
    client_endpoint: str
    member_id: str
    user_id: int | None
    domain: str
    status: str = ""  # Bitrix24's app status on the portal: L, F, D, T, P or S

    def __repr__(self) -> str:  # keep tokens out of tracebacks and debug output
        return f"TokenGrant(member_id={self.member_id!r}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class AppInfo:
    """What the authorization server says a live access token belongs to (§7)."""

    client_id: str
    scope: str
    member_id: str
    domain: str
    installed: bool
    user_id: int | None
    client_endpoint: str = ""  # the install's REST root: where b24keeper calls this portal


def auth_server_from_endpoint(server_endpoint: str) -> str:
    """'https://oauth.bitrix.info/rest/' -> 'https://oauth.bitrix.info' (rebuilt by the strict
    parser). A value the parser refuses comes back as it is, so that authservers.require()
    refuses it by name rather than the caller quietly falling back to another server."""
    return authservers.base_url(server_endpoint) or server_endpoint


def authorize_url(portal_domain: str, client_id: str, state: str = "") -> str:
    """The portal's page where a user grants access (docs/bitrix24-protocol.md §1)."""
    query = {"client_id": client_id, "response_type": "code"}
    if state:
        query["state"] = state
    local = settings.BITRIX_ALLOW_HTTP and portal_domain.startswith("127.")
    return f"{'http' if local else 'https'}://{portal_domain}/oauth/authorize/?{urlencode(query)}"


class BitrixOAuthClient:
    """Talks to one authorization server. Build one per server; it is cheap."""

    def __init__(self, server: str | None = None, session: requests.Session | None = None):
        # Raises ConfigurationError for anything outside BITRIX_AUTH_SERVERS: the secret and
        # the tokens go nowhere else.
        self.server = authservers.require(
            server or settings.BITRIX_OAUTH_SERVER, "The authorization server"
        )
        self.timeout = (settings.BITRIX_CONNECT_TIMEOUT, settings.BITRIX_READ_TIMEOUT)
        self.session = session or self._shared_session()

    @staticmethod
    def _shared_session() -> requests.Session:
        # One pooled session per process: keep-alive to the authorization server.
        return http.session("bitrix-oauth", pool_size=settings.BITRIX_HTTP_POOL_SIZE)

    @sensitive_variables()
    def exchange_code(self, client_id: str, client_secret: str, code: str) -> TokenGrant:
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "client_id": client_id,
                "client_secret": client_secret,
                "code": code,
            }
        )

    @sensitive_variables()
    def refresh(self, client_id: str, client_secret: str, refresh_token: str) -> TokenGrant:
        return self._token_request(
            {
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            }
        )

    @sensitive_variables()
    def app_info(self, access_token: str) -> AppInfo:
        """`app.info` on this authorization server (§7): proves the token is live and says
        which app, portal and scope it belongs to. The token goes in the form body."""
        response = self._post(f"{self.server}/rest/app.info", {"auth": access_token})
        body = _json_or_none(response)
        if isinstance(body, dict) and body.get("error"):
            description = str(body.get("error_description") or "")
            raise classify(str(body["error"]), description, response.status_code, Source.REST)
        result = body.get("result") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(result, dict):
            raise own("unreadable_body", "app.info gave no result.", response.status_code)
        install = _object(result.get("install"))
        user_id = str(result.get("user_id") or "")
        return AppInfo(
            client_id=str(result.get("client_id") or ""),
            scope=str(result.get("scope") or install.get("scope") or ""),
            member_id=str(install.get("member_id") or ""),
            domain=str(install.get("domain") or "").lower(),
            installed=install.get("installed") in (True, "Y", "true", 1),
            user_id=int(user_id) if user_id.isdigit() and int(user_id) <= USER_ID_MAX else None,
            client_endpoint=_short(install.get("client_endpoint"), ENDPOINT_MAX_LENGTH),
        )

    @sensitive_variables()
    def _token_request(self, form: dict[str, str]) -> TokenGrant:
        return self._parse(self._post(f"{self.server}/oauth/token/", form))

    @sensitive_variables()
    def _post(self, url: str, form: dict[str, str]) -> requests.Response:
        # requests' timeout bounds each read, not the answer: one that drips a byte at a time
        # could outlive the refresh lease. BITRIX_OAUTH_DEADLINE bounds the whole call.
        deadline = time.monotonic() + settings.BITRIX_OAUTH_DEADLINE
        try:
            # Never follow a redirect: a 307 would re-send the secret to wherever it points.
            response = self.session.post(
                url, data=form, timeout=self.timeout, allow_redirects=False, stream=True
            )
            _read_until(response, deadline)
        except requests.Timeout:
            raise own("timeout", "The authorization server did not answer in time.") from None
        except requests.RequestException as err:
            # The exception text can hold the URL; keep only its type.
            raise own(
                "connection_error",
                f"Could not reach the authorization server ({type(err).__name__}).",
            ) from None
        return response

    def _parse(self, response: requests.Response) -> TokenGrant:
        body = _json_or_none(response)
        if isinstance(body, dict) and body.get("error"):
            raise classify(
                str(body["error"]), str(body.get("error_description") or ""), response.status_code
            )
        if response.status_code >= 500 or response.status_code == 429:
            raise own(
                f"http_{response.status_code}",
                "The authorization server is in trouble.",
                response.status_code,
            )
        if not isinstance(body, dict):
            raise own(
                "unreadable_body",
                "The authorization server answered with something that is not JSON.",
                response.status_code,
            )
        if response.status_code != 200:
            raise own(
                f"http_{response.status_code}",
                "Unexpected answer from the authorization server.",
                response.status_code,
            )
        return _grant_from_body(body, response.status_code)


def _read_until(response: requests.Response, deadline: float) -> None:
    """Read the body (small: a token answer) as it arrives, giving up at `deadline`."""
    body = bytearray()
    with response:
        try:
            # read1: whatever one read returns (read(n) would wait to fill n bytes).
            while piece := response.raw.read1(65536, decode_content=True):
                body += piece
                if time.monotonic() > deadline:
                    raise requests.Timeout("the answer took longer than BITRIX_OAUTH_DEADLINE")
        except urllib3.exceptions.ReadTimeoutError as err:
            raise requests.Timeout(type(err).__name__) from None
        except urllib3.exceptions.HTTPError as err:  # cut off mid-answer
            raise requests.ConnectionError(type(err).__name__) from None
    response._content = bytes(body)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _grant_from_body(body: dict[str, Any], http_status: int) -> TokenGrant:
    missing = [name for name in REQUIRED_FIELDS if not body.get(name)]
    if missing or not (body.get("expires") or body.get("expires_in")):
        raise own(
            "incomplete_body",
            f"The authorization server's answer lacks {', '.join(missing) or 'an expiry'}; "
            "nothing was stored.",
            http_status,
        )
    try:
        expires = int(body.get("expires") or time.time() + int(body["expires_in"]))
        expires_at = datetime.fromtimestamp(expires, tz=UTC)
        user_id = int(body["user_id"]) if body.get("user_id") not in (None, "") else None
    except (TypeError, ValueError, OverflowError, OSError):  # the last two: a huge timestamp
        raise own(
            "unreadable_body", "The token answer has malformed numbers.", http_status
        ) from None
    return TokenGrant(
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]),
        expires_at=expires_at,
        scope=str(body.get("scope") or ""),
        server_endpoint=_short(body.get("server_endpoint"), ENDPOINT_MAX_LENGTH),
        client_endpoint=_short(body.get("client_endpoint"), ENDPOINT_MAX_LENGTH),
        member_id=_short(body.get("member_id"), MEMBER_ID_LENGTH),
        user_id=user_id if user_id is not None and 0 <= user_id <= USER_ID_MAX else None,
        domain=str(body.get("domain") or ""),
        status=_app_status(body.get("status")),
    )


def _app_status(value: object) -> str:
    """Bitrix24's one-letter app status (L/F/D/T/P/S); anything else is not kept."""
    text = str(value or "")
    return text if text in APP_STATUSES else ""


def _object(value: object) -> dict[str, Any]:
    """A JSON object from the answer, or {} when the server sent anything else there."""
    return value if isinstance(value, dict) else {}


def _short(value: object, limit: int) -> str:
    text = str(value or "")
    return text if len(text) <= limit else ""


__all__ = [
    "AppInfo",
    "BitrixOAuthClient",
    "OAuthError",
    "TokenGrant",
    "auth_server_from_endpoint",
    "authorize_url",
]
