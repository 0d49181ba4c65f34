"""b24keeper settings: every value comes from the environment or an optional .env file.

Settings are read once, here. A bad value fails loudly at start-up; see .env.example for
what each variable means.
"""

from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# Where the embedded defaults keep their state: the SQLite database and the broker's folders.
VAR_DIR = Path(env.str("VAR_DIR", default="") or BASE_DIR / "var")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Put SECRET_KEY=<a long random string> in .env "
            "(bin/serve writes one for you), or set DEBUG=true for local experiments."
        )
    SECRET_KEY = "insecure-development-key-only-for-debug"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = [o for o in env.list("CSRF_TRUSTED_ORIGINS", default=[]) if o]
# The public address of this service, used in links inside alerts.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- HTTPS ----------------------------------------------------------------------------------
# One switch for running behind a TLS proxy (nginx, a load balancer) that sets
# X-Forwarded-Proto: secure cookies, HSTS, redirects from http to https, and trust in that
# header (so the proxy must overwrite any X-Forwarded-Proto a client sends). Off for bin/serve
# on http://127.0.0.1.
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
# How long browsers keep to https once they have seen it (default one year).
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=365 * 24 * 3600) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=False)
# Health probes and the metrics scraper ask over plain http from inside, past the proxy.
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics/?$"]
SILENCED_SYSTEM_CHECKS = [
    # HSTS includeSubDomains (W005) and preload (W021) are commitments only the operator can
    # make: the first forces https on every subdomain of this host, the second has browsers
    # ship the domain as https-only for months. Off by default; see HSTS_INCLUDE_SUBDOMAINS
    # and HSTS_PRELOAD.
    "security.W005",
    "security.W021",
]

# --- Admin login throttling (django-axes) ---------------------------------------------------
# After LOGIN_FAILURE_LIMIT failed logins for one username from one address, that pair waits
# LOGIN_COOLOFF_MINUTES (HTTP 429). Keyed by both, so nobody can lock a colleague out from
# elsewhere; a successful login clears the count.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# How many proxies of ours stand in front of the service (the documented nginx: 1). The
# client's address is the one that many hops from the right of X-Forwarded-For + REMOTE_ADDR;
# 0 ignores X-Forwarded-For (anyone can write it). Used by the login throttle and for an API
# key's last use (core/client_ip.py).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more (the documented nginx: 1).")
AXES_CLIENT_IP_CALLABLE = "core.client_ip.forwarded_client_ip"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login early
    "django.contrib.auth.backends.ModelBackend",
]

INSTALLED_APPS = [
    "core.apps.AdminConfig",  # django.contrib.admin; see core/apps.py
    "core.apps.CoreConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "portals",
    "notifications",
    "dashboard",
    "api",
    "ops",
]

MIDDLEWARE = [
    # First: a control character at a public endpoint is a 400 before anything reads the
    # request (core/middleware.py).
    "core.middleware.ControlCharacterMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A refused page: the admin-styled 403 naming the permission, no traceback in the log.
    "core.denied.PermissionDeniedPage",
    # Last, as django-axes requires: it turns a lockout into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite under var/ by default (zero set-up); PostgreSQL in production and in the tests.
SQLITE_DEFAULT = f"sqlite:///{VAR_DIR / 'b24keeper.sqlite3'}"
DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL", default="") or SQLITE_DEFAULT)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write at once: WAL lets readers and one writer work together,
    # IMMEDIATE transactions take the write lock up front (no deadlock on lock upgrade), and
    # the busy timeout makes a writer wait for the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
        ),
    }
else:
    # Keep connections between requests and tasks: a new PostgreSQL session per refresh cost
    # half the CPU of a refresh in bench/refresh_cycle.py. Health checks drop a dead one.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en")
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The language staff choose in the admin's header is remembered for a year (a cookie).
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
# Every page shows dates one way, in both languages (config/formats/).
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- Secrets at rest ------------------------------------------------------------------------
# Fernet keys, newest first. Old keys stay in the list until `manage.py reencrypt_secrets`
# has rewritten every row with the newest one.
ENCRYPTION_KEYS = [k for k in env.list("ENCRYPTION_KEYS", default=[]) if k]
if not ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "ENCRYPTION_KEYS is not set, so secrets cannot be stored. Make a key with\n"
        "  python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'\n"
        "and put ENCRYPTION_KEYS=<that key> in .env (bin/serve writes one for you)."
    )

# --- Bitrix24 -------------------------------------------------------------------------------
# The authorization server for a first code exchange when the portal has not named its own;
# later refreshes use the server_endpoint the portal returned.
BITRIX_OAUTH_SERVER = env.str("BITRIX_OAUTH_SERVER", default="https://oauth.bitrix.info").rstrip(
    "/"
)
# The only places the client_secret and tokens are ever sent: Bitrix24's authorization
# servers, as origins (scheme://host[:port]). Tests add their fake's origin.
BITRIX_AUTH_SERVERS = [
    s.strip().rstrip("/")
    for s in env.list(
        "BITRIX_AUTH_SERVERS", default=["https://oauth.bitrix.info", "https://oauth.bitrix24.tech"]
    )
    if s.strip()
]
# Lets tests and local fakes use http:// URLs; never turn it on in production.
BITRIX_ALLOW_HTTP = env.bool("BITRIX_ALLOW_HTTP", default=False)
# Bind b24keeper's ONAPPUNINSTALL and ONAPPUPDATE handlers (event.bind) on every connected portal,
# after each connect and daily (portals.connect.eventbind). Off: bind them yourself.
BITRIX_BIND_EVENTS = env.bool("BITRIX_BIND_EVENTS", default=True)
# The zone a bare portal name is put in: "acme" -> "acme.bitrix24.ru".
BITRIX_DEFAULT_ZONE = env.str("BITRIX_DEFAULT_ZONE", default="bitrix24.ru")
BITRIX_CONNECT_TIMEOUT = env.float("BITRIX_CONNECT_TIMEOUT", default=5.0)
BITRIX_READ_TIMEOUT = env.float("BITRIX_READ_TIMEOUT", default=15.0)
# The most one call to the authorization server may take in all (a slowly dripping answer
# passes every per-read timeout); shorter than TOKEN_REFRESH_LEASE (a system check says so).
BITRIX_OAUTH_DEADLINE = env.float("BITRIX_OAUTH_DEADLINE", default=30.0)
# Keep-alive connections kept per host: at least the worker's concurrency (threads pool).
BITRIX_HTTP_POOL_SIZE = env.int("BITRIX_HTTP_POOL_SIZE", default=32)
# How long a caller of get_access_token() waits for another process's refresh to finish.
TOKEN_REFRESH_WAIT = env.float("TOKEN_REFRESH_WAIT", default=20.0)
# A refresh marked as started longer ago than this is presumed dead (its process crashed).
TOKEN_REFRESH_LEASE = env.int("TOKEN_REFRESH_LEASE", default=60)
# Seconds a refresh keeps retrying to store a new pair through a database outage. The pair is
# in the local journal (VAR_DIR/journal) first, so even after this it is replayed later.
TOKEN_STORE_RETRY = env.float("TOKEN_STORE_RETRY", default=120.0)
# The local journal of token pairs received from Bitrix24 but not yet stored.
TOKEN_JOURNAL_DIR = VAR_DIR / "journal"
# Seconds between two rounds of the machine's journal loop (portals.tokens.replayer), which
# stores what the journal holds once the database is back, without a restart.
TOKEN_JOURNAL_RETRY = env.float("TOKEN_JOURNAL_RETRY", default=10.0)

# --- The REST client (portals.rest) and the shared rate limit ------------------------------
# Seconds one REST request may take in all, counting its wait for a turn under the portal's
# rate limit and its retries after QUERY_LIMIT_EXCEEDED or OPERATION_TIME_LIMIT; after that the
# caller gets the error (docs/bitrix24-protocol.md §5.4).
BITRIX_REST_DEADLINE = env.float("BITRIX_REST_DEADLINE", default=60.0)
if BITRIX_REST_DEADLINE <= 0:
    raise ImproperlyConfigured("BITRIX_REST_DEADLINE must be a positive number of seconds.")
# Where the per-portal rate buckets (and the API keys' rate limits) live, shared by every
# process on every machine. Set it in production, whatever the broker. Empty: a database row
# per bucket on PostgreSQL; on SQLite the buckets are per process only.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        "REDIS_URL must be a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/1."
    )

# --- The token API and the REST proxy (api/) ------------------------------------------------
# Seconds an API key's check (its tokens, scopes, method patterns, expiry) is kept in each web
# process's memory: a revoked or changed key takes effect within this long. 0: every request
# reads the key.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=10.0)
# Seconds the REST proxy waits for a turn in the portal's shared rate limit before answering
# 503 QUERY_LIMIT_EXCEEDED, as Bitrix24 would.
PROXY_MAX_WAIT = env.float("PROXY_MAX_WAIT", default=5.0)
if API_KEY_CACHE_SECONDS < 0 or PROXY_MAX_WAIT < 0:
    raise ImproperlyConfigured("API_KEY_CACHE_SECONDS and PROXY_MAX_WAIT must be 0 or more.")

# A provider-wide outage: more than this share of refreshable tokens failing transiently
# within 10 minutes (and at least OUTAGE_MIN_TOKENS of them) opens one outage incident.
OUTAGE_SHARE = env.float("OUTAGE_SHARE", default=0.2)
OUTAGE_MIN_TOKENS = env.int("OUTAGE_MIN_TOKENS", default=5)

# --- Scheduling -----------------------------------------------------------------------------
# At most this many refreshes are enqueued per sweep (the sweep runs every minute by default,
# editable in the admin's Periodic tasks): the ceiling on the refresh rate after an outage.
REFRESH_MAX_PER_SWEEP = env.int("REFRESH_MAX_PER_SWEEP", default=2000)
# Seconds a queued refresh task stays valid; older ones are dropped, the next sweep re-queues.
REFRESH_TASK_EXPIRES = env.int("REFRESH_TASK_EXPIRES", default=300)
# Up to this many tokens per refresh task (refreshed one after the other in one worker slot):
# a catch-up of 10,000 tokens is 1,000 messages, not 10,000. Small sweeps spread their tokens
# over more tasks (portals.tokens.sweep.batches), so every worker slot gets some.
REFRESH_BATCH_SIZE = env.int("REFRESH_BATCH_SIZE", default=10)
if not 1 <= REFRESH_BATCH_SIZE <= 100:
    raise ImproperlyConfigured("REFRESH_BATCH_SIZE must be between 1 and 100 (tokens per task).")
# Retrying a transient refresh failure: base * 2^(failures-1) seconds, jittered, capped.
REFRESH_BACKOFF_BASE_SECONDS = env.float("REFRESH_BACKOFF_BASE_SECONDS", default=30.0)
REFRESH_BACKOFF_MAX_SECONDS = env.float("REFRESH_BACKOFF_MAX_SECONDS", default=900.0)
# Seconds between sweeps, used only when the sweep's periodic task is first created.
SWEEP_INTERVAL_SECONDS = env.int("SWEEP_INTERVAL_SECONDS", default=60)

# --- Celery ---------------------------------------------------------------------------------
# Default: kombu's filesystem transport under var/broker, so nothing needs a server.
# Production: redis://host:6379/0.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"  # atomic writes; see config/broker.py
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's broadcast tables (worker remote control); its default is ./control.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A message unacknowledged this long is redelivered (acks_late): must exceed any countdown.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Seconds any publish may wait on the broker, to connect and for each read or write (Redis and
# AMQP): a broker that accepts connections and never answers must not hang a caller.
BROKER_TIMEOUT = env.float("BROKER_TIMEOUT", default=5.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The task modules, which sit on top and are imported by nobody: workers load them here. Each
# task keeps the name it had before the rooms (portals.tasks.…), carried by queued messages and
# periodic-task rows.
CELERY_IMPORTS = [
    "portals.tokens.tasks",
    "portals.connect.tasks",
    "notifications.tasks",
    "ops.tasks",
]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection around every task unless told to
# reuse it; config/celery.py still drops broken or expired connections before each task.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

# --- Notification providers -----------------------------------------------------------------
# Base URLs are settings so tests and staging can point them at a fake.
TWILIO_API_URL = env.str("TWILIO_API_URL", default="https://api.twilio.com").rstrip("/")
MESSAGEBIRD_API_URL = env.str("MESSAGEBIRD_API_URL", default="https://rest.messagebird.com").rstrip(
    "/"
)
UNISENDER_API_URL = env.str("UNISENDER_API_URL", default="https://api.unisender.com").rstrip("/")
MANDRILL_API_URL = env.str("MANDRILL_API_URL", default="https://mandrillapp.com/api/1.0").rstrip(
    "/"
)
TELEGRAM_API_URL = env.str("TELEGRAM_API_URL", default="https://api.telegram.org").rstrip("/")
NOTIFY_CONNECT_TIMEOUT = env.float("NOTIFY_CONNECT_TIMEOUT", default=5.0)
NOTIFY_READ_TIMEOUT = env.float("NOTIFY_READ_TIMEOUT", default=20.0)
# The language of alert texts: "en" or "ru".
NOTIFY_LANGUAGE = env.str("NOTIFY_LANGUAGE", default="en")
# A new alert or recovery notice waits this long before it is sent, so that the other failures
# of a storm can join it in one digest.
NOTIFY_HOLD_SECONDS = env.float("NOTIFY_HOLD_SECONDS", default=30.0)
# An open incident counts as heard only when an alert of it was sent, or one waits on an
# enabled channel for less than this many seconds; past that, /health/ (alerts) fails, the
# gauge b24keeper_incidents_unheard counts it and ADMINS are emailed. Must exceed the hold.
NOTIFY_HEARD_WITHIN = env.float("NOTIFY_HEARD_WITHIN", default=300.0)
# More than this many deliveries on one channel within NOTIFY_STORM_WINDOW_SECONDS (or waiting
# at once) is a storm: they go out as one digest per channel.
NOTIFY_STORM_THRESHOLD = env.int("NOTIFY_STORM_THRESHOLD", default=5)
NOTIFY_STORM_WINDOW_SECONDS = env.float("NOTIFY_STORM_WINDOW_SECONDS", default=300.0)
# A storm that keeps growing is sent anyway once its oldest alert has waited this long.
NOTIFY_STORM_MAX_WAIT_SECONDS = env.float("NOTIFY_STORM_MAX_WAIT_SECONDS", default=300.0)
# The backoff between send attempts after a transient error: base * 2^(attempt-1), capped at
# the maximum, with jitter. An alert of an open incident is retried at that cap for as long as
# the incident stays open; a recovery notice gives up after NOTIFY_MAX_ATTEMPTS.
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=5)
NOTIFY_RETRY_BASE_SECONDS = env.float("NOTIFY_RETRY_BASE_SECONDS", default=30.0)
NOTIFY_RETRY_MAX_SECONDS = env.float("NOTIFY_RETRY_MAX_SECONDS", default=900.0)
# A delivery left "sending" this long was cut off by a dead worker and is sent again.
NOTIFY_SENDING_LEASE_SECONDS = env.float("NOTIFY_SENDING_LEASE_SECONDS", default=300.0)
# Where a provider reports whether a message arrived (Twilio, MessageBird, UniSender, Mandrill),
# it is asked this long after sending, first after NOTIFY_STATUS_CHECK_FIRST_SECONDS, then at
# growing intervals (at most 5 minutes apart). An undelivered message is sent again.
NOTIFY_STATUS_CHECK_SECONDS = env.float("NOTIFY_STATUS_CHECK_SECONDS", default=3600.0)
NOTIFY_STATUS_CHECK_FIRST_SECONDS = env.float("NOTIFY_STATUS_CHECK_FIRST_SECONDS", default=30.0)
# UniSender's sendEmail refuses a second email to one address within 60 s: sends to one
# recipient are spaced by this many seconds (docs/notification-providers.md §5a).
UNISENDER_EMAIL_MIN_INTERVAL = env.float("UNISENDER_EMAIL_MIN_INTERVAL", default=60.0)
# Seconds between runs of the notifications sweep (reminders, lost tasks); used only when its
# periodic task is first created.
NOTIFY_SWEEP_INTERVAL_SECONDS = env.int("NOTIFY_SWEEP_INTERVAL_SECONDS", default=60)

# --- Email to the admins -------------------------------------------------------------------
# Who hears when an open incident reaches nobody (no enabled channel covers it), e.g.
# ADMINS=Ann Smith <ann@example.org>, ops@example.org
ADMINS = [(name, address) for name, address in getaddresses([env.str("ADMINS", default="")])]
ADMINS = [(name, address) for name, address in ADMINS if address]
# The SMTP server for those emails, e.g. smtp+tls://user:password@smtp.example.org:587.
# Empty: no email is sent (the admin still shows such incidents).
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    globals().update(environ.Env.email_url_config(EMAIL_URL))
SERVER_EMAIL = env.str("SERVER_EMAIL", default="b24keeper@localhost")
DEFAULT_FROM_EMAIL = SERVER_EMAIL
EMAIL_SUBJECT_PREFIX = "[b24keeper] "
EMAIL_TIMEOUT = 20

# --- Logging and error pages ----------------------------------------------------------------
# Error pages (DEBUG) and error reports hide POST fields and variables marked sensitive.
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.error_reports.SecretsExceptionReporterFilter"
# ...and mask the password of any URL on the page or in the email, whatever holds it.
DEFAULT_EXCEPTION_REPORTER = "core.error_reports.SecretsExceptionReporter"
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# plain: one readable line per record. json: one JSON object per line (time, level, logger,
# message, token, task_id, traceback) for a log collector; redacted the same way.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "core.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # urllib3 logs full request URLs at DEBUG, and Telegram's URL holds the bot token (the
    # Telegram backend filters it, RedactSecretsFilter too): keep urllib3 at WARNING anyway.
    "loggers": {"urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- Operations: health, metrics, history ---------------------------------------------------
# GET /metrics (and the details of GET /health/) for a caller sending
# "Authorization: Bearer <METRICS_TOKEN>". Empty: only logged-in staff with the view
# permission (portals.view_token) may read them.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Each process adds its counters up in memory and writes them this often (seconds) and when it
# stops; a SIGKILLed process loses at most that many seconds of counts. 0: every event at once.
METRICS_FLUSH_SECONDS = env.float("METRICS_FLUSH_SECONDS", default=10.0)
if METRICS_FLUSH_SECONDS < 0:
    raise ImproperlyConfigured("METRICS_FLUSH_SECONDS must be 0 (write at once) or more.")
# Seconds the health checks may take (they run at once); GET /health/ answers within about
# that, and under 2 s at the maximum of 1.5.
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=1.5)
if not 0 < HEALTH_CHECK_TIMEOUT <= 1.5:
    raise ImproperlyConfigured("HEALTH_CHECK_TIMEOUT must be above 0 and at most 1.5 seconds.")
# Refresh attempts and deliveries older than this many days are deleted once a day (the
# latest attempt of each token and everything about open incidents stay).
HISTORY_RETENTION_DAYS = env.int("HISTORY_RETENTION_DAYS", default=30)
if HISTORY_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("HISTORY_RETENTION_DAYS must be at least 1 (day).")
