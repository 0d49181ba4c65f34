"""fast_bitrix24 with its token from b24keeper.

    b = bitrix_for(keeper, "crm")                       # fast_bitrix24.Bitrix
    b = bitrix_for(keeper, "crm", asynchronous=True)     # fast_bitrix24.BitrixAsync
    b = bitrix_for(keeper, "crm", proxy=True)            # through the REST proxy: no token
    b = bitrix_for("https://keeper…/rest/7/b24k_…/", "crm", proxy=True)   # a webhook URL

fast_bitrix24 asks its `token_func` for a token at first and again after every HTTP 401. The
one made here takes the first from b24keeper and, after a 401, tells b24keeper which token the
portal refused (renew), so b24keeper refreshes once for everybody, or hands out the one it
already has. At most MAX_RENEWALS renewals per call: after that the 401 reaches the caller as
TokenRefused (no endless loop), and the client object stays usable (fast_bitrix24 itself would
hang every later call after a token_func error).
"""

from __future__ import annotations

from typing import Any

from fast_bitrix24 import Bitrix, BitrixAsync
from fast_bitrix24.srh import ServerRequestHandler

from b24keeper_client import KeeperClient, KeeperError

__all__ = ["MAX_RENEWALS", "TokenRefused", "bitrix_for"]
MAX_RENEWALS = 2


class TokenRefused(Exception):
    """The portal refused the token, and renewing it through b24keeper did not help."""


class KeeperTokens:
    """fast_bitrix24's token_func: the first token from b24keeper, then renewals."""

    def __init__(self, keeper: KeeperClient, reference: str) -> None:
        self.keeper, self.reference = keeper, reference
        self.current: str | None = None
        self.renewals = 0  # since the last successful request

    async def fetch(self) -> str:
        """The token_func (fast_bitrix24 wants an async function)."""
        if self.current is None:
            self.current = (await self.keeper.atoken(self.reference))["access_token"]
            return self.current
        if self.renewals >= MAX_RENEWALS:
            self.renewals = 0  # the next call may try again
            raise TokenRefused(
                f"The portal refused token {self.reference!r} after {MAX_RENEWALS} renewals "
                "through b24keeper; see the token in b24keeper's admin."
            )
        self.renewals += 1
        try:
            self.current = (await self.keeper.arenew(self.reference, self.current))["access_token"]
        except KeeperError as err:
            raise TokenRefused(str(err)) from err
        return self.current


class _KeeperHandler(ServerRequestHandler):
    """fast_bitrix24's request handler, told of successes (the renewal count starts over)
    and never left waiting for a token after token_func raised."""

    keeper_tokens: KeeperTokens

    def success(self) -> None:
        super().success()
        self.keeper_tokens.renewals = 0

    async def ensure_new_token(self) -> None:
        try:
            await super().ensure_new_token()
        finally:
            self.token_received.set()


def bitrix_for(
    client_or_url: KeeperClient | str,
    reference: str,
    *,
    proxy: bool = False,
    asynchronous: bool = False,
    **kw: Any,
) -> BitrixAsync:
    """A fast_bitrix24 client for the token `reference` (kw: fast_bitrix24's own options)."""
    cls = BitrixAsync if asynchronous else Bitrix
    if proxy:
        if isinstance(client_or_url, str):
            return cls(client_or_url, **kw)
        return cls(client_or_url.proxy_url(reference), **kw)
    if not isinstance(client_or_url, KeeperClient):
        raise TypeError("Without proxy=True, give a KeeperClient (a token comes from it).")
    tokens = KeeperTokens(client_or_url, reference)
    root = client_or_url.token(reference)["client_endpoint"]
    b = cls(root, token_func=tokens.fetch, **kw)
    handler = _KeeperHandler.__new__(_KeeperHandler)
    handler.__dict__.update(b.srh.__dict__)  # the same settings fast_bitrix24 gave its own
    handler.keeper_tokens = tokens
    b.srh = handler
    return b
