"""Client programs for tests/clients/python: each runs a real library, as a consumer would,
against the live b24keeper, and prints one JSON line of what happened. Run as
`python -m tests.clients.python.scenarios NAME BASE_URL KEY REFERENCE [...]`. No Django here.

Phases: a scenario that prints {"phase": ...} waits for a line on stdin before going on, so
the test can change the world (expire the token, make the portal refuse it) in between.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from b24keeper_client import KeeperClient


def say(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def pause(phase: str) -> None:
    say(phase=phase)
    sys.stdin.readline()


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as err:  # what reaches the caller
        return f"error:{type(err).__name__}"
    return "ok"


def fast(base: str, key: str, ref: str) -> None:
    """fast_bitrix24 through token_func: calls across an expiry, a refused token, a refusal
    that persists, and a call after that on the same client object."""
    from b24keeper_client.fast_bitrix24 import bitrix_for

    b = bitrix_for(KeeperClient(base, key), ref, verbose=False)
    first = [b.call("user.current", raw=True)["result"]["ID"] for _ in range(3)]
    pause("expire")
    second = [b.call("user.current", raw=True)["result"]["ID"] for _ in range(3)]
    pause("refuse")
    third = outcome(lambda: b.call("user.current", raw=True))
    pause("refuse-forever")
    fourth = outcome(lambda: b.call("user.current", raw=True))
    pause("heal")
    fifth = outcome(lambda: b.call("user.current", raw=True))
    say(first=first, second=second, third=third, fourth=fourth, fifth=fifth)


def fast_async(base: str, key: str, ref: str) -> None:
    from b24keeper_client.fast_bitrix24 import bitrix_for

    async def main() -> list[Any]:
        b = bitrix_for(KeeperClient(base, key), ref, asynchronous=True, verbose=False)
        calls = [b.call("user.current", raw=True) for _ in range(4)]
        return [answer["result"]["ID"] for answer in await asyncio.gather(*calls)]

    say(ids=asyncio.run(main()))


def pysdk(base: str, key: str, ref: str) -> None:
    """b24pysdk with keeper_token: calls across an expiry and after a refused token."""
    from b24keeper_client.b24pysdk import keeper_token

    token = keeper_token(KeeperClient(base, key), ref)
    first = [token.call_method("user.current")["result"]["ID"] for _ in range(2)]
    pause("expire")
    second = [token.call_method("user.current")["result"]["ID"] for _ in range(2)]
    pause("refuse")
    third = token.call_method("user.current")["result"]["ID"]
    say(first=first, second=second, third=third)


def proxy(base: str, key: str, ref: str) -> None:
    """Through the REST proxy: fast_bitrix24's call, a batch it splits, list paging; and
    b24pysdk given the proxy as its webhook."""
    from urllib.parse import urlsplit

    from b24keeper_client.fast_bitrix24 import bitrix_for
    from b24pysdk import BitrixWebhook

    keeper = KeeperClient(base, key)
    url = keeper.proxy_url(ref)
    b = bitrix_for(url, ref, proxy=True, verbose=False)
    me = b.call("user.current", raw=True)["result"]["ID"]
    leads = b.get_all("crm.lead.list", {"select": ["ID"]})
    got = b.call("crm.lead.get", [{"id": i} for i in range(1, 121)])
    parts = urlsplit(url).path.strip("/").split("/")  # rest/<id>/<key>
    hook = BitrixWebhook(domain=urlsplit(url).netloc, webhook_token=f"{parts[1]}/{parts[2]}")
    sdk_me = hook.call_method("user.current")["result"]["ID"]
    say(me=me, leads=len(leads), got=len(got), sdk_me=sdk_me)


def proxy_load(url: str, calls: str) -> None:
    """One of several processes calling through the proxy at once."""
    from fast_bitrix24 import Bitrix

    b = Bitrix(url, verbose=False)
    ids = [b.call("user.current", raw=True)["result"]["ID"] for _ in range(int(calls))]
    say(calls=len(ids))


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
