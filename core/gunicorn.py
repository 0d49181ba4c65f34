"""gunicorn's access log without secrets (bin/serve and deploy/b24keeper-web.service run
gunicorn with `--logger-class core.gunicorn.RedactingLogger`).

A request's URL can carry secrets: the OAuth callback's `?code=&state=`, the install frame's
`AUTH_ID`/`REFRESH_ID`, `auth[...]` parameters, and the key of a webhook-shaped
`/rest/<n>/<key>/` path. gunicorn writes the request line, the referer and whatever else the
access log format names as they came; this logger blanks those values first, by the same rules
as the application's own log lines (core.logging.redact_target). Credential headers are never
written, whatever the format asks for. Imports nothing from Django: the gunicorn master loads it.
"""

from typing import Any

from gunicorn.glogging import Logger

from core.logging import redact_target

# Headers that are credentials in themselves, as access-log atoms ({name}i, {name}e).
CREDENTIAL_ATOMS = frozenset(
    {"{authorization}i", "{cookie}i", "{http_authorization}e", "{http_cookie}e"}
)


class RedactingLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if name.lower() in CREDENTIAL_ATOMS:
                atoms[name] = "[redacted]"
            elif isinstance(value, str):
                atoms[name] = redact_target(value)
        return atoms
