"""b24keeper's token API from Python, without Django.

    keeper = KeeperClient("https://keeper.example.com", "b24k_…")
    keeper.token("crm")                   # the token API's JSON: access_token, expires, …
    keeper.renew("crm", refused_token)    # the portal refused it: a working one
    await keeper.atoken("crm"); await keeper.arenew("crm", refused_token)
    keeper.proxy_url("crm")               # the webhook-shaped REST proxy address

Errors are KeeperError, with the HTTP status, b24keeper's error code, its sentence and, where
b24keeper sent one, Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import requests

__all__ = ["KeeperClient", "KeeperError"]


class KeeperError(Exception):
    """b24keeper said no: `status` (HTTP), `error` (its code), `detail` (what to do),
    `retry_after` (seconds, or None)."""

    def __init__(
        self, status: int, error: str, detail: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after


class KeeperClient:
    """The token API of one b24keeper, with one API key. Thread-safe; keeps connections."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        self._session = requests.Session()
        self._session.verify = verify
        self._session.headers["Authorization"] = f"Bearer {api_key}"

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"KeeperClient({self.base_url!r})"

    def token(self, reference: str, min_ttl: int | None = None) -> dict[str, Any]:
        """GET /api/tokens/<reference>/: a token valid for at least min_ttl seconds (300)."""
        params = {"min_ttl": min_ttl} if min_ttl is not None else None
        return self._answer(self._session.get(self._url(reference), params=params,
                                              timeout=self.timeout))  # fmt: skip

    def renew(self, reference: str, rejected: str) -> dict[str, Any]:
        """POST /api/tokens/<reference>/renew/: `rejected` is the access token the portal
        refused (only its SHA-256 travels). The stored token if it is already another one;
        otherwise b24keeper refreshes once (at most once a minute per token: then KeeperError
        429 renew_limited)."""
        body = {"rejected": hashlib.sha256(rejected.encode()).hexdigest()}
        response = self._session.post(
            self._url(reference) + "renew/", json=body, timeout=self.timeout
        )
        return self._answer(response)

    async def atoken(self, reference: str, min_ttl: int | None = None) -> dict[str, Any]:
        """token() for async code (in a worker thread)."""
        return await asyncio.to_thread(self.token, reference, min_ttl)

    async def arenew(self, reference: str, rejected: str) -> dict[str, Any]:
        """renew() for async code (in a worker thread)."""
        return await asyncio.to_thread(self.renew, reference, rejected)

    def proxy_url(self, reference: str | int) -> str:
        """The REST proxy's webhook address for a token, by reference (read through the token
        API, so the key needs the `token` scope too) or by its numeric id. Give it to any
        Bitrix24 library as its inbound webhook: b24keeper adds the token (the key needs the
        `proxy` scope)."""
        token_id = reference if isinstance(reference, int) else self.token(reference)["id"]
        return f"{self.base_url}/rest/{int(token_id)}/{self._api_key}/"

    def close(self) -> None:
        self._session.close()

    def _url(self, reference: str) -> str:
        return f"{self.base_url}/api/tokens/{requests.utils.quote(reference, safe='')}/"

    @staticmethod
    def _answer(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict):
            return body
        body = body if isinstance(body, dict) else {}
        retry = response.headers.get("Retry-After")
        raise KeeperError(
            response.status_code,
            str(body.get("error") or f"http_{response.status_code}"),
            str(body.get("detail") or "b24keeper did not answer with JSON."),
            float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
        )
