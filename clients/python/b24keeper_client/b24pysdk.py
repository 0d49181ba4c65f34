"""b24pysdk with its token from b24keeper.

    token = keeper_token(keeper, "crm")       # a b24pysdk BitrixToken
    token.call_method("user.current")
    token.get_client().crm.lead.list().result

b24pysdk refreshes an OAuth token by itself (before a call once it has expired, and after
expired_token, once) against Bitrix24's OAuth server with the app's secret: b24keeper's next
refresh would then fail. The token made here holds neither the refresh token nor the secret;
its refresh asks b24keeper instead: the current token, or, when the portal refused the one it
had, a renewal (b24keeper refreshes once for everybody).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from b24pysdk.credentials.bitrix_app import AbstractBitrixApp
from b24pysdk.credentials.bitrix_token import BitrixToken

from b24keeper_client import KeeperClient

__all__ = ["KeeperToken", "keeper_token"]
# b24pysdk treats a token without a refresh token as one it may not renew; the real refresh
# token stays in b24keeper.
PLACEHOLDER = "held-by-b24keeper"


class _KeeperApp(AbstractBitrixApp):
    """Stands for the app (b24pysdk treats a token without one as a webhook), with no secret:
    the OAuth server is never asked from here."""

    client_id = "b24keeper"
    client_secret = ""

    def get_oauth_token(self, code: str, **kwargs: Any) -> Any:
        raise RuntimeError("b24keeper connects portals; this token cannot exchange codes.")

    def refresh_oauth_token(self, refresh_token: str, **kwargs: Any) -> Any:
        raise RuntimeError("b24keeper refreshes this token (KeeperToken renews through it).")


class KeeperToken(BitrixToken):
    """A BitrixToken whose access token comes from b24keeper."""

    def __init__(self, keeper: KeeperClient, reference: str) -> None:
        self.keeper, self.reference = keeper, reference
        super().__init__(domain="", auth_token="", refresh_token=PLACEHOLDER,
                         bitrix_app=_KeeperApp())  # fmt: skip
        self._take(keeper.token(reference))

    def refresh_and_set_oauth_token(self, **kwargs: Any) -> None:
        """Instead of Bitrix24's OAuth server: b24keeper's current token, or a renewal when
        that is the one the portal just refused."""
        data = self.keeper.token(self.reference)
        if data["access_token"] == self.auth_token and not self.has_expired:
            data = self.keeper.renew(self.reference, self.auth_token)
        self._take(data)

    def _take(self, data: dict[str, Any]) -> None:
        self.domain = urlsplit(data["client_endpoint"]).netloc or data["domain"]
        self.auth_token = data["access_token"]
        self.refresh_token = PLACEHOLDER
        self.expires = datetime.fromtimestamp(int(data["expires"]), UTC)
        self.expires_in = int(data["expires_in"])


def keeper_token(client: KeeperClient, reference: str) -> KeeperToken:
    """A b24pysdk token for `reference` that renews through b24keeper, never through
    Bitrix24's OAuth server."""
    return KeeperToken(client, reference)
