"""Incidents (one per token per failure episode, one for a provider-wide outage, one for a
channel that b24keeper switched off), the channels that alerts go to, and one delivery row per
incident event and channel."""

import json

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from encryption.crypto import DecryptionError
from encryption.fields import EncryptedTextField
from notifications.backends import BACKENDS, Backend, ConfigurationError, get_backend


class Incident(models.Model):
    class Kind(models.TextChoices):
        TOKEN = "token", _("Token cannot be refreshed")
        OUTAGE = "outage", _("Authorization server outage")
        CHANNEL = "channel", _("Notification channel switched off")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.TOKEN)
    token = models.ForeignKey(
        "portals.Token",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="incidents",
        verbose_name=_("token"),
        help_text=_("Empty for an outage incident, which covers many tokens."),
    )
    channel = models.ForeignKey(
        "Channel",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="incidents",
        verbose_name=_("channel"),
        help_text=_("The channel that b24keeper switched off (a channel incident only)."),
    )
    permanent = models.BooleanField(
        _("permanent"),
        default=False,
        help_text=_("A person must act (re-connect, fix credentials, pay)."),
    )
    error_code = models.CharField(_("error"), max_length=100, blank=True)
    message = models.TextField(_("message"), help_text=_("What failed and what to do next."))
    occurrences = models.PositiveIntegerField(
        _("failures"), default=1, help_text=_("Failures in this episode.")
    )
    affected_tokens = models.PositiveIntegerField(_("affected tokens"), default=1)
    changes = models.PositiveIntegerField(
        _("severity changes"),
        default=0,
        help_text=_("Times the failure turned into one a person must act on (each alerts anew)."),
    )
    uncovered_notified_at = models.DateTimeField(
        _("admins told nobody hears it"),
        null=True,
        blank=True,
        help_text=_("When Django's ADMINS were emailed that no enabled channel covers it."),
    )
    opened_at = models.DateTimeField(_("opened"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last seen"), auto_now=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        verbose_name = _("incident")
        verbose_name_plural = _("incidents")
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
            models.UniqueConstraint(
                fields=["channel"],
                condition=Q(resolved_at__isnull=True, kind="channel"),
                name="one_open_incident_per_channel",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.CHANNEL:
            subject = self.channel.name if self.channel is not None else "?"
        else:
            subject = self.token.reference if self.token is not None else str(_("all portals"))
        return f"{self.get_kind_display()}: {subject}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


# --- Channels and deliveries ----------------------------------------------------------------
KIND_CHOICES = [(kind, backend.label) for kind, backend in BACKENDS.items()]


# The languages an alert can be written in (the admin's languages, fixed here so that a
# deployment's LANGUAGES never changes the model).
ALERT_LANGUAGES = [("en", "English"), ("ru", "Русский")]


def default_alert_language() -> str:
    """A new channel's language: NOTIFY_LANGUAGE (read when the channel is made)."""
    wanted = settings.NOTIFY_LANGUAGE
    return wanted if wanted in dict(ALERT_LANGUAGES) else "en"


class ChannelQuerySet(models.QuerySet):
    def enabled(self) -> "ChannelQuerySet":
        return self.filter(enabled=True)

    def concerned(self, incident: Incident) -> "ChannelQuerySet":
        """Channels, enabled or not, that should hear about `incident`: an outage concerns
        everyone, a switched-off channel every other channel."""
        if incident.kind == Incident.Kind.CHANNEL:
            return self.exclude(pk=incident.channel_id)
        if incident.kind == Incident.Kind.OUTAGE or incident.token_id is None:
            return self.all()
        token_id = incident.token_id
        chosen = Q(covers_all_tokens=True) | Q(portals__tokens=token_id) | Q(tokens=token_id)
        # A subquery rather than DISTINCT: the joins repeat a channel per matching row.
        return self.filter(pk__in=Channel.objects.filter(chosen).values("pk"))

    def covering(self, incident: Incident) -> "ChannelQuerySet":
        """Enabled channels that should hear about `incident`."""
        return self.enabled().concerned(incident)


class Channel(models.Model):
    """One place alerts go: a provider account (credentials) and one recipient (destination)."""

    kind = models.CharField(_("provider"), max_length=20, choices=KIND_CHOICES)
    name = models.CharField(
        _("name"), max_length=200, help_text=_("Shown in the admin, e.g. “Ann's phone”.")
    )
    # JSON object of the backend's credential_fields, encrypted at rest like client secrets.
    credentials = EncryptedTextField(_("credentials"), blank=True, editable=False)
    destination = models.CharField(
        _("destination"),
        max_length=255,
        help_text=_(
            "Where alerts go: a phone number in E.164 form (+15550100123) for SMS, an "
            "email address for email, a Telegram chat id (987654321, -100…) or @channel."
        ),
    )
    enabled = models.BooleanField(
        _("enabled"),
        default=True,
        help_text=_("Off: nothing is sent here; queued alerts wait until it is on."),
    )
    covers_all_tokens = models.BooleanField(
        _("all tokens"),
        default=True,
        help_text=_(
            "On: alerts of every token come here. Off: only the portals and tokens "
            "chosen below. Outage alerts come to every enabled channel."
        ),
    )
    portals = models.ManyToManyField(
        "portals.Portal",
        blank=True,
        related_name="channels",
        verbose_name=_("portals"),
        help_text=_("With “all tokens” off: alerts of every token of these portals."),
    )
    tokens = models.ManyToManyField(
        "portals.Token",
        blank=True,
        related_name="channels",
        verbose_name=_("tokens"),
        help_text=_("With “all tokens” off: alerts of these tokens."),
    )
    max_per_hour = models.PositiveIntegerField(
        _("at most per hour"),
        default=20,
        help_text=_(
            "Messages this channel sends in any hour (a digest counts as one); more wait "
            "for the hour to pass and then go out as one digest. 0: no limit."
        ),
    )
    remind_every_minutes = models.PositiveIntegerField(
        _("remind every (minutes)"),
        default=0,
        help_text=_("While an incident stays open, repeat its alert this often. 0: no reminders."),
    )
    language = models.CharField(
        _("language"),
        max_length=5,
        choices=ALERT_LANGUAGES,
        default=default_alert_language,
        help_text=_("The language its alerts and test messages are written in."),
    )
    last_sent_at = models.DateTimeField(_("last sent"), null=True, blank=True, editable=False)
    last_error = models.TextField(_("last error"), blank=True, editable=False)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True, editable=False)
    failing_since = models.DateTimeField(
        _("failing since"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "The provider has failed every send since then (it is down or refusing); "
            "b24keeper keeps retrying. Empty when the last send went through."
        ),
    )
    disabled_reason = models.TextField(
        _("disabled because"),
        blank=True,
        editable=False,
        help_text=_("Why b24keeper switched this channel off (a permanent provider error)."),
    )
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = ChannelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        permissions = [
            ("send_test_message", "Can send a test message"),
            ("toggle_channel", "Can disable and enable channels"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @sensitive_variables()
    def get_credentials(self) -> dict[str, str]:
        """The stored credentials; ConfigurationError when they cannot be read."""
        try:
            value = json.loads(self.credentials or "{}")
        except DecryptionError as err:  # decrypted on first access when deferred
            raise ConfigurationError(str(err)) from None
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ConfigurationError(
                f"The stored credentials of channel “{self.name}” are unreadable; enter them "
                "again in the admin."
            )
        return {str(k): str(v) for k, v in value.items()}

    @sensitive_variables()
    def set_credentials(self, values: dict[str, str]) -> None:
        self.credentials = json.dumps(values, sort_keys=True)

    @sensitive_variables()
    def backend(self) -> Backend:
        """The provider backend for this channel; ConfigurationError when it cannot work."""
        return get_backend(self.kind, self.get_credentials(), self.destination)

    def backend_class(self) -> type[Backend]:
        """The provider's backend class, without reading the credentials."""
        return BACKENDS[self.kind]


class Delivery(models.Model):
    """One message about one incident event on one channel; the unit of sending and retrying.

    The unique constraint makes creating a delivery idempotent: a repeated signal or two
    reminder sweeps can never produce a second message for the same event.
    """

    class Event(models.TextChoices):
        OPENED = "opened", _("Alert")
        CHANGED = "changed", _("Alert: a person must act now")
        REMINDER = "reminder", _("Reminder")
        RESOLVED = "resolved", _("Recovery notice")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Not needed")

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("incident")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("channel")
    )
    event = models.CharField(_("event"), max_length=10, choices=Event.choices)
    sequence = models.PositiveIntegerField(
        _("sequence"),
        default=0,
        help_text=_(
            "Reminders: how many reminder intervals after the alert; severity changes: which "
            "change; else 0."
        ),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveIntegerField(
        _("attempts"), default=0, help_text=_("Sends tried so far.")
    )
    provider_message_id = models.CharField(_("provider's message id"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True, help_text=_("The last failure, in words."))
    digest = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="folded",
        verbose_name=_("digest"),
        help_text=_("Sent inside the digest that this delivery led."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    claimed_at = models.DateTimeField(
        _("claimed"), null=True, blank=True, help_text=_("When sending started.")
    )
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    delivered_at = models.DateTimeField(
        _("delivered"),
        null=True,
        blank=True,
        help_text=_("When the provider confirmed that it arrived."),
    )
    check_until = models.DateTimeField(
        _("check status until"),
        null=True,
        blank=True,
        help_text=_("The provider's delivery status is asked until then."),
    )
    next_check_at = models.DateTimeField(
        _("next status check"),
        null=True,
        blank=True,
        help_text=_("When the delivery status is asked next; empty: never."),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "channel", "event", "sequence"], name="one_delivery_per_event"
            )
        ]
        indexes = [
            models.Index(
                fields=["channel", "next_attempt_at"],
                name="delivery_queued_idx",
                condition=Q(status="queued"),
            ),
            models.Index(fields=["channel", "created_at"], name="delivery_channel_created_idx"),
            models.Index(fields=["channel", "sent_at"], name="delivery_channel_sent_idx"),
            models.Index(
                fields=["next_check_at"],
                name="delivery_check_idx",
                condition=Q(next_check_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        reminder = f" {self.sequence}" if self.event == self.Event.REMINDER else ""
        return f"{self.get_event_display()}{reminder} #{self.pk}"


# An incident's first word on a channel: never held by the hourly rate limit (repeats are).
FIRST_ALERTS = (Delivery.Event.OPENED, Delivery.Event.CHANGED)
REPEATS = (Delivery.Event.REMINDER, Delivery.Event.RESOLVED)
