"""Errors of the Bitrix24 OAuth exchange, split into transient (retry) and permanent (a person
must act), classified by Bitrix's `error` string through a table, never by HTTP status."""

from dataclasses import dataclass


class OAuthError(Exception):
    """A failed call to the authorization server. Never holds a secret."""

    permanent: bool = False

    def __init__(
        self, code: str, description: str = "", hint: str = "", http_status: int | None = None
    ) -> None:
        self.code = code
        self.description = description
        self.hint = hint
        self.http_status = http_status
        super().__init__(self.message())

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        said = f"Bitrix24 answered {self.code}"
        if self.description:
            said += f" ({self.description})"
        return f"{said}. {self.hint}".strip()


class TransientOAuthError(OAuthError):
    permanent = False


class PermanentOAuthError(OAuthError):
    permanent = True


@dataclass(frozen=True)
class ErrorClass:
    permanent: bool
    hint: str
    # The token status a permanent error leads to (see portals.models.TokenStatus).
    status: str = "needs_reauth"


_REAUTH = "Re-connect the portal: open the authorize URL and submit the new code at once."
ERROR_TABLE: dict[str, ErrorClass] = {
    "invalid_grant": ErrorClass(
        True,
        "The code or refresh token is unknown, already used or expired. " + _REAUTH,
    ),
    "expired_token": ErrorClass(
        True,
        "The code or refresh token has expired: codes live 30 seconds, refresh tokens about "
        "30 days. " + _REAUTH,
    ),
    "wrong_client": ErrorClass(
        True,
        "Bitrix24 does not know this client_id: it is mistyped or the app was deleted. "
        "Check the client_id on the application's card and re-connect.",
    ),
    "invalid_client": ErrorClass(
        True,
        "The client_secret is wrong, or the app is not installed on this portal. Copy the "
        "secret from the application's card and re-connect.",
    ),
    "invalid_request": ErrorClass(
        True, "The request was incomplete; this is a bug in b24keeper, please report it."
    ),
    "unsupported_grant_type": ErrorClass(
        True, "The request was malformed; this is a bug in b24keeper, please report it."
    ),
    "invalid_scope": ErrorClass(
        True, "A scope beyond the app's registered scope was requested; fix the app's scope."
    ),
    "insufficient_scope": ErrorClass(
        True, "A scope beyond the app's registered scope was requested; fix the app's scope."
    ),
    "not_installed": ErrorClass(
        True,
        "The app is not installed on this portal (or was removed). Install it again in "
        "Bitrix24, then re-connect.",
        status="uninstalled",
    ),
    "payment_required": ErrorClass(
        True,
        "The app's paid or trial period has ended. Renew it in Bitrix24, then enable the "
        "token again.",
        status="payment_required",
    ),
    "user_access_error": ErrorClass(
        True,
        "The user this token acts as may no longer use the app. Re-connect as a user who is "
        "allowed.",
    ),
    "query_limit_exceeded": ErrorClass(False, "Bitrix24 is rate-limiting; retrying later."),
    "internal_server_error": ErrorClass(False, "Bitrix24 had a server error; retrying later."),
}
_UNKNOWN = ErrorClass(
    True, "Bitrix24 gave an error b24keeper does not know; check the portal and re-connect."
)


def classify(code: str, description: str, http_status: int | None) -> OAuthError:
    """Build the error for an `error` string from the token endpoint."""
    entry = ERROR_TABLE.get(code.lower(), _UNKNOWN)
    cls = PermanentOAuthError if entry.permanent else TransientOAuthError
    return cls(code, description, entry.hint, http_status)


def transient(code: str, hint: str, http_status: int | None = None) -> TransientOAuthError:
    return TransientOAuthError(code, "", hint, http_status)


def status_for(error: OAuthError) -> str:
    """The token status a permanent error leads to."""
    return ERROR_TABLE.get(error.code.lower(), _UNKNOWN).status
