"""What a REST proxy request asks for: its parameters as Bitrix24 would read them (the query
string, a form or a JSON body; GET or POST), the body to send on with the token added, and the
methods it calls (the method, and every command of a `batch`), checked against a key's method
patterns. Plain: no model, no token service. Called by api.proxy only.
"""

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

# Methods a key calls only when one of its patterns names them: a proxy key must not be able
# to unbind b24keeper's uninstall handler (event.unbind) or read the app's settings.
GUARDED = ("event.", "app.")
FORM = "application/x-www-form-urlencoded"


class BadRequest(Exception):
    """The request cannot be sent on as it is; the message says what to change."""


@dataclass(frozen=True)
class Outgoing:
    """The parameters to send on: a JSON object, or form pairs (kept as they came, so PHP-style
    nested keys reach Bitrix24 unchanged)."""

    json_body: dict[str, Any] | None
    form: list[tuple[str, str]]

    def commands(self) -> list[str]:
        """The `cmd` values of a batch, in either shape."""
        if self.json_body is not None:
            cmd = self.json_body.get("cmd")
            if isinstance(cmd, dict):
                return [str(v) for v in cmd.values()]
            if isinstance(cmd, list):
                return [str(v) for v in cmd]
            return []
        return [value for key, value in self.form if key.startswith("cmd[")]

    @sensitive_variables()
    def with_auth(self, access_token: str) -> dict[str, Any]:
        """requests' keyword arguments for the body, carrying `auth`."""
        if self.json_body is not None:
            return {"json": {**self.json_body, "auth": access_token}}
        return {"data": urlencode([*self.form, ("auth", access_token)]), "headers": _FORM_HEADER}


_FORM_HEADER = {"Content-Type": FORM}


def read(request: HttpRequest, max_bytes: int) -> Outgoing:
    """The request's parameters, without any `auth` a client sent (b24keeper adds its own)."""
    query = _pairs(request.META.get("QUERY_STRING", ""))
    try:
        raw = request.body
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE
        raise BadRequest("The body is too large; send fewer commands per batch.") from None
    if request.method == "GET" or not raw:
        return Outgoing(None, query)
    if len(raw) > max_bytes:
        raise BadRequest(f"The body is larger than {max_bytes} bytes.")
    content_type = request.content_type or FORM
    if content_type == "application/json":
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadRequest("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BadRequest("A JSON body must be an object of the method's parameters.")
        data.pop("auth", None)
        for key, value in query:
            data.setdefault(key, value)
        return Outgoing(data, [])
    if content_type == FORM:
        return Outgoing(None, query + _pairs(raw.decode("utf-8", "replace")))
    raise BadRequest(
        f"Send the parameters as a query string, a form ({FORM}) or JSON (application/json), "
        "not as multipart: upload files as base64 inside the parameters, as Bitrix24 expects."
    )


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in parse_qsl(text, keep_blank_values=True) if k.lower() != "auth"]


def method_of(command: str) -> str:
    """`crm.lead.get?id=1` -> `crm.lead.get` (a batch command's method)."""
    return command.split("?", 1)[0].strip().strip("/").lower()


def refused_method(method: str, commands: Iterable[str], patterns: tuple[str, ...]) -> str | None:
    """The first method of the request (the method, or a batch's command) that `patterns`
    do not allow; None when all are allowed."""
    if method.lower() != "batch":
        return None if allowed(method, patterns) else method.lower()
    names = [method_of(c) for c in commands]
    # A batch inside a batch would hide its commands from this check.
    return next((n for n in names if n == "batch" or not allowed(n, patterns)), None)


def allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """`name` matches a pattern (case-insensitively, `*` for any characters); with no
    patterns, any method but event.* and app.*, which only a pattern beginning with their
    prefix allows."""
    name = name.lower()
    guarded = next((prefix for prefix in GUARDED if name.startswith(prefix)), None)
    if not patterns:
        return guarded is None
    return any(
        fnmatch.fnmatchcase(name, pattern) and (guarded is None or pattern.startswith(guarded))
        for pattern in patterns
    )
