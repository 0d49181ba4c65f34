"""The fake portals' REST API: `/rest/{method}[.json]` (docs/bitrix24-protocol.md §4.3, §5, §10).

`PortalRest` is mixed into `FakeBitrix` (bitrix.py) next to `BitrixState`, whose tokens it
checks. A portal is the request's Host header: connect a portal as `localhost:PORT` (the fake's
port) and the token's `client_endpoint` is `http://localhost:PORT/rest/`, so the REST client
reaches the fake through its production code path. `FakeBitrix.extra_host()` opens a second
port, i.e. a second host, for a renamed portal.

Rules: a leaky bucket per portal (`rest_rate`, `rest_burst`; QUERY_LIMIT_EXCEEDED 503), auth
from `auth`, `access_token` or a Bearer header, the §4.3 errors with their statuses, `batch`
(50 commands, `halt`, `$result[...]`, `[]` for empty maps), list paging with `total`/`next`
(`start=-1`: no count), a 302 for a renamed portal, and a few methods: `scope`,
`crm.lead.add`, `crm.lead.get`, `crm.lead.list` (`user.*`, `profile` and `event.*` are in
bitrix_apps.py).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Body = dict[str, Any]
Reply = tuple[int, Body]

# §4.3: code -> (HTTP status, description). Where sources disagree, the docs' status.
REST_ERRORS: dict[str, tuple[int, str]] = {
    "expired_token": (401, "The access token provided has expired"),
    "invalid_token": (401, "Unable to get application by token"),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "ERROR_OAUTH": (401, "Application not installed"),
    "APPLICATION_NOT_FOUND": (401, "Application not found"),
    "authorization_error": (401, "Unable to authorize user"),
    "insufficient_scope": (
        403,
        "The request requires higher privileges than provided by the access token",
    ),
    "QUERY_LIMIT_EXCEEDED": (503, "Too many requests"),
    "OPERATION_TIME_LIMIT": (429, "Method is blocked due to operation time limit"),
    "OVERLOAD_LIMIT": (503, "REST API is blocked due to overload"),
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    "PORTAL_DELETED": (500, "Portal was deleted"),
    "INTERNAL_SERVER_ERROR": (500, "Internal server error"),
}
PAGE = 50
BATCH_MAX = 50
_RESULT_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


class RestFailure(Exception):
    def __init__(self, code: str, description: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status, default = REST_ERRORS.get(code, (400, ""))
        self.description = default if description is None else description

    def body(self) -> Body:
        return {"error": self.code, "error_description": self.description}


@dataclass
class Bucket:
    rate: float
    burst: float
    level: float = 0.0
    at: float = 0.0
    max_level: float = 0.0  # the fullest it has been


@dataclass
class RestCall:
    """One observed REST request."""

    host: str
    http_method: str
    method: str
    auth_via: str | None  # "auth", "access_token", "bearer" or None
    content_type: str
    status: int
    error: str | None
    t: float
    target: str = ""  # path and query as requested
    args: Body = field(default_factory=dict)  # the parameters, without the credential
    commands: int = 0  # batch: commands received


@dataclass
class _Fault:
    code: str
    method: str | None
    left: int


@dataclass
class _PortalData:
    leads: list[dict[str, Any]] = field(default_factory=list)


class PortalRest:
    """REST state and rules; expects BitrixState's attributes (lock, tokens, portals)."""

    def __init__(self) -> None:
        super().__init__()
        self.rest_latency = 0.0  # seconds each REST answer takes
        self.rest_rate = 2.0
        self.rest_burst = 50.0
        self.rest_calls: list[RestCall] = []
        self._buckets: dict[str, Bucket] = {}
        self._rest_faults: list[_Fault] = []
        self._renamed: dict[str, str] = {}
        self._portal_data: dict[str, _PortalData] = {}

    # -- knobs ---------------------------------------------------------------------------

    def set_rest_limit(self, rate: float, burst: float, domain: str | None = None) -> None:
        """The bucket of `domain` (every portal's, by default, also for new ones)."""
        with self._lock:
            if domain is None:
                self.rest_rate, self.rest_burst = rate, burst
                self._buckets.clear()
            else:
                self._buckets[domain] = Bucket(rate, burst, at=self.now())

    def rest_fail_next(self, code: str, count: int = 1, method: str | None = None) -> None:
        """The next `count` calls (of `method`, or any) answer the §4.3 error `code`."""
        with self._lock:
            self._rest_faults.append(_Fault(code, method and method.lower(), count))

    def rename_portal(self, old: str, new: str) -> None:
        """The portal at host `old` now lives at `new`: `old` answers 302 to `new`, the
        authorization server's app.info names `new`, tokens keep working (same member_id)."""
        with self._lock:
            portal = self._portal(old)
            del self._portals[old]
            portal.domain = new
            self._portals[new] = portal
            for grant in self._by_refresh.values():
                if grant.domain == old:
                    grant.domain = new
            for grant in self._by_access.values():
                if grant.domain == old:
                    grant.domain = new
            for client_id, domain in list(self._flags):
                if domain == old:
                    self._flags[(client_id, new)] = self._flags.pop((client_id, domain))
            self._portal_data[new] = self._portal_data.pop(old, _PortalData())
            self._renamed[old] = new

    def redirect_portal(self, old: str, new: str) -> None:
        """`old` answers 302 to `new` although the portal did not move (a hijacked or
        misconfigured host): app.info still names `old`."""
        with self._lock:
            self._renamed[old] = new

    def add_leads(self, domain: str, count: int) -> None:
        with self._lock:
            leads = self._data(domain).leads
            for _ in range(count):
                lead_id = len(leads) + 1
                leads.append({"ID": str(lead_id), "TITLE": f"Lead {lead_id}", "STATUS_ID": "NEW"})

    # -- observation ---------------------------------------------------------------------

    def rest_count(
        self, method: str | None = None, host: str | None = None, error: str | None = None
    ) -> int:
        with self._lock:
            return sum(
                1
                for call in self.rest_calls
                if (method is None or call.method == method.lower())
                and (host is None or call.host == host)
                and (error is None or call.error == error)
            )

    def bucket(self, domain: str) -> Bucket:
        with self._lock:
            return self._bucket(domain)

    # -- the request ---------------------------------------------------------------------

    def rest_reply(
        self, http_method: str, url: str, host: str, args: Body, bearer: str, content_type: str
    ) -> tuple[int, Body, dict[str, str]]:
        """Answer one REST request: (status, body, extra headers)."""
        method = urlsplit(url).path.removeprefix("/rest/").removesuffix(".json").lower()
        with self._lock:
            token, via = _credential(args, bearer)
            call = RestCall(host, http_method, method, via, content_type, 0, None, self.now(),
                            url, {k: v for k, v in args.items() if k != via})  # fmt: skip
            self.rest_calls.append(call)
            if host in self._renamed:  # §4.3: the old host redirects, path and query kept
                call.status = 302
                return 302, {}, {"Location": f"http://{self._renamed[host]}{url}"}
            call.status, body = self._answer(host, method, args, token)
            call.error = body.get("error") if isinstance(body.get("error"), str) else None
            if method == "batch":
                call.commands = len(_commands(args))
            return call.status, body, {}

    def _answer(self, host: str, method: str, args: Body, token: str) -> Reply:
        if not self._take_turn(host):
            return _failure(RestFailure("QUERY_LIMIT_EXCEEDED"))
        try:
            self._fault(method)
            grant = self._authenticate(host, token)
            if method == "batch":
                return 200, self._envelope(self._batch(grant, args))
            result, extra = self._run(grant, method, args)
        except RestFailure as failure:
            return _failure(failure)
        return 200, self._envelope(result) | extra

    def _bucket(self, domain: str) -> Bucket:
        if domain not in self._buckets:
            self._buckets[domain] = Bucket(self.rest_rate, self.rest_burst, at=self.now())
        return self._buckets[domain]

    def _take_turn(self, domain: str) -> bool:
        """§5.4: every request adds 1; the bucket drains `rate` a second; over `burst`, no."""
        bucket, now = self._bucket(domain), self.now()
        bucket.level = max(0.0, bucket.level - (now - bucket.at) * bucket.rate)
        bucket.at = now
        if bucket.level + 1 > bucket.burst + 1e-9:
            return False
        bucket.level += 1
        bucket.max_level = max(bucket.max_level, bucket.level)
        return True

    def _fault(self, method: str) -> None:
        for fault in self._rest_faults:
            if fault.left > 0 and fault.method in (None, method):
                fault.left -= 1
                raise RestFailure(fault.code)

    def _authenticate(self, host: str, token: str) -> Any:
        if not token:
            raise RestFailure("NO_AUTH_FOUND")
        grant = self._by_access.get(token)
        if grant is None or grant.domain != host:
            raise RestFailure("invalid_token")
        if not self.access_token_valid(token):
            raise RestFailure("expired_token")
        if not self._flag(grant.client_id, host, "installed"):
            raise RestFailure("ERROR_OAUTH")
        return grant

    def _envelope(self, result: Any) -> Body:
        return {"result": result, "time": self._time_envelope()}

    # -- methods -------------------------------------------------------------------------

    def _run(self, grant: Any, method: str, args: Body) -> tuple[Any, Body]:
        if method.startswith("crm.") and "crm" not in self._apps[grant.client_id].scope:
            raise RestFailure("insufficient_scope")
        served, result = self.app_method(grant, method, args)
        if served:
            return result, {}
        if method == "scope":
            return self._apps[grant.client_id].scope.split(","), {}
        leads = self._data(grant.domain).leads
        if method == "crm.lead.add":
            fields = args.get("fields") or {}
            lead = {"ID": str(len(leads) + 1), "TITLE": "", "STATUS_ID": "NEW"} | fields
            leads.append(lead)
            return int(lead["ID"]), {}
        if method == "crm.lead.get":
            found = [lead for lead in leads if lead["ID"] == str(args.get("id") or args.get("ID"))]
            if not found:
                raise RestFailure("NOT_FOUND", "Not found")
            return found[0], {}
        if method == "crm.lead.list":
            return _page(leads, args)
        raise RestFailure("ERROR_METHOD_NOT_FOUND")

    def app_method(self, grant: Any, method: str, args: Body) -> tuple[bool, Any]:
        """Filled by PortalApps (bitrix_apps.py): user.admin, user.current, event.*."""
        return False, None

    def _batch(self, grant: Any, args: Body) -> Body:
        """§5.3. Commands past the 50th are not run; `halt` stops at the first failure."""
        halt = str(args.get("halt", 0)).lower() in ("1", "true", "y")
        out: dict[str, Body] = {"result": {}, "result_error": {}, "result_total": {},
                                "result_next": {}, "result_time": {}}  # fmt: skip
        for index, (name, command) in enumerate(_commands(args).items()):
            if index >= BATCH_MAX:
                out["result_error"][name] = RestFailure(
                    "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"
                ).body()
                continue
            try:
                method, params = _parse_command(command, out["result"])
                if method == "batch":
                    raise RestFailure("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method not allowed")
                self._fault(method)
                result, extra = self._run(grant, method, params)
            except RestFailure as failure:
                out["result_error"][name] = failure.body()
                if halt:
                    break
                continue
            out["result"][name] = result
            out["result_time"][name] = {"start": self.now(), "finish": self.now()}
            if "total" in extra:
                out["result_total"][name] = extra["total"]
            if "next" in extra:
                out["result_next"][name] = extra["next"]
        # PHP serialises an empty array as [], never {}.
        return {key: value or [] for key, value in out.items()}

    def _data(self, domain: str) -> _PortalData:
        return self._portal_data.setdefault(domain, _PortalData())


# -- helpers ---------------------------------------------------------------------------------


def _failure(failure: RestFailure) -> Reply:
    return failure.status, failure.body()


def _credential(args: Body, bearer: str) -> tuple[str, str | None]:
    for name in ("auth", "access_token"):
        if args.get(name):
            return str(args[name]), name
    return (bearer, "bearer") if bearer else ("", None)


def _commands(args: Body) -> dict[str, str]:
    cmd = args.get("cmd") or {}
    if isinstance(cmd, list):
        return {str(index): str(value) for index, value in enumerate(cmd)}
    return {str(key): str(value) for key, value in cmd.items()} if isinstance(cmd, dict) else {}


def _parse_command(command: str, results: dict[str, Any]) -> tuple[str, Body]:
    method, _, query = command.partition("?")
    pairs = [(key, _substitute(value, results)) for key, value in parse_qsl(query, True)]
    return method.strip().lower().removesuffix(".json"), php_decode(pairs)


def _substitute(value: str, results: dict[str, Any]) -> str:
    """`$result[name][field][0]` -> that part of an earlier command's result."""

    def replace(match: re.Match[str]) -> str:
        found: Any = results.get(match.group(1))
        for key in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(found, list) and key.isdigit() and int(key) < len(found):
                found = found[int(key)]
            elif isinstance(found, dict):
                found = found.get(key)
            else:
                found = None
        return "" if found is None else str(found)

    return _RESULT_REF.sub(replace, value)


def php_decode(pairs: list[tuple[str, str]]) -> Body:
    """PHP's parse_str: `filter[>ID]=5&select[]=ID` -> {"filter": {">ID": "5"},
    "select": ["ID"]}."""
    out: Body = {}
    for key, value in pairs:
        name, _, rest = key.partition("[")
        path = [name, *re.findall(r"\[([^\]]*)\]", "[" + rest)] if rest else [name]
        node: Any = out
        for part, following in itertools.pairwise(path):
            default: Any = [] if following == "" else {}
            node = _child(node, part, default)
        _assign(node, path[-1], value)
    return out


def _child(node: Any, part: str, default: Any) -> Any:
    if isinstance(node, list):
        node.append(default)
        return default
    return node.setdefault(part, default)


def _assign(node: Any, part: str, value: str) -> None:
    if isinstance(node, list):
        node.append(value)
    else:
        node[part] = value


def _page(leads: list[dict[str, Any]], args: Body) -> tuple[list[dict[str, Any]], Body]:
    """A list method's page (§5.2): 50 rows from `start`; `start=-1` skips the count."""
    rows = list(leads)
    for key, value in (args.get("filter") or {}).items():
        if key == ">ID":
            rows = [row for row in rows if int(row["ID"]) > int(value)]
    order = args.get("order") or {}
    if str(order.get("ID", "ASC")).upper() == "DESC":
        rows.reverse()
    select = args.get("select") or []
    start = int(args.get("start") or 0)
    if start < 0:  # "fast" paging: no total, no next
        page = rows[:PAGE]
        return [_pick(row, select) for row in page], {}
    page = rows[start : start + PAGE]
    extra: Body = {"total": len(rows)}
    if start + PAGE < len(rows):
        extra["next"] = start + PAGE
    return [_pick(row, select) for row in page], extra


def _pick(row: dict[str, Any], select: list[str] | dict[str, str]) -> dict[str, Any]:
    names = list(select.values()) if isinstance(select, dict) else list(select)
    if not names or "*" in names:
        return dict(row)
    return {name: row.get(name) for name in names}
