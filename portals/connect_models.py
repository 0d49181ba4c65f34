"""What a connect started in the browser leaves waiting: the OAuth `state` until Bitrix24
redirects back, and a re-connect's pair that came from another portal until staff confirm it.

Both live ten minutes at most (portals.connect.states owns the rules). Imported by portals.models,
so Django sees them as models of the portals app; they refer to the other models by name.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from encryption.fields import EncryptedTextField


class ConnectState(models.Model):
    """One OAuth `state` (docs/bitrix24-protocol.md §1): random, single use, stored hashed,
    bound to the login session, the app and, for a re-connect, the token."""

    state_hash = models.CharField(max_length=64, unique=True)
    session_hash = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    app = models.ForeignKey("portals.AppCredentials", on_delete=models.CASCADE, related_name="+")
    token = models.ForeignKey(
        "portals.Token", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # Where staff started: the callback must come back from this portal.
    portal_domain = models.CharField(max_length=255)
    reference = models.SlugField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("connect in progress")
        verbose_name_plural = _("connects in progress")
        indexes = [models.Index(fields=["expires_at"], name="connectstate_expires_idx")]

    def __str__(self) -> str:
        return f"{self.portal_domain} ({self.created_at:%Y-%m-%d %H:%M})"


class PendingPair(models.Model):
    """A re-connect answered by a portal with another member_id: the new pair waits here,
    encrypted, until staff confirm it belongs to the token (or cancel, or ten minutes pass)."""

    token = models.ForeignKey("portals.Token", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_hash = models.CharField(max_length=64)
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField()
    expires_at = models.DateTimeField()
    scope = models.CharField(max_length=500, blank=True)
    server_endpoint = models.URLField(blank=True)
    client_endpoint = models.URLField(blank=True)
    member_id = models.CharField(max_length=32)
    domain = models.CharField(max_length=255)
    bitrix_user_id = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    valid_until = models.DateTimeField()

    class Meta:
        verbose_name = _("re-connect awaiting confirmation")
        verbose_name_plural = _("re-connects awaiting confirmation")

    def __str__(self) -> str:
        return f"{self.token_id}: {self.domain}"
