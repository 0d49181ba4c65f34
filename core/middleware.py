"""Refuse control characters at the public endpoints, before any view reads the request.

A NUL in a client_id reached PostgreSQL and came back as a 500, a traceback and an email to
ADMINS for every anonymous request; a newline forged log lines. So a control character (C0,
DEL, C1) in the path, the query string or a form field of a public endpoint is answered 400
with a short JSON error and one escaped log line, here, first.

The body is looked at only when it is a form of known, small length (FORM_SCAN_MAX): a bigger
or unknown one is never read here. The form endpoints refuse such bodies unread
(portals.connect.inbound.form_only) and check the fields of any body they do read with
`control_character_in()`.
"""

import logging
import re
from collections.abc import Callable

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.utils.log import log_response

log = logging.getLogger(__name__)
# Everything a caller outside can reach without logging in (a contract with the README). /rest/
# is the prefix of the webhook-shaped REST proxy.
PUBLIC_PREFIXES = ("/bitrix/", "/api/", "/health/", "/metrics", "/rest/")
FORM_TYPE = "application/x-www-form-urlencoded"
# The largest form body read here; the form endpoints refuse anything bigger (413) unread.
FORM_SCAN_MAX = 64 * 1024
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character_in(fields: QueryDict) -> str | None:
    """Where a control character is among `fields` ("form field 'name'"), or None."""
    for key, values in fields.lists():
        if CONTROL.search(key) or any(CONTROL.search(value) for value in values):
            return f"field {key!a}"
    return None


def reject(request: HttpRequest, status: int, error: str, problem: str) -> JsonResponse:
    """A short JSON refusal, logged once (escaped) here; Django then logs the response no
    more, so an anonymous caller gets one log line and never an email."""
    detail = f"The request holds {problem}."
    response = JsonResponse({"error": error, "detail": detail}, status=status)
    log_response(
        "%s %s refused (HTTP %d): %s",
        request.method,
        request.path,
        status,
        problem,
        response=response,
        request=request,
        logger=log,
    )
    return response


def refuse(request: HttpRequest, problem: str) -> JsonResponse:
    """The 400 for a control character (or a form Django will not parse)."""
    return reject(request, 400, "bad_request", f"{problem}; send printable text only")


class ControlCharacterMiddleware:
    """Put first in MIDDLEWARE: nothing before it may read the body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(PUBLIC_PREFIXES):
            problem = self._problem(request)
            if problem:
                return refuse(request, problem)
        return self.get_response(request)

    def _problem(self, request: HttpRequest) -> str | None:
        if CONTROL.search(request.path_info):
            return "a control character in its path"
        try:
            where = control_character_in(request.GET)
            if where is None and _small_form(request):
                where = control_character_in(request.POST)
        except SuspiciousOperation as err:  # too many fields: Django would email ADMINS
            return f"a form Django refuses ({type(err).__name__})"
        return f"a control character in {where}" if where else None


def _small_form(request: HttpRequest) -> bool:
    length = request.META.get("CONTENT_LENGTH") or ""
    return request.content_type == FORM_TYPE and length.isdigit() and int(length) <= FORM_SCAN_MAX
