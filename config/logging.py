"""A logging filter that blanks anything shaped like a Bitrix24 token or a secret parameter,
in the message and in the traceback or stack printed with it.

Our own code never logs secrets; this is the second line of defence for third-party libraries
(requests, urllib3, celery) that log URLs, task arguments or exception text.
"""

import logging
import re

# Bitrix24 tokens are 70 hex characters (older ones 32); Fernet ciphertexts start "gAAAA".
_PATTERNS = [
    re.compile(r"\b[0-9a-f]{32,}\b"),
    re.compile(r"gAAAAA[0-9A-Za-z_\-=]{20,}"),
    # b24keeper's own API keys (api.keys: "b24k_" and 43 URL-safe characters)
    re.compile(r"b24k_[0-9A-Za-z_\-]{20,}"),
    # key=value in query strings and form bodies
    re.compile(
        r"(?i)((?:client_secret|refresh_token|access_token|auth|code|api_key|token)=)[^&\s]+"
    ),
    # "key": "value" in JSON, and 'key': 'value' in a Python repr (exception texts)
    re.compile(
        r"(?i)([\"'](?:client_secret|refresh_token|access_token|api_key|auth_token|key)[\"']"
        r"\s*:\s*[\"'])[^\"']+"
    ),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Redacts the message, the traceback and the stack of every record it passes."""

    # Formats tracebacks the way every logging.Formatter does by default.
    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        # A formatter prints exc_text when it is set and only formats exc_info itself when it
        # is not: so the traceback is formatted here once, redacted, and left in exc_text.
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
