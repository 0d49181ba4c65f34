"""A logging filter that blanks anything shaped like a Bitrix24 token or a secret parameter.

Our own code never logs secrets; this is the second line of defence for third-party libraries
(requests, urllib3, celery) that log URLs, task arguments or exception text.
"""

import logging
import re

# Bitrix24 tokens are 70 hex characters (older ones 32); Fernet ciphertexts start "gAAAA".
_PATTERNS = [
    re.compile(r"\b[0-9a-f]{32,}\b"),
    re.compile(r"gAAAAA[0-9A-Za-z_\-=]{20,}"),
    # key=value in query strings and form bodies
    re.compile(
        r"(?i)((?:client_secret|refresh_token|access_token|auth|code|api_key|token)=)[^&\s]+"
    ),
    # "key": "value" in JSON
    re.compile(
        r"(?i)(\"(?:client_secret|refresh_token|access_token|api_key|auth_token|key)\"\s*:\s*\")"
        r"[^\"]+"
    ),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
