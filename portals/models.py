"""Portals, app credentials, tokens and the refresh audit log."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.dbclock import DbNow
from encryption.fields import EncryptedTextField
from portals.bitrix import authservers
from portals.bitrix.errors import ConfigurationError
from portals.bitrix.identifiers import normalize_portal_address, normalize_scope, validate_client_id


class Portal(models.Model):
    domain = models.CharField(
        _("address"),
        max_length=255,
        unique=True,
        help_text=_(
            "The portal's host, e.g. acme.bitrix24.com. It can change when the portal "
            "is renamed; member_id does not."
        ),
    )
    member_id = models.CharField(
        _("member_id"),
        max_length=32,
        unique=True,
        null=True,
        blank=True,
        help_text=_("The portal's permanent id (32 hex characters), learned on the first connect."),
    )
    auth_server = models.URLField(
        _("authorization server"),
        blank=True,
        help_text=_(
            "Where this portal's tokens are issued and renewed, as the portal told us "
            "(server_endpoint without /rest/). Empty: BITRIX_OAUTH_SERVER."
        ),
    )
    # The portal's REST rate limit, a leaky bucket (docs/bitrix24-protocol.md §5.4) that
    # portals.rest keeps for every process and machine calling this portal.
    rest_rate = models.FloatField(
        _("REST requests per second"),
        default=2.0,
        validators=[
            MinValueValidator(0.1, _("Enter at least 0.1 requests per second.")),
            MaxValueValidator(1000, _("Enter at most 1000 requests per second.")),
        ],
        help_text=_(
            "How fast the portal's request counter drains: 2 on every cloud plan but "
            "Enterprise, which has 5. On-premise portals set their own."
        ),
    )
    rest_burst = models.PositiveIntegerField(
        _("REST burst"),
        default=50,
        validators=[
            MinValueValidator(1, _("Enter at least 1 request.")),
            MaxValueValidator(100000, _("Enter at most 100000 requests.")),
        ],
        help_text=_(
            "How many requests the portal takes at once before answering "
            "QUERY_LIMIT_EXCEEDED: 50 on every cloud plan but Enterprise, which has 250."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["domain"]
        verbose_name = _("portal")
        verbose_name_plural = _("portals")

    def __str__(self) -> str:
        return self.domain

    def clean(self) -> None:
        self.domain = normalize_portal_address(self.domain)
        if self.auth_server:
            try:
                self.auth_server = authservers.require(self.auth_server, "The authorization server")
            except ConfigurationError as err:
                raise ValidationError({"auth_server": str(err)}) from None

    def authorization_server(self) -> str:
        return (self.auth_server or settings.BITRIX_OAUTH_SERVER).rstrip("/")


class AppCredentials(models.Model):
    class RefreshPolicy(models.TextChoices):
        INTERVAL = "interval", _("Every N minutes")
        BEFORE_EXPIRY = "before_expiry", _("Before expiry only")

    name = models.CharField(_("display name"), max_length=200)
    client_id = models.CharField(
        _("client_id"),
        max_length=50,
        unique=True,
        help_text=_("From the application's card in Bitrix24, e.g. local.6a1b2c3d4e5f60.48151623."),
    )
    client_secret = EncryptedTextField(
        _("client_secret"), help_text=_("Stored encrypted; shown only as its last 4 characters.")
    )
    scope = models.CharField(
        _("scope"), max_length=500, help_text=_("Comma-separated scope codes, e.g. crm,user,task.")
    )
    refresh_policy = models.CharField(
        _("refresh policy"),
        max_length=20,
        choices=RefreshPolicy.choices,
        default=RefreshPolicy.INTERVAL,
        help_text=_(
            "“Every N minutes” refreshes on a fixed interval, as the old process did. "
            "“Before expiry only” refreshes when the access token is about to expire, plus a "
            "keep-alive refresh so the refresh token (30 days) never lapses; Bitrix24 advises "
            "against frequent scheduled refreshes."
        ),
    )
    # Bounded so that every schedule is computable and useful: an access token lives 60
    # minutes and a refresh token 30 days (docs/bitrix24-protocol.md §3.1).
    refresh_interval_minutes = models.PositiveIntegerField(
        _("refresh interval (minutes)"),
        default=25,
        validators=[
            MinValueValidator(1, _("Refresh at most once a minute: enter 1 to 55 minutes.")),
            MaxValueValidator(
                55, _("Refresh at least every 55 minutes (an access token lives 60): enter 1–55.")
            ),
        ],
        help_text=_(
            "With “every N minutes”: minutes between refreshes, 1–55 (an access token "
            "lives 60 minutes)."
        ),
    )
    refresh_before_expiry_minutes = models.PositiveIntegerField(
        _("refresh before expiry (minutes)"),
        default=10,
        validators=[
            MinValueValidator(1, _("Enter at least 1 minute.")),
            MaxValueValidator(
                59, _("An access token lives 60 minutes: enter fewer than 60 minutes (1–59).")
            ),
        ],
        help_text=_(
            "With “before expiry only”: refresh when fewer than this many minutes of "
            "the access token remain, 1–59."
        ),
    )
    keepalive_days = models.PositiveIntegerField(
        _("keep-alive (days)"),
        default=7,
        validators=[
            MinValueValidator(1, _("Enter at least 1 day.")),
            MaxValueValidator(
                29,
                _("A refresh token lives 30 days: keep it alive at least every 29 days (1–29)."),
            ),
        ],
        help_text=_(
            "With “before expiry only”: refresh at least this often, 1–29 days, even when "
            "nothing uses the token, inside the refresh token's 30-day life."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("app credentials")
        verbose_name_plural = _("app credentials")
        ordering = ["name"]

    def __str__(self) -> str:
        # An app named after its client_id (the default) is shown once, not "x (x)".
        if not self.name or self.name == self.client_id:
            return self.client_id
        return f"{self.name} ({self.client_id})"

    def scope_set(self) -> set[str]:
        return {code for code in self.scope.split(",") if code}

    def clean(self) -> None:
        self.client_id = validate_client_id(self.client_id)
        self.scope = normalize_scope(self.scope)


class TokenStatus(models.TextChoices):
    AWAITING_CODE = "awaiting_code", _("Awaiting code")
    ACTIVE = "active", _("Active")
    REFRESH_FAILING = "refresh_failing", _("Refresh failing")
    NEEDS_REAUTH = "needs_reauth", _("Needs re-authorization")
    UNINSTALLED = "uninstalled", _("App uninstalled")
    PAYMENT_REQUIRED = "payment_required", _("Payment required")
    DISABLED = "disabled", _("Disabled")
    CONFIG_ERROR = "config_error", _("Configuration error")


# Statuses in which the token can be used and the scheduler keeps refreshing it.
REFRESHABLE_STATUSES = (TokenStatus.ACTIVE, TokenStatus.REFRESH_FAILING)
# Statuses the sweep visits: a configuration error is retried (with backoff), so the token
# recovers by itself once the setting is fixed.
SCHEDULED_STATUSES = (*REFRESHABLE_STATUSES, TokenStatus.CONFIG_ERROR)
# A freshly rotated pair makes these statuses active again. needs_reauth is among them: it is
# what another process concludes when it tries the refresh token our pair just replaced.
# Statuses staff set (disabled) or Bitrix set for a reason a new pair does not undo
# (uninstalled, payment required) stay as they are.
REACTIVATED_BY_A_NEW_PAIR = (*SCHEDULED_STATUSES, TokenStatus.NEEDS_REAUTH)


def refresh_lease() -> timedelta:
    return timedelta(seconds=settings.TOKEN_REFRESH_LEASE)


class TokenQuerySet(models.QuerySet):
    def refreshable(self) -> "TokenQuerySet":
        return self.filter(status__in=REFRESHABLE_STATUSES)

    def scheduled(self, now: "datetime | DbNow | None" = None) -> "TokenQuerySet":
        """Tokens whose next refresh time has come and that no sweep has claimed (by the
        database's clock unless `now` is given)."""
        now = DbNow() if now is None else now
        return (
            self.filter(status__in=SCHEDULED_STATUSES)
            .filter(next_refresh_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        )

    def interrupted(self, now: "datetime | DbNow | None" = None) -> "TokenQuerySet":
        """Tokens whose refresh claim is older than TOKEN_REFRESH_LEASE: its process died
        mid-call, maybe after Bitrix rotated. Due at once, whatever their schedule or a lost
        task's sweep claim says, so a dead refresh is found within a lease and a sweep."""
        now = DbNow() if now is None else now
        return self.filter(
            status__in=SCHEDULED_STATUSES, refresh_started_at__lt=now - refresh_lease()
        )

    def due(self, now: "datetime | DbNow | None" = None) -> "TokenQuerySet":
        return self.scheduled(now) | self.interrupted(now)


class Token(models.Model):
    portal = models.ForeignKey(
        Portal, on_delete=models.PROTECT, related_name="tokens", verbose_name=_("portal")
    )
    app = models.ForeignKey(
        AppCredentials,
        on_delete=models.PROTECT,
        related_name="tokens",
        verbose_name=_("app credentials"),
    )
    reference = models.SlugField(
        _("reference"),
        max_length=100,
        unique=True,
        help_text=_("The name other code uses to get this token: get_access_token(reference)."),
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_tokens",
        verbose_name=_("owner"),
        help_text=_("The staff member responsible for this token; alerts name them."),
    )
    notes = models.TextField(
        _("notes"), blank=True, help_text=_("Anything staff want to remember about this token.")
    )
    status = models.CharField(
        _("status"), max_length=20, choices=TokenStatus.choices, default=TokenStatus.AWAITING_CODE
    )
    access_token = EncryptedTextField(_("access token"), blank=True)
    refresh_token = EncryptedTextField(_("refresh token"), blank=True)
    # The per-install secret Bitrix24 sends with every event of this app on this portal
    # (docs/bitrix24-protocol.md §6.2): it authenticates ONAPPUPDATE and ONAPPUNINSTALL.
    application_token = EncryptedTextField(
        _("application_token"),
        blank=True,
        help_text=_("Sent by Bitrix24 on install; proves later events genuine. Stored encrypted."),
    )
    expires_at = models.DateTimeField(
        _("expires at"), null=True, blank=True, help_text=_("When the access token expires.")
    )
    scope = models.CharField(
        _("granted scope"),
        max_length=500,
        blank=True,
        help_text=_("What Bitrix24 says this token may do (app.info after connecting)."),
    )
    client_endpoint = models.URLField(
        _("client_endpoint"), blank=True, help_text=_("The portal's REST root.")
    )
    server_endpoint = models.URLField(
        _("server_endpoint"),
        blank=True,
        help_text=_("The authorization server's REST root; refreshes go there."),
    )
    user_id = models.PositiveIntegerField(
        _("user_id"), null=True, blank=True, help_text=_("The portal user this token acts as.")
    )
    app_status = models.CharField(
        _("app status"),
        max_length=1,
        blank=True,
        help_text=_(
            "Bitrix24's status of the app on the portal (L local, F free, D demo, T trial, "
            "P paid, S subscription), as its last token answer said."
        ),
    )
    version = models.PositiveIntegerField(
        _("version"),
        default=0,
        help_text=_("Bumped on every rotation; fences concurrent writers."),
    )
    last_refreshed_at = models.DateTimeField(_("last refreshed"), null=True, blank=True)
    # Set before a call to Bitrix24 and cleared with its answer: a value older than
    # TOKEN_REFRESH_LEASE means the refreshing process died mid-call.
    refresh_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Scheduling: when the sweep should next enqueue this token, and its claim on it.
    next_refresh_at = models.DateTimeField(_("next refresh"), null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    failure_count = models.PositiveIntegerField(
        _("failures"), default=0, help_text=_("Failed refreshes since the last success.")
    )
    last_error_code = models.CharField(_("last error code"), max_length=100, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    failing_since = models.DateTimeField(
        _("failing since"),
        null=True,
        blank=True,
        help_text=_("First failure of the current episode."),
    )
    last_failure_at = models.DateTimeField(_("last failure"), null=True, blank=True)
    # Bitrix24 posts ONAPPUNINSTALL only to a handler bound beforehand (portals.connect.eventbind).
    events_bound_at = models.DateTimeField(
        _("uninstall events bound at"),
        null=True,
        blank=True,
        help_text=_("When b24keeper last found its uninstall and update handlers bound."),
    )
    events_bind_error = models.TextField(
        _("uninstall events: last binding error"),
        blank=True,
        help_text=_("Why binding the uninstall and update handlers last failed."),
    )
    # An uninstall of a token connected by code is checked by one refresh at most this often
    # (portals.connect.uninstall).
    uninstall_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["reference"]
        verbose_name = _("token")
        verbose_name_plural = _("tokens")
        permissions = [
            ("connect_portal", "Can connect portals (Add task, Connect, Re-connect)"),
            ("refresh_token", "Can refresh tokens now"),
            ("toggle_token", "Can disable and enable tokens"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["portal", "app"], name="one_token_per_connection")
        ]
        indexes = [
            # The sweep's query: refreshable tokens whose next refresh time has come.
            models.Index(
                fields=["next_refresh_at"],
                name="token_due_idx",
                condition=Q(status__in=["active", "refresh_failing", "config_error"]),
            ),
            # Interrupted refreshes (the sweep's second condition): only rows in flight.
            models.Index(
                fields=["refresh_started_at"],
                name="token_in_flight_idx",
                condition=Q(refresh_started_at__isnull=False),
            ),
            # The outage check: tokens failing transiently within the last 10 minutes.
            models.Index(
                fields=["last_failure_at"],
                name="token_failing_idx",
                condition=Q(status="refresh_failing"),
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    def expires_in(self) -> timedelta | None:
        return self.expires_at - timezone.now() if self.expires_at else None

    def is_usable(self) -> bool:
        return self.status in REFRESHABLE_STATUSES and bool(self.access_token)

    def missing_scopes(self) -> list[str]:
        """Scopes the app asks for that Bitrix24 did not grant (empty when unknown)."""
        granted = {code.strip() for code in self.scope.split(",") if code.strip()}
        if not granted or granted == {"app"}:  # local apps may answer just "app" (§8)
            return []
        return sorted(self.app.scope_set() - granted)


class RefreshAttempt(models.Model):
    class Kind(models.TextChoices):
        CODE_EXCHANGE = "code_exchange", _("Code exchange")
        SCHEDULED = "scheduled", _("Scheduled")
        ON_DEMAND = "on_demand", _("On demand")
        MANUAL = "manual", _("Manual")
        EVENT = "event", _("Bitrix24 event")
        RENEW = "renew", _("Renewed: a consumer's token was refused")

    class Outcome(models.TextChoices):
        SUCCESS = "success", _("Success")
        ROTATED_ELSEWHERE = "rotated_elsewhere", _("Already rotated by another worker")
        TRANSIENT_ERROR = "transient_error", _("Transient error")
        PERMANENT_ERROR = "permanent_error", _("Permanent error")
        INTERRUPTED = "interrupted", _("Interrupted (process died mid-refresh)")
        CONFIG_ERROR = "config_error", _("Configuration error (nothing sent)")
        RESTORED = "restored", _("Restored from the local journal")

    token = models.ForeignKey(
        Token, on_delete=models.CASCADE, related_name="attempts", verbose_name=_("token")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"))
    error_code = models.CharField(_("Bitrix error code"), max_length=100, blank=True)
    error_description = models.TextField(_("error description"), blank=True)
    http_status = models.PositiveSmallIntegerField("HTTP", null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    store_retries = models.PositiveSmallIntegerField(
        _("store retries"),
        default=0,
        help_text=_("Times storing the new pair failed (database outage) and was retried."),
    )

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("refresh attempt")
        verbose_name_plural = _("refresh attempts")
        indexes = [
            models.Index(fields=["token", "-started_at"], name="attempt_token_idx"),
            # The home page's chart of the last 24 hours and the audit log's date drill-down.
            models.Index(fields=["started_at"], name="attempt_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.token_id} {self.kind} {self.outcome}"


class RateBucket(models.Model):
    """A leaky bucket's state when REDIS_URL is not set (portals.bitrix.ratelimit): one row per
    bucket, updated by one atomic statement, so every process and machine shares it."""

    key = models.CharField(max_length=100, primary_key=True)
    level = models.FloatField(default=0.0, help_text="Requests in the bucket at updated_at.")
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = _("rate bucket")

    def __str__(self) -> str:
        return self.key


# Models of connects in progress, in their own module (portals.connect.states holds their rules).
from portals.connect_models import ConnectState, PendingPair  # noqa: E402

__all__ = [
    "AppCredentials",
    "ConnectState",
    "PendingPair",
    "Portal",
    "RateBucket",
    "RefreshAttempt",
    "Token",
    "TokenStatus",
]
