"""API keys: how programs that are not Python get tokens over HTTP (GET /api/tokens/<ref>/).

A key is a long random string shown once; only its SHA-256 hash is stored (a password hasher
would cost milliseconds on every request, and a 256-bit random key needs no stretching) and
its first characters, so staff can tell keys apart.
"""

from datetime import datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ApiKeyQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None) -> "ApiKeyQuerySet":
        """Keys that are neither revoked nor expired."""
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    name = models.CharField(
        max_length=200, help_text="Who uses this key, e.g. “billing service on app-3”."
    )
    prefix = models.CharField(
        max_length=20, editable=False, help_text="The key's first characters, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    all_tokens = models.BooleanField(
        "every token",
        default=False,
        help_text="The key reads every token, including ones connected later. Otherwise only "
        "the tokens chosen below.",
    )
    tokens = models.ManyToManyField(
        "portals.Token",
        blank=True,
        related_name="api_keys",
        help_text="The tokens this key may read. Bound to the token itself: renaming its "
        "reference keeps the key working.",
    )
    rate_per_minute = models.PositiveIntegerField(
        "requests per minute",
        default=600,
        validators=[
            MinValueValidator(1, "Allow at least 1 request a minute."),
            MaxValueValidator(600000, "Allow at most 600000 requests a minute."),
        ],
        help_text="More than this (on average, with bursts up to the same number) gets HTTP "
        "429. A caller should keep the token until shortly before expires_at instead.",
    )
    expires_at = models.DateTimeField(
        "expires", null=True, blank=True, help_text="Empty: the key does not expire."
    )
    revoked_at = models.DateTimeField("revoked", null=True, blank=True, editable=False)
    created_at = models.DateTimeField("created", auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    # Written at most once a minute (api.keys.note_use): a busy key must not write per request.
    last_used_at = models.DateTimeField("last used", null=True, blank=True, editable=False)
    last_used_from = models.GenericIPAddressField(
        "last used from", null=True, blank=True, editable=False
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]
        permissions = [("manage_apikey", "Can create and revoke API keys")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
