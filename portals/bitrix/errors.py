"""Every Bitrix24 error b24keeper knows, in one table, and the exceptions built from it: the
one place that decides whether a failure talking to Bitrix24 is transient or permanent, which
token status it leads to, what a person should do, and how soon to retry. The OAuth client and
the REST client raise with a code (Bitrix24's, or one of b24keeper's own below); they carry no
verdict of their own.

The same `error` string means different things depending on where it came from:
`expired_token` from the token endpoint means the code or refresh token is dead (a person must
re-connect), while from a REST call it means "refresh and retry" (docs/bitrix24-protocol.md §4).
So the table is keyed by (source, code). Each entry says whether the error is transient or
permanent, which token status a permanent one leads to, which "Add task" form field it points
at, and what a person should do. Classification goes by Bitrix's `error` string, compared
case-insensitively, never by HTTP status alone; an unknown code falls back to the status
(5xx and 429 are transient), as the notification backends do.

b24keeper's own codes, for failures that bring no Bitrix answer: `timeout`,
`connection_error`, `unreadable_body`, `incomplete_body` (transient); `invalid_endpoint`,
`invalid_method`, `portal_moved` (permanent, the token itself is fine); `app_uninstalled`
(ONAPPUNINSTALL); and `http_<status>` for an answer with no error code: at the token endpoint
always transient (a proxy or an outage in front of it), at a portal by the status.

Configuration errors (a setting that stops b24keeper from even trying) are their own type,
outside the OAuthError tree: they are never a Bitrix answer.
"""

from dataclasses import dataclass
from enum import StrEnum

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext
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
    # REST: "not now": retried with exponential backoff from this many seconds until the
    # request's deadline (portals.bitrix.rest); None: not retried there.
    retry_base: float | None = None


_REAUTH = _(
    "Re-connect the portal: press “Re-connect now” on the token's page in b24keeper (or, with "
    "a new code, use “Add task”)."
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
    (R, "query_limit_exceeded"): ErrorClass(False, _RETRY, retry_base=0.5),
    (R, "operation_time_limit"): ErrorClass(False, _RETRY, retry_base=1.0),
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
# b24keeper's own codes (see the module docstring), the same from either source.
_ENDPOINT = _("Re-connect the portal; http:// portals need BITRIX_ALLOW_HTTP (tests only).")
_OWN: dict[str, ErrorClass] = {
    "timeout": ErrorClass(False, _RETRY),
    "connection_error": ErrorClass(False, _RETRY),
    "unreadable_body": ErrorClass(False, _RETRY),
    "incomplete_body": ErrorClass(False, _RETRY),
    "invalid_endpoint": ErrorClass(True, _ENDPOINT, status=None),
    "invalid_method": ErrorClass(
        True, _("Use a Bitrix24 method name such as crm.lead.list."), status=None
    ),
    "portal_moved": ErrorClass(
        True,
        _("If the portal was renamed, re-connect it under its new address."),
        status=None,
    ),
    "app_uninstalled": ErrorClass(True, _UNINSTALLED, status=UNINSTALLED),
}
for _source in (T, R):
    for _code, _entry in _OWN.items():
        ERRORS.setdefault((_source, _code), _entry)
del T, R, _source, _code, _entry
_UNKNOWN = ErrorClass(
    True, _("Bitrix24 gave an error b24keeper does not know; check the portal and re-connect.")
)
_UNKNOWN_TRANSIENT = ErrorClass(False, _RETRY)


# What happened, for b24keeper's own codes (no Bitrix24 answer to quote), translated when shown.
_OWN_SAID: dict[str, str | Promise] = {
    "timeout": _("Bitrix24 did not answer in time."),
    "connection_error": _("b24keeper could not reach Bitrix24."),
    "unreadable_body": _("Bitrix24's answer could not be read."),
    "incomplete_body": _("Bitrix24's answer was cut short."),
    "invalid_endpoint": _("The token's address at Bitrix24 is not a plain https address."),
    "invalid_method": _("The name is not a Bitrix24 method."),
    "portal_moved": _("The portal answers at another address."),
    "app_uninstalled": _("The application was uninstalled from the portal."),
}


def lookup(code: str, source: Source = Source.TOKEN, http_status: int | None = None) -> ErrorClass:
    """The table's entry for `code`; an unknown code is judged by its HTTP status."""
    entry = ERRORS.get((source, code.lower()))
    if entry is not None:
        return entry
    if source == Source.TOKEN and code.lower().startswith("http_"):
        return _UNKNOWN_TRANSIENT  # no error code from the token endpoint: never final
    if http_status is not None and (http_status >= 500 or http_status == 429):
        return _UNKNOWN_TRANSIENT
    return _UNKNOWN


def advice_for(code: str) -> str | Promise | None:
    """What a person should do about an incident's error code (token endpoint first)."""
    for source in Source:
        if entry := ERRORS.get((source, code.lower())):
            return entry.advice
    return None


@dataclass(frozen=True)
class Explained:
    """An error as a person reads it, in the active language: what happened (ours,
    translated), Bitrix24's own `error_description` as it came (to show as a quote labelled as
    Bitrix24's; may be empty) and what to do (the table's advice, translated)."""

    said: str
    quote: str
    advice: str

    def text(self) -> str:
        """One paragraph: what happened, Bitrix24's words in quotes, what to do."""
        parts = [self.said]
        if self.quote:
            parts.append(gettext("Bitrix24's words: “%(quote)s”.") % {"quote": self.quote})
        if self.advice:
            parts.append(self.advice)
        return " ".join(parts)


def explain(code: str, stored: str = "", description: str | None = None) -> Explained:
    """`code` and the English message stored with it (`OAuthError.message()`: a token's last
    error, an incident's message), or Bitrix24's `description` itself, as a person reads them
    in the active language. A message that is not one of ours (a setting to fix) is kept."""
    if not code:
        return Explained(stored, "", "")
    if description is None:
        description = _description_in(code, stored)
    if code.lower() in _OWN_SAID:  # ours: in English the stored words say more
        said = str(_OWN_SAID[code.lower()])
        if _english() and stored.startswith(own_head := f"Bitrix24 answered {code}. "):
            said = stored[len(own_head) :]
    elif code.lower().startswith("http_"):
        said = gettext("Bitrix24 answered HTTP %(status)s with no error code.") % {
            "status": code[5:]
        }
    elif stored and not stored.startswith("Bitrix24 answered"):
        return Explained(stored, "", "")  # not a Bitrix24 answer: our own words, kept
    else:
        said = gettext("Bitrix24 answered %(code)s.") % {"code": code}
    entry = advice_for(code) or (_UNKNOWN.advice if not code.startswith("http_") else _RETRY)
    return Explained(said, description, str(entry))


def _english() -> bool:
    return (translation.get_language() or "en").startswith("en")


def _description_in(code: str, stored: str) -> str:
    """Bitrix24's description inside a stored message (the inverse of OAuthError.message)."""
    head = f"Bitrix24 answered {code} ("
    if not stored.startswith(head):
        return ""
    rest = stored[len(head) :]
    advice = advice_for(code)
    if advice is not None:
        with translation.override("en"):
            tail = f"). {advice}"
        if rest.endswith(tail):
            return rest[: -len(tail)]
    end = rest.rfind(").")
    return rest[:end] if end >= 0 else rest.rstrip(")")


class OAuthError(Exception):
    """A failed call to Bitrix24 (the authorization server or a portal). Never holds a
    secret: `description` is Bitrix's own words, `hint` what a person should do. Whether it is
    permanent is the table's verdict (`entry`)."""

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

    def explained(self) -> Explained:
        """This error as a person reads it, in the active language."""
        return explain(self.code, self.message(), self.description)

    def message(self) -> str:
        said = f"Bitrix24 answered {self.code}"
        if self.description:
            said += f" ({self.description})"
        return f"{said}. {self.hint}".strip()

    @property
    def entry(self) -> ErrorClass:
        return lookup(self.code, self.source, self.http_status)

    @property
    def permanent(self) -> bool:
        return self.entry.permanent


class TransientOAuthError(OAuthError):
    """An OAuthError the table calls transient (classify() and own() pick the class)."""


class PermanentOAuthError(OAuthError):
    """An OAuthError the table calls permanent (classify() and own() pick the class)."""


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
    with translation.override("en"):  # stored and logged in English; shown by explain()
        hint = str(entry.advice)
    return cls(code, description, hint, http_status, source)


def own(
    code: str, hint: str, http_status: int | None = None, source: Source = Source.TOKEN
) -> OAuthError:
    """The error for one of b24keeper's own codes (no Bitrix answer), `hint` saying what
    happened; transient or permanent as the table says."""
    entry = lookup(code, source, http_status)
    cls = PermanentOAuthError if entry.permanent else TransientOAuthError
    return cls(code, "", hint, http_status, source)


def status_for(error: OAuthError | ConfigurationError) -> str:
    """The token status a permanent error leads to."""
    if isinstance(error, ConfigurationError):
        return "config_error"
    return error.entry.status or NEEDS_REAUTH


def form_field(error: OAuthError) -> str | None:
    """The "Add task" form field an error points at, if it is one field's fault."""
    return error.entry.field
