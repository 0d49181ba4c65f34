"""API keys: how programs that are not Python get tokens over HTTP (GET /api/tokens/<ref>/)
or call Bitrix24 through the REST proxy (SITE_URL/rest/<token id>/<key>/<method>).

A key is a long random string shown once; only its SHA-256 hash is stored (a password hasher
would cost milliseconds on every request, and a 256-bit random key needs no stretching) and
its first characters, so staff can tell keys apart.
"""

import re
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

SCOPES = ("token", "proxy")  # read tokens (the token API); call through the REST proxy
METHOD_PATTERN = re.compile(r"[a-z0-9_*]+(?:\.[a-z0-9_*]+)*")


def split_words(text: str) -> list[str]:
    """Words separated by commas, spaces or new lines, lower case, each once."""
    return list(dict.fromkeys(w for w in re.split(r"[\s,]+", text.strip().lower()) if w))


def validate_scopes(value: str) -> None:
    words = split_words(value)
    if not words or any(word not in SCOPES for word in words):
        raise ValidationError(
            _("Scopes are “token”, “proxy” or both, separated by a comma; got “%(value)s”."),
            params={"value": value[:100]},
        )


def validate_methods(value: str) -> None:
    bad = [word for word in split_words(value) if not METHOD_PATTERN.fullmatch(word)]
    if bad:
        raise ValidationError(
            _(
                "“%(bad)s” is not a method pattern: use method names with * for any part, "
                "e.g. crm.lead.* or user.current."
            ),
            params={"bad": bad[0][:100]},
        )


class ApiKeyQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None) -> "ApiKeyQuerySet":
        """Keys that are neither revoked nor expired."""
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    name = models.CharField(
        _("name"),
        max_length=200,
        help_text=_("Who uses this key, e.g. “billing service on app-3”."),
    )
    prefix = models.CharField(
        _("prefix"),
        max_length=20,
        editable=False,
        help_text=_("The key's first characters, to recognise it."),
    )
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    all_tokens = models.BooleanField(
        _("every token"),
        default=False,
        help_text=_(
            "The key reads every token, including ones connected later. Otherwise only the "
            "tokens chosen below."
        ),
    )
    tokens = models.ManyToManyField(
        "portals.Token",
        blank=True,
        related_name="api_keys",
        verbose_name=_("tokens"),
        help_text=_(
            "The tokens this key may read. Bound to the token itself: renaming its reference "
            "keeps the key working."
        ),
    )
    scopes = models.CharField(
        _("scopes"),
        max_length=50,
        default="token",
        validators=[validate_scopes],
        help_text=_(
            "“token”: read its tokens (GET /api/tokens/…); “proxy”: call Bitrix24 through "
            "SITE_URL/rest/<token id>/<key>/<method>, the token never leaving b24keeper. "
            "Separate them with a comma."
        ),
    )
    methods = models.TextField(
        _("allowed methods"),
        blank=True,
        validators=[validate_methods],
        help_text=_(
            "Proxy only: the REST methods this key may call, as patterns separated by commas "
            "or new lines (crm.lead.*, user.current); every command of a batch is checked. "
            "Empty: any method but event.* and app.*, which need a pattern naming them."
        ),
    )
    rate_per_minute = models.PositiveIntegerField(
        _("requests per minute"),
        default=600,
        validators=[
            MinValueValidator(1, _("Allow at least 1 request a minute.")),
            MaxValueValidator(600000, _("Allow at most 600000 requests a minute.")),
        ],
        help_text=_(
            "More than this (on average, with bursts up to the same number) gets HTTP 429. A "
            "caller should keep the token until shortly before expires_at instead."
        ),
    )
    expires_at = models.DateTimeField(
        _("expires"), null=True, blank=True, help_text=_("Empty: the key does not expire.")
    )
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name=_("created by"),
    )
    # Written at most once a minute (api.keys.note_use): a busy key must not write per request.
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    last_used_from = models.GenericIPAddressField(
        _("last used from"), null=True, blank=True, editable=False
    )

    objects = ApiKeyQuerySet.as_manager()

    # Not a column: the key itself, only on the instance the admin just made it for, to show
    # it once.
    new_key: str | None = None

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["name"]
        permissions = [("manage_apikey", "Can create and revoke API keys")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
