"""Django's error page and error reports, with secrets hidden even when DEBUG is on.

Settings are hidden by name (Django's list plus ours) and, whatever their name, by value: a URL
that carries a password (`scheme://user:password@host`, or `?password=` in its query) shows with
the password masked. That covers DATABASE_URL, CELERY_BROKER_URL, EMAIL_URL, REDIS_URL and any
setting added later, inside dicts and lists too, request headers (META) and frame variables;
and the rendered page and email text pass through the same mask once more, for an exception
message that quotes such a URL.
"""

import re
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

MASK = "********************"  # Django's own substitute
# The userinfo of any URL ("user:password@", ":password@", "token@"), up to the last "@" before
# the host so that an unescaped "@" in a password is hidden whole.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s\"'<>]*@")
# A password passed as a query parameter (libpq, some brokers). "&amp;" as on the HTML page.
_QUERY_SECRET = re.compile(
    r"(?i)((?:[?&;]|&amp;)(?:password|passwd|pwd|pass|secret|token|api_key|access_key|sslpassword)"
    r"=)[^&#\s\"'<>]*"
)


# The API key in a REST proxy path, SITE_URL/rest/<token id>/<key>/<method>.
_REST_KEY = re.compile(r"(?i)(/rest/\d+/)[^/?#\s\"'<>]+")


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it masked, and the key of a REST proxy path."""
    text = _REST_KEY.sub(rf"\1{MASK}", text)
    return _QUERY_SECRET.sub(rf"\1{MASK}", _USERINFO.sub(rf"\1{MASK}@", text))


def _masked(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = str(value)  # also a lazy string, which isinstance() takes for a str
    masked = mask_urls(text)
    return value if masked == text else masked


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Honours `sensitive_post_parameters` and `sensitive_variables` with DEBUG on too.

    Django's own filter does nothing under DEBUG, on the ground that a DEBUG site is not safe
    anyway; but DEBUG pages get shown on screens and pasted into tickets and chats, and the
    connect form's client_secret and code would be on them.
    """

    # Django's list, plus the settings that hold a URL with a password in it. Names are a
    # first line only: cleanse_setting() masks a password in any value.
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|BROKER_URL", re.I
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django recurses into dicts, lists and tuples through this method, so every string
        # inside them arrives here too.
        return _masked(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, _masked(value)) for name, value in variables]


class SecretsExceptionReporter(ExceptionReporter):
    """The error page (DEBUG) and the ADMINS email text, with every URL's password masked
    once more in the finished text: an exception message may quote a URL."""

    # The mask adds only "*" to text Django rendered and escaped: still safe to show.
    def get_traceback_html(self) -> SafeString:
        return mark_safe(mask_urls(super().get_traceback_html()))  # noqa: S308

    def get_traceback_text(self) -> SafeString:
        return mark_safe(mask_urls(super().get_traceback_text()))  # noqa: S308
