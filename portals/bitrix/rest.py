"""The Bitrix24 REST client's machinery (docs/bitrix24-protocol.md §4.3, §5): calls, batches of
any size, list paging, the portal's shared rate limit, and what to do with each answer. Plain:
it holds no model and no token; a `Keeper` hands it a `Credential` for every HTTP request and
is told when the portal refused the token or moved. portals.rest binds it to the token service
(`Bitrix24`, the public class); the REST proxy may bind it to something else.

Every HTTP request:
1. takes a credential from the keeper (the token service refreshes one with less than a minute
   left first, so a refresh stays single across processes);
2. waits for its turn in the portal's leaky bucket, shared by every process and machine
   (portals.bitrix.ratelimit), so the portal never has to say QUERY_LIMIT_EXCEEDED;
3. POSTs JSON to the credential's REST root (portals.bitrix.transport), and then does what the
   error table (portals.bitrix.errors) says of the answer:
   - `refresh_first` (expired_token, invalid_token, NO_AUTH_FOUND): the keeper renews the
     token once (single flight), and the call goes again; if a permanent one persists, the
     keeper is told (the token is marked, an incident opens);
   - a `retry_base` (QUERY_LIMIT_EXCEEDED, OPERATION_TIME_LIMIT): retried with backoff until
     the deadline;
   - a redirect (a renamed portal): followed once, as a POST, only after the authorization
     server confirms the portal moved; the keeper stores the new address.
The deadline (BITRIX_REST_DEADLINE) bounds each HTTP request, waits and retries included;
batch and iterate make several.
"""

import logging
import math
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlencode

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from ops.record import metrics
from portals.bitrix import ratelimit, transport
from portals.bitrix.transport import Credential, PortalMove, RestError

__all__ = ["BatchResult", "Credential", "Keeper", "PortalMove", "RestClient", "RestError"]
log = logging.getLogger(__name__)

BATCH_LIMIT = 50  # commands per batch request (§5.3)
PAGE = 50  # rows per list page (§5.2)
BACKOFF_MAX = 15.0
# A request reaches the portal a little after its turn began (scheduling, the network, a busy
# machine stalling several processes at once). Keep this many seconds of the portal's rate as
# headroom below its burst, so that requests delayed and then arriving together still fit
# (docs/bitrix24-protocol.md §5.5). It costs part of the first burst, not the sustained rate.
ARRIVAL_JITTER = 1.0
_RESULT_REF = re.compile(r"\$result\[([^\]]+)\]")


@dataclass
class BatchResult:
    """Per-command results and errors of a batch, keyed by the names given."""

    results: dict[Any, Any] = field(default_factory=dict)
    errors: dict[Any, RestError] = field(default_factory=dict)
    totals: dict[Any, int] = field(default_factory=dict)  # list commands: total rows
    next: dict[Any, int] = field(default_factory=dict)  # list commands: the next `start`


@dataclass
class _Tries:
    """What one HTTP request has been through."""

    deadline: float
    renewed: bool = False
    moved: bool = False
    backoffs: int = 0


class Keeper(Protocol):
    """Where a RestClient gets its credential, and whom it tells what the portal said."""

    def current(self) -> Credential:
        """A credential to call with now (refreshed first when about to expire)."""
        ...

    def renew(self, refused: Credential) -> Credential:
        """The portal did not take `refused`: a newer credential (refreshed once, single
        flight, unless another process stored one meanwhile)."""
        ...

    def refused(self, credential: Credential, err: RestError) -> None:
        """A fresh credential was refused too, permanently: a person must act."""
        ...

    def moved(self, credential: Credential, move: PortalMove) -> Credential:
        """The authorization server confirmed the portal's new address: store it; the
        credential to call there with."""
        ...


class RestClient:
    """REST calls through one keeper. Holds no token (the keeper is asked for every request),
    so it may live as long as you like."""

    def __init__(self, keeper: Keeper, *, deadline: float | None = None) -> None:
        self.keeper = keeper
        self.deadline = settings.BITRIX_REST_DEADLINE if deadline is None else deadline

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call `method`; its `result`. RestError, or the keeper's errors."""
        return self.request(method, params)["result"]

    @sensitive_variables()
    def request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call `method`; the whole envelope (`result`, and `total`, `next`, `time`)."""
        try:
            envelope = self._request(method, params)
        except RestError as err:
            metrics.rest_call("permanent_error" if err.permanent else "transient_error")
            raise
        metrics.rest_call("success")
        return envelope

    def _request(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        tries = _Tries(time.monotonic() + self.deadline)
        credential = self.keeper.current()
        while True:
            self._wait_turn(credential, tries)
            body = {**(params or {}), "auth": credential.access_token}
            left = tries.deadline - time.monotonic()
            try:
                return transport.post(credential.root, method, body, left)
            except transport.Moved as moved:
                credential = self._follow(credential, moved.location, tries)
            except RestError as err:
                credential = self._recover(credential, err, tries)

    def batch(
        self, commands: Mapping[Any, tuple[str, Mapping[str, Any]]], halt: bool = False
    ) -> BatchResult:
        """Run any number of commands, 50 to a request. `halt`: stop at the first request
        with a failed command (and, as Bitrix does, at that command)."""
        wire_names = {str(name): name for name in commands}
        if len(wire_names) != len(commands):
            raise ValueError("Two batch commands have the same name once written as text.")
        names = list(wire_names)
        chunks = [names[i : i + BATCH_LIMIT] for i in range(0, len(names), BATCH_LIMIT)]
        encoded = {str(name): _command(*command) for name, command in commands.items()}
        _check_references(encoded, chunks)
        out = BatchResult()
        for chunk in chunks:
            cmd = {name: encoded[name] for name in chunk}
            envelope = self.request("batch", {"halt": int(halt), "cmd": cmd})
            failed = _merge(out, envelope.get("result") or {}, wire_names)
            if halt and failed:
                break
        return out

    def iterate(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        fast: bool = False,
        id_field: str = "ID",
    ) -> Iterator[Any]:
        """Every row of a list method, page by page (`start`/`next`, §5.2). fast=True pages
        by `id_field > last` in ascending order with `start=-1`, which spares Bitrix24 from
        counting the whole list: use it for big lists (it replaces any `order`)."""
        params = dict(params or {})
        if fast:
            yield from self._iterate_by_id(method, params, id_field)
            return
        start = params.pop("start", 0)
        while True:
            envelope = self.request(method, {**params, "start": start})
            yield from _rows(envelope.get("result"))
            following = envelope.get("next")
            if following is None or following == "" or int(following) <= int(start):
                return
            start = following

    def _iterate_by_id(self, method: str, params: dict[str, Any], id_field: str) -> Iterator[Any]:
        select = params.get("select")
        if select and id_field not in select and "*" not in select:
            params["select"] = [*select, id_field]
        conditions = dict(params.pop("filter", None) or {})
        last: Any = 0
        while True:
            page = self.request(
                method,
                {**params, "order": {id_field: "ASC"}, "start": -1,
                 "filter": {**conditions, f">{id_field}": last}},
            )  # fmt: skip
            rows = _rows(page.get("result"))
            yield from rows
            if len(rows) < PAGE:
                return
            last = rows[-1][id_field]

    # -- one request's troubles -----------------------------------------------------------

    def _wait_turn(self, credential: Credential, tries: _Tries) -> None:
        rate, burst = credential.rate, usable_burst(credential)
        left = tries.deadline - time.monotonic()
        turn = ratelimit.reserve(credential.bucket, rate, burst, max_wait=max(0.0, left))
        if not turn.granted:
            raise RestError(
                "QUERY_LIMIT_EXCEEDED",
                f"Portal {credential.domain} has no free turn for {turn.wait:.0f} s (its rate: "
                f"{rate:g} per second); BITRIX_REST_DEADLINE would pass first.",
                "Make fewer calls (batch them), or raise BITRIX_REST_DEADLINE.",
            )
        if turn.wait > 0:
            time.sleep(turn.wait)

    def _recover(self, credential: Credential, err: RestError, tries: _Tries) -> Credential:
        """The credential to try again with, or raise."""
        entry = err.entry
        if entry.refresh_first:
            if not tries.renewed:
                tries.renewed = True
                return self.keeper.renew(credential)
            if err.permanent:  # a fresh token did not help: a person must act
                self.keeper.refused(credential, err)
            raise err
        if entry.retry_base is None:
            raise err
        delay = min(BACKOFF_MAX, entry.retry_base * 2**tries.backoffs) * random.uniform(1.0, 1.5)
        tries.backoffs += 1
        if time.monotonic() + delay > tries.deadline:
            raise err
        log.warning("portal %s answered %s; retrying in %.1f s", credential.domain, err.code,
                    delay)  # fmt: skip
        time.sleep(delay)
        return credential

    def _follow(self, credential: Credential, location: str, tries: _Tries) -> Credential:
        """A renamed portal: confirm, have the keeper store the new address, send it there."""
        if tries.moved:
            raise RestError(
                "portal_moved",
                f"Portal {credential.domain} redirected twice in one request.",
                "Check the portal's address in Bitrix24, then re-connect it.",
                302,
            )
        tries.moved = True
        move = transport.confirm_move(credential, location, tries.deadline - time.monotonic())
        return self.keeper.moved(credential, move)


def usable_burst(credential: Credential) -> float:
    """The burst b24keeper's callers may use of the portal's: ARRIVAL_JITTER seconds of its
    rate kept as headroom (the REST client and the REST proxy share one bucket this way)."""
    return max(1.0, credential.burst - math.ceil(credential.rate * ARRIVAL_JITTER) - 1)


# -- batch helpers -------------------------------------------------------------------------------


def _command(method: str, params: Mapping[str, Any]) -> str:
    """`crm.lead.list?filter[>ID]=5&select[0]=ID`: a batch command, PHP-style (§5.3)."""
    query = php_query(params)
    return f"{method}?{query}" if query else method


def php_query(params: Mapping[str, Any]) -> str:
    """PHP's http_build_query: nested maps and lists as `key[sub][0]=value`."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "1" if value else "0"))
        else:
            pairs.append((prefix, "" if value is None else str(value)))

    walk("", params)
    return urlencode(pairs)


def _check_references(encoded: dict[str, str], chunks: list[list[str]]) -> None:
    """A `$result[name]` only works within one batch request: refuse one that would cross."""
    chunk_of = {name: index for index, chunk in enumerate(chunks) for name in chunk}
    for name, command in encoded.items():
        for ref in _RESULT_REF.findall(unquote(command)):
            if ref in chunk_of and chunk_of[ref] != chunk_of[name]:
                raise ValueError(
                    f"Batch command “{name}” uses $result[{ref}], but “{ref}” goes in another "
                    f"request of {BATCH_LIMIT} commands, where its result is not known. Put "
                    "commands that refer to each other within the same 50. Nothing was sent."
                )


def _merge(out: BatchResult, part: Any, names: dict[str, Any]) -> bool:
    """Add one batch answer to `out`; True when a command failed. Empty maps arrive as []."""
    failed = False
    for name, value in _as_map(part.get("result")).items():
        out.results[names.get(name, name)] = value
    for name, value in _as_map(part.get("result_error")).items():
        failed = True
        value = value if isinstance(value, dict) else {"error": str(value)}
        code, description = value.get("error") or "batch_error", value.get("error_description")
        out.errors[names.get(name, name)] = RestError.from_answer(
            str(code), str(description or ""), None
        )
    for name, value in _as_map(part.get("result_total")).items():
        out.totals[names.get(name, name)] = int(value)
    for name, value in _as_map(part.get("result_next")).items():
        out.next[names.get(name, name)] = int(value)
    return failed


def _as_map(value: Any) -> dict[str, Any]:
    """PHP sends an empty map as [] and a map with keys 0..n-1 as a list."""
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {}


def _rows(result: Any) -> list[Any]:
    """A list page's rows: a list, or (tasks.task.list and the like) a map holding one."""
    if isinstance(result, list):
        return result
    if isinstance(result, dict):
        lists = [value for value in result.values() if isinstance(value, list)]
        return lists[0] if len(lists) == 1 else list(result.values())
    return []
