"""The door of the form endpoints Bitrix24 posts to (POST /bitrix/<client_id>/install/ and
/events/, portals.connect.views): a form, and a small one, judged before anything reads the body.

Bitrix24 posts `application/x-www-form-urlencoded` (docs/bitrix24-protocol.md §6.2), a few
kilobytes. Anything else is refused unread: another type with 415 (a multipart body would
otherwise be parsed, and a big one spooled to disk, before the view could say no), a body over
`max_bytes` with 413, by its Content-Length; a body of unknown length (chunked) is read here,
at most max_bytes + 1 bytes, and refused if there was more. Each refusal is one log line
(core.middleware.reject).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict

from core.middleware import FORM_TYPE, control_character_in, refuse, reject

MAX_FORM_BYTES = 64 * 1024
View = Callable[..., HttpResponse]


def form_only(max_bytes: int = MAX_FORM_BYTES) -> Callable[[View], View]:
    """View decorator: 415 unless the body is a form, 413 if it is over `max_bytes`."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return _refusal(request, max_bytes) or view(request, *args, **kwargs)

        return wrapper

    return decorate


def _refusal(request: HttpRequest, max_bytes: int) -> HttpResponse | None:
    if request.content_type != FORM_TYPE:
        shown = ascii(request.content_type or "no type")[1:-1][:100]
        return reject(request, 415, "unsupported_media_type", f"a {shown} body, not a form")
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        if not declared.isdigit():
            return reject(request, 400, "bad_request", "a Content-Length that is not a number")
        if int(declared) > max_bytes:
            return _too_large(request, max_bytes)
        return None  # Django reads no more than the declared length
    raw = request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        return _too_large(request, max_bytes)
    # The stream is consumed: hand the view the form parsed from what was read.
    request.POST = QueryDict(raw, encoding=request.encoding)
    where = control_character_in(request.POST)
    return refuse(request, f"a control character in {where}") if where else None


def _too_large(request: HttpRequest, max_bytes: int) -> HttpResponse:
    return reject(request, 413, "body_too_large", f"a body over {max_bytes} bytes")
