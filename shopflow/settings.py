"""Django settings for ShopFlow, read from the environment through django-environ.

With no DATABASE_URL and no CELERY_BROKER_URL everything runs on SQLite and
Celery's filesystem transport under var/ (the embedded default); production and
the test suite set both to PostgreSQL and Redis.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "dev-insecure-shopflow-secret-key-change-me"
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY):
    raise environ.ImproperlyConfigured("DEBUG=false needs a real SECRET_KEY in the environment")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

# --- HTTPS: production (DEBUG=false) runs behind a TLS-terminating proxy -------------
_PRODUCTION = not DEBUG
# The proxy tells the client's scheme in X-Forwarded-Proto; web listens on 127.0.0.1
# only (Procfile), so no client can set that header itself.
if env.bool("TRUST_X_FORWARDED_PROTO", default=_PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_PRODUCTION)
# Health probes and metrics scrapers call the web process directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_PRODUCTION)
# Seconds browsers keep to HTTPS once told (production: a year; 0 sends no HSTS header).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_PRODUCTION)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "outbox",
    "inventory",
    "orders",
    "payments",
    "shipping",
    "sagas",
    "notifications",
    "analytics",
    # Failed log-ins per (username, client address); locks the admin and the token endpoint.
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the API docs' static files from gunicorn, no CDN or nginx needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out log-in into a 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "shopflow.urls"
# A POST to a path without its slash must not be redirected (losing its body) nor,
# with DEBUG on, answered by Django's RuntimeError: it is a plain 404.
APPEND_SLASH = False
WSGI_APPLICATION = "shopflow.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def postgres_engine(database: dict) -> None:
    """Django's PostgreSQL backend, with a health check that asks the server only when
    the connection's socket says something happened (shopflow/postgresql/base.py)."""
    if database["ENGINE"] == "django.db.backends.postgresql":
        database["ENGINE"] = "shopflow.postgresql"


def postgres_binding(options: dict) -> None:
    """Parameters bound by the server; a statement run DB_PREPARE_THRESHOLD times prepared.

    PostgreSQL then skips parsing and planning it: ~60 % of its CPU for the short
    statements the outbox and the saga repeat (docs/BENCHMARKS.md). Behind a
    transaction-mode PgBouncer without max_prepared_statements, set
    DB_PREPARE_THRESHOLD empty (never prepare).
    """
    if env.bool("DB_SERVER_SIDE_BINDING", default=True):
        threshold = env.str("DB_PREPARE_THRESHOLD", default="5")
        options["server_side_binding"] = True
        options["prepare_threshold"] = int(threshold) if threshold else None


# --- Database -----------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "shopflow.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: wait for the write lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    postgres_engine(DATABASES["default"])
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Seconds to wait for a connection: a silent host must not hang requests (or /healthz).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
    )
    postgres_binding(DATABASES["default"]["OPTIONS"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out log-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed log-ins (admin and POST /api/auth/token/) per username and client address
# before both are locked out for LOGIN_COOLOFF_MINUTES; a success clears the count.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # no row per successful log-in; failures are still recorded
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "shopflow.api.throttling.login_lockout_response"
AXES_CLIENT_IP_CALLABLE = "shopflow.api.throttling.client_address"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# In development whitenoise finds files in the apps directly; production runs collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise

# --- Celery ---------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")


def broker_transport_options(broker_url: str) -> dict[str, object]:
    """kombu's transport options for `broker_url`."""
    if broker_url.startswith("filesystem"):
        return {
            "data_folder_in": str(BROKER_DIR / "queue"),
            "data_folder_out": str(BROKER_DIR / "queue"),
            "control_folder": str(BROKER_DIR / "control"),
            # Seconds between two looks at the queue folder: each saga step is one message,
            # so kombu's 1 s default made a demo order take seconds to confirm.
            "polling_interval": 0.1,
        }
    if broker_url.startswith("redis"):
        # No ack emulation: kombu would copy every message a worker takes into an
        # `unacked` hash and delete it at the ack (two MULTI/EXEC round trips and the
        # message serialized again: ~160 µs of worker CPU per message), only to send it
        # again an hour later (visibility_timeout) if the worker died. Nothing here
        # waits for that: a delivery's lease, the saga's watchdog and beat's schedule
        # bring back any message a dead worker took, within seconds (docs/RELIABILITY.md,
        # "Crash recovery"). A warm shutdown still puts taken messages back in their queue.
        return {"ack_emulation": False}
    return {}


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)


def redis_broker_transport(broker_url: str) -> str | None:
    """kombu's Redis transport builds a client per publish and ack; ours keeps one."""
    return "shopflow.broker:RedisTransport" if broker_url.startswith("redis://") else None


if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's transport lets a worker read a message half written, and die (kombu#1551).
    CELERY_BROKER_TRANSPORT = "shopflow.broker:FilesystemTransport"
    # kombu creates neither folder, and a worker or publisher without them fails.
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
elif CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = redis_broker_transport(CELERY_BROKER_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Messages each pool process may have reserved ahead. Few: a backlog stays in the broker,
# where the outbox's dispatcher sees it (OUTBOX_DISPATCH_LINGER_DEPTH) and gathers commits
# into fuller messages; prefetched ones hide it, and wait behind each other in the worker
# (at 100 events/s on a starved worker, bench/path_latency.py: p50 ~1 s with 16, ~0.3 s with 4,
# ~0.15 s with 1, but 1 costs ~0.5 ms more worker CPU per message than 4 or 16).
# The outbox lease, not the broker, recovers lost messages.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
# Tasks a worker process runs on one database connection before reconnecting. Unset,
# Celery reconnects around every task (celery#9824), a new PostgreSQL backend each
# time; shopflow.celery drops broken or CONN_MAX_AGE-expired connections between tasks.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_DEFAULT_QUEUE = "events"
# Workers consume these queues (`celery worker -Q outbox,events,saga,notifications`).
SHOPFLOW_QUEUES = ("outbox", "events", "saga", "notifications")
CELERY_TASK_ROUTES = {
    "outbox.drain_outbox": {"queue": "outbox"},
    "outbox.purge_outbox": {"queue": "outbox"},
    "outbox.deliver": {"queue": "events"},
    "sagas.advance": {"queue": "saga"},
    "sagas.watchdog": {"queue": "saga"},
    "shipping.sandbox_advance": {"queue": "events"},
    "orders.purge_idempotency_keys": {"queue": "outbox"},
    "payments.refund_late_charges": {"queue": "events"},
    "shipping.cancel_ended_orders_shipments": {"queue": "events"},
    "orders.call_off_late_bookings": {"queue": "events"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker's task hands the deliveries it leased at commit, and the saga moves it asked
# for, to itself when it consumes their queue: run right after the task, with no message
# (shopflow.local_work; ~2-3 ms of CPU saved per message). Off: every one is published.
WORKER_LOCAL_WORK = env.bool("WORKER_LOCAL_WORK", default=True)
# Seconds a task may spend on such work after its body; the rest is published then.
WORKER_LOCAL_WORK_SECONDS = env.float("WORKER_LOCAL_WORK_SECONDS", default=1.0)

# --- Redis (caches, the relay's wake-up coalescing) -------------------------------
_broker_is_redis = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
REDIS_URL = env.str("REDIS_URL", default=CELERY_BROKER_URL if _broker_is_redis else "")
# Seconds a cache command may take before it fails (the cache is only an optimisation:
# a hung cache host must not hang requests or drains).
CACHE_SOCKET_TIMEOUT = env.float("CACHE_SOCKET_TIMEOUT", default=2.0)
CACHES = {
    "default": (
        {"BACKEND": "shopflow.cache.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Outbox -----------------------------------------------------------------------
# Seconds between beat-driven drains; the on-commit wake-up makes most drains sooner.
OUTBOX_POLL_INTERVAL = env.float("OUTBOX_POLL_INTERVAL", default=1.0)
# Wake the relay when a transaction that wrote events commits (off = polling only).
OUTBOX_WAKE_ON_COMMIT = env.bool("OUTBOX_WAKE_ON_COMMIT", default=True)
# With the above on, deliveries a transaction records are leased to it and published to
# their handlers' queues when it commits (one broker hop); off, the commit wakes a drain.
OUTBOX_DISPATCH_ON_COMMIT = env.bool("OUTBOX_DISPATCH_ON_COMMIT", default=True)
# Seconds the dispatcher waits to gather more commits into one message while a handler
# queue still holds messages no worker has taken (busy workers: fewer, fuller messages).
OUTBOX_DISPATCH_LINGER_SECONDS = env.float("OUTBOX_DISPATCH_LINGER_SECONDS", default=0.02)
# ... only once a handler queue holds at least this many messages no worker has taken (as
# the process's last publish to it found it; Redis broker only). A message a worker is about
# to take is not a backlog: lingering then only adds latency.
OUTBOX_DISPATCH_LINGER_DEPTH = env.int("OUTBOX_DISPATCH_LINGER_DEPTH", default=4)
# Every worker consumes every handler queue (the Procfile's one worker on all of them): the
# deliveries a commit leases then travel in one message, not one per queue, to the first
# of their queues in OUTBOX_SHARED_QUEUE_ORDER. A worker that does not consume a delivery's
# queue hands it on to that queue (one more hop), so a split deployment stays correct.
OUTBOX_DISPATCH_SHARED_QUEUES = env.bool("OUTBOX_DISPATCH_SHARED_QUEUES", default=True)
OUTBOX_SHARED_QUEUE_ORDER = env.list(
    "OUTBOX_SHARED_QUEUE_ORDER", default=["saga", "notifications", "events"]
)
# Deliveries claimed per relay round trip.
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=500)
# Deliveries per Celery message; smaller spreads a batch over more worker processes.
OUTBOX_CHUNK_SIZE = env.int("OUTBOX_CHUNK_SIZE", default=50)
# Seconds a claimed delivery stays leased before another drain may claim it again.
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=30.0)
# Attempts before a delivery is dead-lettered (a handler may declare its own).
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=8)
# Attempts (with backoff up to OUTBOX_BACKOFF_MAX, about an hour in all) for a delivery
# this process cannot read: a handler, event type or payload version from newer code,
# during a rolling deploy. Dead letters only after that, so a deploy's skew clears itself.
OUTBOX_VERSION_SKEW_MAX_ATTEMPTS = env.int("OUTBOX_VERSION_SKEW_MAX_ATTEMPTS", default=20)
# Longest a handler that runs outside a transaction (an e-mail) keeps its delivery's lease
# by renewing it while it runs (seconds); a send that hangs longer loses it.
OUTBOX_HANDLER_MAX_SECONDS = env.float("OUTBOX_HANDLER_MAX_SECONDS", default=300.0)
# Exponential backoff: base * 2**(attempt-1) seconds, capped, with full jitter.
OUTBOX_BACKOFF_BASE = env.float("OUTBOX_BACKOFF_BASE", default=1.0)
OUTBOX_BACKOFF_MAX = env.float("OUTBOX_BACKOFF_MAX", default=300.0)
# Days processed events and inbox records are kept before purge.
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=7)
# Max seconds one drain task keeps claiming before it yields the worker.
OUTBOX_DRAIN_MAX_SECONDS = env.float("OUTBOX_DRAIN_MAX_SECONDS", default=5.0)
# Seconds the oldest pending delivery may wait before /healthz reports the outbox
# "degraded" (still 200: web is fine, the workers lag); 0 turns the check off.
OUTBOX_HEALTH_MAX_LAG_SECONDS = env.float("OUTBOX_HEALTH_MAX_LAG_SECONDS", default=600.0)

# --- Sagas --------------------------------------------------------------------------
# Seconds a running step is leased; after that the watchdog assumes its worker died.
SAGA_STEP_LEASE_SECONDS = env.float("SAGA_STEP_LEASE_SECONDS", default=30.0)
# Longest a step's action or compensation keeps its lease by renewing it (every third of
# a lease, while it runs): a provider call that hangs longer loses its step (seconds).
SAGA_STEP_MAX_SECONDS = env.float("SAGA_STEP_MAX_SECONDS", default=300.0)
# Moves one `sagas.advance` task makes in a row while the next is due at once (the
# happy path is three); then, or at a backoff, the saga goes on in a new task, which a
# worker consuming the saga queue runs itself right after this one (WORKER_LOCAL_WORK).
# 1 makes every move its own task, at the cost of a transaction each.
SAGA_MOVES_PER_TASK = env.int("SAGA_MOVES_PER_TASK", default=8)
# Longest a local step made in its claiming transaction (under the saga's lock) waits
# for a lock held elsewhere (seconds, PostgreSQL): past it, the move is claimed and made
# apart, so a cancellation or a twin advance never queues behind a slow reservation.
SAGA_LOCAL_MOVE_LOCK_TIMEOUT = env.float("SAGA_LOCAL_MOVE_LOCK_TIMEOUT", default=0.5)
# Attempts of a step's action before a transient error counts as permanent.
# With the backoff below a saga gives up on a flaky provider within ~15 s (< 60 s).
SAGA_MAX_ATTEMPTS = env.int("SAGA_MAX_ATTEMPTS", default=5)
# Attempts of a compensation before the saga is left compensation_failed for an operator.
SAGA_COMPENSATION_MAX_ATTEMPTS = env.int("SAGA_COMPENSATION_MAX_ATTEMPTS", default=8)
# Backoff between attempts: base * 2**(attempt-1) seconds, capped, with jitter.
SAGA_BACKOFF_BASE = env.float("SAGA_BACKOFF_BASE", default=0.5)
SAGA_BACKOFF_MAX = env.float("SAGA_BACKOFF_MAX", default=8.0)
# Seconds after which the watchdog re-asks for a move nobody made.
SAGA_WAKE_GRACE_SECONDS = env.float("SAGA_WAKE_GRACE_SECONDS", default=5.0)
# Longest wait sent to the broker as a countdown; longer ones wait for the watchdog.
SAGA_MAX_COUNTDOWN = env.float("SAGA_MAX_COUNTDOWN", default=10.0)
# Longest wait before the watchdog asks again for a saga it already asked for: it waits
# as long as the saga has already waited, so a backlog is not flooded with repeats.
SAGA_WATCHDOG_MAX_WAIT_SECONDS = env.float("SAGA_WATCHDOG_MAX_WAIT_SECONDS", default=60.0)
# Seconds between watchdog runs, and sagas it wakes per run.
SAGA_WATCHDOG_INTERVAL = env.float("SAGA_WATCHDOG_INTERVAL", default=1.0)
SAGA_WATCHDOG_BATCH = env.int("SAGA_WATCHDOG_BATCH", default=500)

# --- Audit (`manage.py audit`) -------------------------------------------------------
# Seconds a delivery may stay pending before the audit reports it as stuck.
AUDIT_MAX_PENDING_SECONDS = env.float("AUDIT_MAX_PENDING_SECONDS", default=300.0)
# Seconds past a saga step's lease (or the saga's wake-up) before the audit calls it stuck.
AUDIT_SAGA_GRACE_SECONDS = env.float("AUDIT_SAGA_GRACE_SECONDS", default=60.0)

# --- Providers (import paths) and their sandboxes ----------------------------------------
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="payments.gateways.sandbox.SandboxGateway")
SHIPPING_CARRIER = env.str("SHIPPING_CARRIER", default="shipping.carriers.sandbox.SandboxCarrier")
# Seconds each sandbox call takes, to open windows for tests and demos.
PAYMENT_SANDBOX_DELAY_SECONDS = env.float("PAYMENT_SANDBOX_DELAY_SECONDS", default=0.0)
SHIPPING_SANDBOX_DELAY_SECONDS = env.float("SHIPPING_SANDBOX_DELAY_SECONDS", default=0.0)
# Seconds after a compensation during which beat asks the providers again, by the step's
# key, for a charge or a booking that a stale attempt made after the compensation had
# looked (a frozen worker's call may still land then); what it finds goes back.
LATE_PROVIDER_EFFECT_WINDOW_SECONDS = env.float(
    "LATE_PROVIDER_EFFECT_WINDOW_SECONDS", default=3600.0
)
# Demo mode: the sandbox carrier ships a booked parcel, then delivers it, after these
# many seconds, through the same service as the webhook. Off by default.
SHIPPING_SANDBOX_AUTO_ADVANCE = env.bool("SHIPPING_SANDBOX_AUTO_ADVANCE", default=False)
SHIPPING_SANDBOX_SHIP_AFTER = env.float("SHIPPING_SANDBOX_SHIP_AFTER", default=30.0)
SHIPPING_SANDBOX_DELIVER_AFTER = env.float("SHIPPING_SANDBOX_DELIVER_AFTER", default=60.0)

CELERY_BEAT_SCHEDULE = {
    "drain-outbox": {"task": "outbox.drain_outbox", "schedule": OUTBOX_POLL_INTERVAL},
    "purge-outbox": {"task": "outbox.purge_outbox", "schedule": 3600.0},
    "saga-watchdog": {"task": "sagas.watchdog", "schedule": SAGA_WATCHDOG_INTERVAL},
    "purge-idempotency-keys": {"task": "orders.purge_idempotency_keys", "schedule": 3600.0},
    # A charge that landed after compensation closed its payment and was not given back.
    "refund-late-charges": {"task": "payments.refund_late_charges", "schedule": 60.0},
    # A booking that landed after compensation, whose own call-off failed.
    "cancel-ended-orders-shipments": {
        "task": "shipping.cancel_ended_orders_shipments",
        "schedule": 60.0,
    },
    # A booking that landed after compensation, that nobody recorded (its worker died).
    "call-off-late-bookings": {"task": "orders.call_off_late_bookings", "schedule": 60.0},
}
if SHIPPING_SANDBOX_AUTO_ADVANCE:
    CELERY_BEAT_SCHEDULE["sandbox-carrier"] = {"task": "shipping.sandbox_advance", "schedule": 5.0}

# --- Operator dashboard (/admin/dashboard/) ---------------------------------------
# Seconds between the open page's fetches of fresh counts (a handful of grouped queries).
ADMIN_DASHBOARD_REFRESH_SECONDS = env.float("ADMIN_DASHBOARD_REFRESH_SECONDS", default=5.0)

# --- Metrics ----------------------------------------------------------------------
# Web, worker and beat are separate processes: in prometheus_client's multiprocess mode
# each writes its samples to files (named by pid) in this directory and /metrics adds
# them up. One directory per host. prometheus_client reads the variable when it is
# first imported, so settings put it in the environment, which child processes inherit.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR

# --- DRF ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "shopflow.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_PARSER_CLASSES": [
        "shopflow.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "shopflow.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    # "<count>/<s|m|h|d>"; per-second windows keep DRF's per-client history short.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON_RATE", default="100/s"),
        "user": env.str("THROTTLE_USER_RATE", default="200/s"),
        # register and token, per client address (shopflow.api.throttling.AuthRateThrottle)
        "auth": env.str("THROTTLE_AUTH_RATE", default="30/s"),
    },
    # Proxies in front of the web process; 0 keys clients by REMOTE_ADDR (no X-Forwarded-For).
    "NUM_PROXIES": env.int("THROTTLE_NUM_PROXIES", default=0),
}
# Seconds an order placement may hold its Idempotency-Key before a retry may take it over.
IDEMPOTENCY_KEY_LOCK_SECONDS = env.float("IDEMPOTENCY_KEY_LOCK_SECONDS", default=60.0)
# Hours a completed Idempotency-Key keeps replaying its response (the contract says >= 24).
IDEMPOTENCY_KEY_TTL_HOURS = env.float("IDEMPOTENCY_KEY_TTL_HOURS", default=24.0)
SPECTACULAR_SETTINGS = {"TITLE": "ShopFlow API", "VERSION": "1.0.0"}

# --- Shop ---------------------------------------------------------------------------
SHOP_CURRENCY = env.str("SHOP_CURRENCY", default="USD")
# `seed_demo` adds the demo users (published passwords) only where this is on.
SEED_DEMO_USERS = env.bool("SEED_DEMO_USERS", default=DEBUG)
DEV_CARRIER_WEBHOOK_SECRET = "dev-carrier-webhook-secret"
# No production default: with DEBUG=false and no secret, the webhook refuses every
# request (401) and `check --deploy` says so (shipping.checks).
CARRIER_WEBHOOK_SECRET = env.str(
    "CARRIER_WEBHOOK_SECRET", default=DEV_CARRIER_WEBHOOK_SECRET if DEBUG else ""
)
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# Seconds an SMTP call may take: a stuck mail server must not hold a worker (and the
# delivery's row lock) forever; the outbox retries the send instead.
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="shop@shopflow.local")

# --- Logging: one structured line per delivery outcome -------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"shopflow": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}
