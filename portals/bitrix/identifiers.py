"""Checks and normalisation of what staff type in: portal addresses, client ids, scopes.

Each function raises django.core.exceptions.ValidationError with a message that says what is
accepted, so forms, the admin and management commands show the same words.
"""

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

# Bitrix24 scope codes, from the documentation's permissions page (docs/bitrix24-protocol.md §8).
SCOPES = frozenset(
    """ai_admin biconnector bizproc booking calendar call cashbox catalog contact_center crm
    delivery department disk documentgenerator entity humanresources humanresources.hcmlink im
    imbot imconnector imopenlines intranet landing lists log mailservice main messageservice
    mobile pay_system placement pull rpa sale salescenter sign.b2e sonet_group socialnetwork
    task telephony timeman user user_brief user_basic user.userfield userfieldconfig
    userconsent vote""".split()
)
DEPRECATED_SCOPES = {"tasks": "task", "tasks_extended": "task", "tasksmobile": "task"}

# What the authorization server accepts (CLIENT_ID_REGEXP in its source).
CLIENT_ID_RE = re.compile(r"^[a-z0-9\-_.]{3,50}$", re.IGNORECASE)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*(:\d{{1,5}})?$")
_BARE_NAME_RE = re.compile(rf"^{_LABEL}$")
# A local fake portal (tests, demos): only with BITRIX_ALLOW_HTTP.
_LOOPBACK_RE = re.compile(r"^127(\.\d{1,3}){3}(:\d{1,5})?$")
PORTAL_HELP = gettext_lazy(
    "Enter the portal as a name (acme), a host (acme.bitrix24.com or crm.example.com) "
    "or a URL (https://acme.bitrix24.com/)."
)


def normalize_portal_address(value: str) -> str:
    """'acme' -> 'acme.bitrix24.ru'; 'https://Acme.bitrix24.com/crm/' -> 'acme.bitrix24.com'."""
    text = (value or "").strip().lower()
    if not text:
        raise ValidationError(
            _("The portal address is empty.") + f" {PORTAL_HELP}", code="required"
        )
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(_not_an_address(value))
        text = parts.netloc.rsplit("@", 1)[-1]
    else:
        text = text.split("/", 1)[0]
    text = text.rstrip(".")
    if _BARE_NAME_RE.match(text):
        return f"{text}.{settings.BITRIX_DEFAULT_ZONE}"
    if settings.BITRIX_ALLOW_HTTP and _LOOPBACK_RE.match(text):
        return text
    if not _HOST_RE.match(text) or text.replace(".", "").replace(":", "").isdigit():
        raise ValidationError(_not_an_address(value))
    return text


def _not_an_address(value: str) -> str:
    return _("“%(value)s” is not a portal address.") % {"value": value} + f" {PORTAL_HELP}"


def validate_client_id(value: str) -> str:
    client_id = (value or "").strip()
    if not CLIENT_ID_RE.match(client_id):
        raise ValidationError(
            _(
                "The client_id must be 3–50 letters, digits, dots, dashes or underscores, such "
                "as local.6a1b2c3d4e5f60.48151623 (local apps) or app.6a1b2c3d4e5f60.48151623. "
                "Copy it from the application's card in Bitrix24."
            )
        )
    return client_id


def normalize_scope(value: str) -> str:
    """'crm, user,crm' -> 'crm,user'; unknown codes are an error listing the valid ones."""
    codes = [part.strip().lower() for part in re.split(r"[,\s]+", value or "") if part.strip()]
    if not codes:
        raise ValidationError(_("Enter at least one scope, for example: crm,user."))
    for code in codes:
        if code in DEPRECATED_SCOPES:
            message = _("The scope “%(code)s” is deprecated; use “%(instead)s” instead.")
            raise ValidationError(message % {"code": code, "instead": DEPRECATED_SCOPES[code]})
    unknown = [code for code in codes if code not in SCOPES]
    if unknown:
        message = _("Unknown scope: %(unknown)s. Valid scopes are: %(valid)s.")
        values = {"unknown": ", ".join(unknown), "valid": ", ".join(sorted(SCOPES))}
        raise ValidationError(message % values)
    return ",".join(dict.fromkeys(codes))
