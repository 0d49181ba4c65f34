"""Every Bitrix24 error b24keeper knows, in one table, and the exceptions built from it.

The same `error` string means different things depending on where it came from:
`expired_token` from the token endpoint means the code or refresh token is dead (a person must
re-connect), while from a REST call it means "refresh and retry" (docs/bitrix24-protocol.md §4).
So the table is keyed by (source, code). Each entry says whether the error is transient or
permanent, which token status a permanent one leads to, which "Add task" form field it points
at, and what a person should do. Classification goes by Bitrix's `error` string, compared
case-insensitively, never by HTTP status alone; an unknown code falls back to the status
(5xx and 429 are transient), as the notification backends do.

Configuration errors (a setting that stops b24keeper from even trying) are their own type,
outside the OAuthError tree: they are never a Bitrix answer.
"""

from dataclasses import dataclass
from enum import StrEnum

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class Source(StrEnum):
    TOKEN = "token"  # the authorization server's /oauth/token/
    REST = "rest"  # a REST call on the portal (or app.info on the authorization server)


# Token statuses (portals.models.TokenStatus values; this module imports no models).
NEEDS_REAUTH, UNINSTALLED, PAYMENT_REQUIRED = "needs_reauth", "uninstalled", "payment_required"


@dataclass(frozen=True)
class ErrorClass:
    permanent: bool
    advice: str | Promise  # what a person should do next, translated when shown
    # The token status a permanent error leads to; None: the token itself is fine (an error
    # of one REST method, such as a missing scope).
    status: str | None = NEEDS_REAUTH
    field: str | None = None  # the "Add task" form field the error points at
    refresh_first: bool = False  # REST: refresh the token once, then retry the call


_REAUTH = _(
    "Re-connect the portal: in b24keeper choose “Add task”, open the authorize URL and submit "
    "the new code at once."
)
_RETRY = _("Nothing yet: b24keeper keeps retrying. If this lasts, check that Bitrix24 answers.")
_BUG = _("The request was malformed; this is a bug in b24keeper, please report it.")
_SCOPE = _("Add the missing scope to the application in Bitrix24, then re-connect.")
_UNINSTALLED = _("Install the application on the portal again, then re-connect.")
_PAYMENT = _("Renew the application's subscription in Bitrix24, then enable the token again.")
_USER = _("Re-connect as a user who may use the application.")

T, R = Source.TOKEN, Source.REST
ERRORS: dict[tuple[Source, str], ErrorClass] = {
    # The token endpoint (docs/bitrix24-protocol.md §4.2).
    (T, "invalid_grant"): ErrorClass(True, _REAUTH, field="code"),
    (T, "expired_token"): ErrorClass(True, _REAUTH, field="code"),
    (T, "wrong_client"): ErrorClass(
        True,
        _("Check the client_id on the application's card in Bitrix24, then re-connect."),
        field="client_id",
    ),
    (T, "invalid_client"): ErrorClass(
        True,
        _(
            "Check the client secret on the application's card (or install the app again), "
            "then re-connect."
        ),
        field="client_secret",
    ),
    (T, "invalid_request"): ErrorClass(True, _BUG),
    (T, "unsupported_grant_type"): ErrorClass(True, _BUG),
    (T, "invalid_scope"): ErrorClass(True, _SCOPE, field="scope"),
    (T, "insufficient_scope"): ErrorClass(True, _SCOPE, field="scope"),
    (T, "not_installed"): ErrorClass(True, _UNINSTALLED, status=UNINSTALLED),
    (T, "payment_required"): ErrorClass(True, _PAYMENT, status=PAYMENT_REQUIRED),
    (T, "user_access_error"): ErrorClass(True, _USER),
    (T, "query_limit_exceeded"): ErrorClass(False, _RETRY),
    (T, "internal_server_error"): ErrorClass(False, _RETRY),
    # REST calls on the portal (docs/bitrix24-protocol.md §4.3).
    (R, "expired_token"): ErrorClass(False, _RETRY, refresh_first=True),
    (R, "invalid_token"): ErrorClass(True, _REAUTH, refresh_first=True),
    (R, "no_auth_found"): ErrorClass(True, _REAUTH, refresh_first=True),
    (R, "error_oauth"): ErrorClass(True, _UNINSTALLED, status=UNINSTALLED),
    (R, "application_not_found"): ErrorClass(True, _UNINSTALLED, status=UNINSTALLED),
    (R, "authorization_error"): ErrorClass(True, _USER),
    (R, "user_access_error"): ErrorClass(True, _USER),
    (R, "insufficient_scope"): ErrorClass(True, _SCOPE, status=None),
    (R, "access_denied"): ErrorClass(
        True, _("The portal's plan has no REST access; upgrade the plan in Bitrix24.")
    ),
    (R, "payment_required"): ErrorClass(True, _PAYMENT, status=PAYMENT_REQUIRED),
    (R, "method_confirm_waiting"): ErrorClass(
        True, _("A portal administrator must approve this method in Bitrix24."), status=None
    ),
    (R, "method_confirm_denied"): ErrorClass(
        True, _("A portal administrator refused this method in Bitrix24."), status=None
    ),
    (R, "wrong_auth_type"): ErrorClass(True, _BUG, status=None),
    (R, "invalid_credentials"): ErrorClass(True, _USER),
    (R, "query_limit_exceeded"): ErrorClass(False, _RETRY),
    (R, "operation_time_limit"): ErrorClass(False, _RETRY),
    (R, "overload_limit"): ErrorClass(
        True,
        _("Bitrix24 blocked REST for this portal by hand; ask Bitrix24 support to lift it."),
        status=None,
    ),
    (R, "error_method_not_found"): ErrorClass(
        True, _("The method does not exist on this portal; check its name."), status=None
    ),
    (R, "portal_deleted"): ErrorClass(
        True, _("The portal was deleted; disable this token."), status=UNINSTALLED
    ),
    (R, "invalid_request"): ErrorClass(True, _BUG, status=None),
    (R, "connection_error"): ErrorClass(False, _RETRY),
    (R, "internal_server_error"): ErrorClass(False, _RETRY),
    (R, "error_unexpected_answer"): ErrorClass(False, _RETRY),
}
del T, R
_UNKNOWN = ErrorClass(
    True, _("Bitrix24 gave an error b24keeper does not know; check the portal and re-connect.")
)
_UNKNOWN_TRANSIENT = ErrorClass(False, _RETRY)


def lookup(code: str, source: Source = Source.TOKEN, http_status: int | None = None) -> ErrorClass:
    """The table's entry for `code`; an unknown code is judged by its HTTP status."""
    entry = ERRORS.get((source, code.lower()))
    if entry is not None:
        return entry
    if http_status is not None and (http_status >= 500 or http_status == 429):
        return _UNKNOWN_TRANSIENT
    return _UNKNOWN


def advice_for(code: str) -> str | Promise | None:
    """What a person should do about an incident's error code (token endpoint first)."""
    for source in Source:
        if entry := ERRORS.get((source, code.lower())):
            return entry.advice
    return None


class OAuthError(Exception):
    """A failed call to Bitrix24 (the authorization server or a portal). Never holds a
    secret: `description` is Bitrix's own words, `hint` what a person should do."""

    permanent: bool = False

    def __init__(
        self,
        code: str,
        description: str = "",
        hint: str = "",
        http_status: int | None = None,
        source: Source = Source.TOKEN,
    ) -> None:
        self.code = code
        self.description = description
        self.hint = hint
        self.http_status = http_status
        self.source = source
        super().__init__(self.message())

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        said = f"Bitrix24 answered {self.code}"
        if self.description:
            said += f" ({self.description})"
        return f"{said}. {self.hint}".strip()

    @property
    def entry(self) -> ErrorClass:
        return lookup(self.code, self.source, self.http_status)


class TransientOAuthError(OAuthError):
    permanent = False


class PermanentOAuthError(OAuthError):
    permanent = True


class ConfigurationError(Exception):
    """A setting stops b24keeper from talking to Bitrix24 at all (a missing encryption key, an
    authorization server outside BITRIX_AUTH_SERVERS). Not a Bitrix answer: nothing was sent.
    `setting` names what to fix; the message says how."""

    code = "configuration"
    permanent = True

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting

    def message(self) -> str:
        return str(self)


def classify(
    code: str, description: str, http_status: int | None, source: Source = Source.TOKEN
) -> OAuthError:
    """Build the error for a Bitrix `error` string."""
    entry = lookup(code, source, http_status)
    cls = PermanentOAuthError if entry.permanent else TransientOAuthError
    return cls(code, description, str(entry.advice), http_status, source)


def transient(code: str, hint: str, http_status: int | None = None) -> TransientOAuthError:
    return TransientOAuthError(code, "", hint, http_status)


def status_for(error: OAuthError | ConfigurationError) -> str:
    """The token status a permanent error leads to."""
    if isinstance(error, ConfigurationError):
        return "config_error"
    return error.entry.status or NEEDS_REAUTH


def form_field(error: OAuthError) -> str | None:
    """The "Add task" form field an error points at, if it is one field's fault."""
    return error.entry.field


# --- Errors of the token service (re-exported by portals.tokens, the public API) -------------
class TokenError(Exception):
    """Base of the errors get_access_token() and refresh() raise besides OAuthError."""


class TokenNotFound(TokenError, LookupError):
    pass


class TokenUnavailable(TokenError):
    """The token cannot be used until a person acts (re-connect, enable, pay, fix a setting).
    `status` is the token's status (a portals.models.TokenStatus value) when known."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


class TokenConfigurationError(TokenUnavailable):
    """A setting stops the token from being used or refreshed: its stored secrets cannot be
    decrypted with ENCRYPTION_KEYS, or its authorization server is not in BITRIX_AUTH_SERVERS.
    `setting` names the setting to fix."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message, status="config_error")
        self.setting = setting


class RefreshBusy(TokenError):
    """Another process's refresh did not finish within TOKEN_REFRESH_WAIT."""


class PairNotStored(TokenError):
    """Bitrix24 issued a new pair but the database stayed unreachable for TOKEN_STORE_RETRY
    seconds. The pair is safe in the local journal and is stored when the database is back
    (at the next start, or before this machine next refreshes the token)."""
