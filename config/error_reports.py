"""Django's error page and error reports, with secrets hidden even when DEBUG is on."""

import re

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Honours `sensitive_post_parameters` and `sensitive_variables` with DEBUG on too.

    Django's own filter does nothing under DEBUG, on the ground that a DEBUG site is not safe
    anyway; but DEBUG pages get shown on screens and pasted into tickets and chats, and the
    connect form's client_secret and code would be on them.
    """

    # Django's list, plus the settings that hold a URL with a password in it.
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|BROKER_URL", re.I
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        return True
