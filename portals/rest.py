"""A Bitrix24 REST client that cannot burn a portal (docs/bitrix24-protocol.md §4.3, §5).

    from portals.rest import Bitrix24, RestError
    b24 = Bitrix24("token")                          # by reference
    b24.call("crm.lead.get", {"id": 42})             # -> the "result" value
    b24.batch({"a": ("crm.lead.get", {"id": 1}), "b": ("user.current", {})}, halt=False)
    for lead in b24.iterate("crm.lead.list", {"select": ["ID", "TITLE"]}):
        ...

Every HTTP request:
1. takes the token by reference from the token service (refreshed first if it has less than a
   minute left), so a refresh stays single across processes;
2. waits for its turn in the portal's leaky bucket, shared by every process and machine
   (portals.ratelimit; the portal's rest_rate and rest_burst), so the portal never has to say
   QUERY_LIMIT_EXCEEDED;
3. POSTs JSON to the token's client_endpoint (portals.restwire), and then:
   - expired_token: one refresh through the single-flight service, then the call once more;
   - invalid_token / NO_AUTH_FOUND: the same, and if it persists the token is marked and an
     incident opens, as for a failed refresh;
   - QUERY_LIMIT_EXCEEDED / OPERATION_TIME_LIMIT (another app on our address, an exhausted
     method budget): retried with backoff until BITRIX_REST_DEADLINE;
   - a redirect (a renamed portal): followed once, as a POST, only after the authorization
     server confirms the portal moved; the new address is stored.
BITRIX_REST_DEADLINE bounds each HTTP request, waits and retries included; batch and iterate
make several.
"""

import logging
import math
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

from django.conf import settings
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ops import metrics
from portals import lifecycle, ratelimit, restwire, service, tokens
from portals.errors import status_for
from portals.models import RefreshAttempt, Token
from portals.restwire import RestError

__all__ = ["BatchResult", "Bitrix24", "RestError"]
log = logging.getLogger(__name__)

BATCH_LIMIT = 50  # commands per batch request (§5.3)
PAGE = 50  # rows per list page (§5.2)
# Answers that mean "not now": retried with backoff (base seconds), never shown to the caller
# before the deadline.
RETRIED = {"query_limit_exceeded": 0.5, "operation_time_limit": 1.0}
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


class Bitrix24:
    """REST calls on the portal of the token `reference`. Cheap to build; holds no token (it
    is read from the token service for every request), so it may live as long as you like."""

    # A token expiring sooner than this is refreshed before a call rather than after it fails.
    MIN_TTL = 60

    def __init__(self, reference: str, *, deadline: float | None = None) -> None:
        self.reference = reference
        self.deadline = settings.BITRIX_REST_DEADLINE if deadline is None else deadline

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call `method`; its `result`. RestError, or the token service's errors."""
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
        token = tokens.get_token(self.reference, self.MIN_TTL)
        while True:
            root = restwire.endpoint(token)
            self._wait_turn(token, tries)
            body = {**(params or {}), "auth": token.access_token}
            try:
                return restwire.post(root, method, body, tries.deadline - time.monotonic())
            except restwire.Moved as moved:
                token = self._follow(token, moved.location, tries)
            except RestError as err:
                token = self._recover(token, err, tries)

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

    def _wait_turn(self, token: Token, tries: _Tries) -> None:
        portal = token.portal
        rate = portal.rest_rate
        burst = max(1.0, portal.rest_burst - math.ceil(rate * ARRIVAL_JITTER) - 1)
        left = tries.deadline - time.monotonic()
        turn = ratelimit.reserve(f"portal:{portal.pk}", rate, burst, max_wait=max(0.0, left))
        if not turn.granted:
            raise RestError(
                "QUERY_LIMIT_EXCEEDED",
                f"Portal {portal.domain} has no free turn for {turn.wait:.0f} s (its rate: "
                f"{rate:g} per second); BITRIX_REST_DEADLINE would pass first.",
                "Make fewer calls (batch them), or raise BITRIX_REST_DEADLINE.",
                permanent=False,
            )
        if turn.wait > 0:
            time.sleep(turn.wait)

    def _recover(self, token: Token, err: RestError, tries: _Tries) -> Token:
        """The token to try again with, or raise."""
        if err.entry.refresh_first:
            if not tries.renewed:
                tries.renewed = True
                return self._renew(token)
            if err.permanent:  # a fresh token did not help: a person must act
                started = timezone.now()
                kind = RefreshAttempt.Kind.ON_DEMAND
                service.record_failure(token, kind, err, started, 0, status=status_for(err))
            raise err
        base = RETRIED.get(err.code.lower())
        if base is None:
            raise err
        delay = min(BACKOFF_MAX, base * 2**tries.backoffs) * random.uniform(1.0, 1.5)
        tries.backoffs += 1
        if time.monotonic() + delay > tries.deadline:
            raise err
        log.warning("portal %s answered %s; retrying in %.1f s", token.portal, err.code, delay)
        time.sleep(delay)
        return token

    def _renew(self, token: Token) -> Token:
        """A token the portal did not take: take the one another process stored meanwhile,
        or refresh (single flight: one refresh however many callers get here at once)."""
        current = service.load(pk=token.pk)
        if current.version != token.version:
            return current
        renewed = tokens.refresh_token(current, RefreshAttempt.Kind.ON_DEMAND, wait=True)
        return renewed or service.load(pk=token.pk)

    def _follow(self, token: Token, location: str, tries: _Tries) -> Token:
        """A renamed portal: confirm, store the new address, and send the request there."""
        if tries.moved:
            raise restwire.RestError(
                "portal_moved",
                f"Portal {token.portal.domain} redirected twice in one request.",
                "Check the portal's address in Bitrix24, then re-connect it.",
                302,
                permanent=True,
            )
        tries.moved = True
        move = restwire.confirm_move(token, location, tries.deadline - time.monotonic())
        host = move.domain
        try:
            lifecycle.move_portal(move.member_id, host, move.endpoint)
        except lifecycle.PortalMoveRefused as err:
            raise RestError("portal_moved", str(err), permanent=True, status=302) from None
        token.client_endpoint, token.portal.domain = move.endpoint, host
        return token


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
