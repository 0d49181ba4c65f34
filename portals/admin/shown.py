"""A token's errors as staff read them on the admin pages, in their language: what happened
(ours, translated), Bitrix24's own words as a labelled quote, and the table's advice
(portals.bitrix.errors.explain). Called by the token pages (portals.admin.tokens, token_views)."""

from django.utils.html import format_html
from django.utils.translation import gettext as _

from portals.bitrix.errors import Explained, OAuthError, explain
from portals.models import Token
from portals.tokens import TokenError


def last_error_text(token: Token) -> str:
    """The token's last error in the reader's language, as one paragraph (a tooltip)."""
    if not token.last_error:
        return ""
    return explain(token.last_error_code, token.last_error).text()


def explained_html(explained: Explained) -> str:
    """What happened, Bitrix24's own words as a labelled quote, and what to do."""
    quote = ""
    if explained.quote:
        quote = format_html(
            ' <span class="bitrix-words">{} <q>{}</q></span>',
            _("Bitrix24's words:"),
            explained.quote,
        )
    return format_html(
        '{}{}<br><span class="error-advice">{}</span>', explained.said, quote, explained.advice
    )


def refresh_error_text(err: OAuthError | TokenError, reference: str) -> str:
    """Why "Refresh now" failed, in the reader's language."""
    if isinstance(err, OAuthError):
        return err.explained().text()
    token = Token.objects.filter(reference=reference).only(
        "status", "last_error_code", "last_error"
    )
    found = token.first()
    if found is None:
        return _("there is no token “%(reference)s”.") % {"reference": reference}
    if found.last_error:
        return last_error_text(found)
    return _("its status is “%(status)s”.") % {"status": found.get_status_display()}
