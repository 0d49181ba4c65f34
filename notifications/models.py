"""Incidents: one per token per failure episode (or one for a provider-wide outage)."""

from django.db import models
from django.db.models import Q


class Incident(models.Model):
    class Kind(models.TextChoices):
        TOKEN = "token", "Token cannot be refreshed"
        OUTAGE = "outage", "Authorization server outage"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TOKEN)
    token = models.ForeignKey(
        "portals.Token",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="incidents",
        help_text="Empty for an outage incident, which covers many tokens.",
    )
    permanent = models.BooleanField(
        default=False, help_text="A person must act (re-connect, fix credentials, pay)."
    )
    error_code = models.CharField("Bitrix error code", max_length=100, blank=True)
    message = models.TextField(help_text="What failed and what to do next.")
    occurrences = models.PositiveIntegerField(default=1, help_text="Failures in this episode.")
    affected_tokens = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["token"],
                condition=Q(resolved_at__isnull=True, kind="token"),
                name="one_open_incident_per_token",
            ),
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(resolved_at__isnull=True, kind="outage"),
                name="one_open_outage",
            ),
        ]

    def __str__(self) -> str:
        subject = self.token.reference if self.token_id else "all portals"
        return f"{self.get_kind_display()}: {subject}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
