"""Django settings, read from the environment in one place.

Development defaults (SQLite under var/, embedded Redis, debug on) apply only while DJANGO_DEBUG is on;
with debug off every secret must be given and the secure-cookie / HSTS settings are on by default.
"""
from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from . import artifact_storage, database, redis_roles, redis_settings
from .celery_settings import celery_settings
from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "dev-insecure-7c1f0b6e4a9d4f2b8e3a5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"] + (["[::1]", "testserver"] if DEBUG else []))
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "constance",
    "projects",
    "jobs",
    "realtime",
    "api",
    "ops",
    "webhooks",
    "accounts",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused by the lockout backend into accounts.lockout's 429; last, as axes asks.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
# A transaction-mode PgBouncer in front (docs/OPERATIONS.md): consecutive transactions of one connection may
# run on different server connections, so nothing may live in the session between them. Django's
# server-side cursors (QuerySet.iterator(), DECLARE ... WITH HOLD) do; they are turned off. Prepared
# statements are already off (Django's psycopg 3 default, prepare_threshold None), SET TIME ZONE is one of
# the parameters PgBouncer tracks per client, and the app itself keeps no session state (no session-level
# advisory locks: admission's is transaction-scoped; no LISTEN, temporary tables or SET).
DATABASE_PGBOUNCER = env_bool("DATABASE_PGBOUNCER", False)
# A read replica for what tolerates replication lag (config/db_routers.py): the API's lists, the admin's
# change lists and /metrics; the snapshot, resume and gap-fill reads stay on the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
DATABASES = database.databases(DATABASE_URL, replica_url=DATABASE_REPLICA_URL, pgbouncer=DATABASE_PGBOUNCER,
                               var_dir=VAR_DIR)
DATABASE_ROUTERS = ["config.db_routers.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"

# Artifacts (CONTRACT.md "Settings for more than one machine"): files under MEDIA_ROOT, or an S3-compatible
# bucket so that no two processes share a disk (then MEDIA_ROOT is only each worker's scratch space).
ARTIFACT_STORAGE = artifact_storage.backend_name()
ARTIFACT_URL_TTL_S = env_int("ARTIFACT_URL_TTL_S", 300, minimum=1)
ARTIFACT_RETENTION_DAYS = env_int("ARTIFACT_RETENTION_DAYS", 30, minimum=0)
ARTIFACT_RETENTION_BATCH = env_int("ARTIFACT_RETENTION_BATCH", 200, minimum=1)
STORAGES["artifacts"] = artifact_storage.storage_config()
if ARTIFACT_STORAGE == "s3":
    # The names django-storages and operators know, also for code reading them from settings.
    globals().update(artifact_storage.aws_settings())

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Redis: the broker, the channel layer and the locks/cache (config/redis_roles.py) ----------------------
# One REDIS_URL with a database number per role by default; CELERY_BROKER_URL, CHANNEL_LAYER_REDIS_URL and
# LOCKS_REDIS_URL move a role to its own server; REDIS_SENTINELS + REDIS_SENTINEL_MASTER put the roles on
# the master the sentinels name, followed across a failover (docs/OPERATIONS.md, "Redis high availability").
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_ROLES = redis_roles.roles_from_env()
# The direct URLs (tests, bench and devtools read them); for a sentinel role only a name for logs.
REDIS_BROKER_URL = REDIS_ROLES.broker.url if REDIS_ROLES.broker else ""
REDIS_CHANNELS_URL = REDIS_ROLES.channels.url
REDIS_APP_URL = REDIS_ROLES.locks.url
# Two deployments (or two test runs) sharing one Redis stay apart by key prefix.
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "vg")

# --- What lives on Redis besides the broker (config/redis_settings.py) -------------------------------
# The channel layer (figures: bench/ws_fanout.py, docs/jobsocket.md) and the cache (throttle counters).
CHANNEL_LAYERS = redis_settings.channel_layers(REDIS_ROLES.channels, key_prefix=REDIS_KEY_PREFIX)
CACHES = redis_settings.caches(REDIS_ROLES.locks, key_prefix=REDIS_KEY_PREFIX)

# --- Celery (read by config/celery.py with the CELERY_ namespace; config/celery_settings.py) ---------------
# The broker (Redis, through sentinels, or RabbitMQ), results, task execution, queues and routes.
globals().update(celery_settings(broker_role=REDIS_ROLES.broker, key_prefix=REDIS_KEY_PREFIX, time_zone=TIME_ZONE))

# --- The job system's own settings (typed accessors in jobs/conf.py) ---------------------------------
JOBS = {
    "HEARTBEAT_INTERVAL_S": env_float("JOBS_HEARTBEAT_INTERVAL_S", 10.0),
    "STALE_AFTER_S": env_float("JOBS_STALE_AFTER_S", 60.0),
    "MAX_ATTEMPTS": env_int("JOBS_MAX_ATTEMPTS", 3),
    "QUEUED_REDISPATCH_AFTER_S": env_float("JOBS_QUEUED_REDISPATCH_AFTER_S", 120.0),
    "REAPER_INTERVAL_S": env_float("JOBS_REAPER_INTERVAL_S", 30.0),
    "CANCEL_GRACE_S": env_float("JOBS_CANCEL_GRACE_S", 10.0),
    "PROGRESS_EVENTS_PER_S": env_float("JOBS_PROGRESS_EVENTS_PER_S", 10.0),
    "RETRY_MAX": env_int("JOBS_RETRY_MAX", 3),
    "RETRY_BACKOFF_S": env_float("JOBS_RETRY_BACKOFF_S", 2.0),
    "RETRY_BACKOFF_MAX_S": env_float("JOBS_RETRY_BACKOFF_MAX_S", 300.0),
    # Per job type, JOBS_TIME_LIMIT_<JOB_TYPE>_S (e.g. JOBS_TIME_LIMIT_FULL_VIDEO_S); unset: its plan's limit.
    "TIME_LIMIT_S": {
        name[len("JOBS_TIME_LIMIT_"):-len("_S")].lower(): env_int(name, 3600)
        for name in sorted(os.environ) if name.startswith("JOBS_TIME_LIMIT_") and name.endswith("_S")
    },
    "SOFT_TIME_LIMIT_MARGIN_S": env_int("JOBS_SOFT_TIME_LIMIT_MARGIN_S", 60),
    # CONTRACT.md: the wall-clock limit of a whole job, all stages together.
    "JOB_TIME_LIMIT_S": env_float("JOB_TIME_LIMIT_S", 3600.0, positive=True),
    # A killed stage's .partial files and work folders untouched this long are removed by maintenance.
    "MEDIA_SWEEP_GRACE_S": env_float("JOBS_MEDIA_SWEEP_GRACE_S", 900.0),
    # CONTRACT.md: how many of one user's jobs run at once (0 = no limit); staff override it per user.
    "MAX_RUNNING_PER_USER": env_int("JOBS_MAX_RUNNING_PER_USER", 2),
    # Waiting jobs one user may have; one more is refused with 429 naming JOBS_MAX_QUEUED_PER_USER.
    "MAX_QUEUED_PER_USER": env_int("JOBS_MAX_QUEUED_PER_USER", 500),
    "DEADLINES_INTERVAL_S": env_float("JOBS_DEADLINES_INTERVAL_S", 5.0),
    # Admitted jobs per pool process that may wait in the broker besides the one it runs (0: none).
    "ADMISSION_HEADROOM": env_int("JOBS_ADMISSION_HEADROOM", 1),
}

# --- Webhooks (typed accessors in webhooks/conf.py; docs/OPERATIONS.md) ---------------------------------
WEBHOOKS = {
    "ALLOW_PRIVATE": env_bool("WEBHOOKS_ALLOW_PRIVATE", False),
    "TIMEOUT_S": env_float("WEBHOOKS_TIMEOUT_S", 10.0),
    "MAX_ATTEMPTS": env_int("WEBHOOKS_MAX_ATTEMPTS", 9),
    "RETRY_BASE_S": env_float("WEBHOOKS_RETRY_BASE_S", 10.0),
    "RETRY_FACTOR": env_float("WEBHOOKS_RETRY_FACTOR", 4.0),
    "RETRY_MAX_S": env_float("WEBHOOKS_RETRY_MAX_S", 6 * 3600.0),
    "PROGRESS_MIN_INTERVAL_S": env_float("WEBHOOKS_PROGRESS_MIN_INTERVAL_S", 1.0),
    "SECRET_OVERLAP_S": env_float("WEBHOOKS_SECRET_OVERLAP_S", 24 * 3600.0),
    "RETENTION_DAYS": env_int("WEBHOOKS_RETENTION_DAYS", 30),
    "SWEEP_INTERVAL_S": env_float("WEBHOOKS_SWEEP_INTERVAL_S", 30.0),
}

# What one websocket may ask of a web process (realtime/limits.py, patches/daphne_websocket.py). The
# keep-alive is daphne's --ping-interval / --ping-timeout (20 s / 30 s), sent whatever the peer sends.
WEBSOCKETS = {
    "SEND_BUFFER_BYTES": env_int("WS_SEND_BUFFER_BYTES", 1024 * 1024),
    "SEND_STALL_S": env_float("WS_SEND_STALL_S", 10.0),
    "MESSAGES_PER_S": env_float("WS_MESSAGES_PER_S", 20.0),
    "MESSAGES_BURST": env_float("WS_MESSAGES_BURST", 100.0),
    "STRIKES": env_int("WS_STRIKES", 20),
    "INBOX_MAX": env_int("WS_INBOX_MAX", 100),
    "SOCKETS_PER_USER": env_int("WS_SOCKETS_PER_USER", 20),
    "QUIET_CHECK_S": env_float("WS_QUIET_CHECK_S", 15.0),
    "CLOSE_HANDSHAKE_S": env_float("WS_CLOSE_HANDSHAKE_S", 5.0, positive=True)  # 0 would mean never,
}

# Job size limits (jobs/limits.py): these are the defaults; staff change them live in the admin (constance).
# 20 min of narration, 2 min per scene, and at most as many pixels as 720p at 24 fps for those 20 minutes.
# Read from the database, not through the Redis cache: a Redis outage must not stop job creation (the job is
# recorded queued and dispatched later), and a create reads these four small rows once.
CONSTANCE_BACKEND = "constance.backends.database.DatabaseBackend"
CONSTANCE_CONFIG = {
    "JOB_MAX_DURATION_S": (env_int("JOBS_MAX_DURATION_S", 1200), "Seconds of narration one job may have", int),
    "JOB_MAX_SCENE_S": (env_int("JOBS_MAX_SCENE_S", 120), "Seconds of narration one scene may have", int),
    "JOB_MAX_VIDEO_PIXELS": (env_int("JOBS_MAX_VIDEO_PIXELS", 1280 * 720 * 24 * 1200),
                             "width x height x fps x seconds one video may encode", int),
    "JOB_MAX_SCRATCH_BYTES": (env_int("JOBS_MAX_SCRATCH_BYTES", 2 * 1024**3),
                              "Bytes one job may write under MEDIA_ROOT while it runs", int),
}

# --- Security ----------------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Off unless asked for: a preload-list entry outlives any later change of mind (removal takes months), and
# it binds every subdomain to HTTPS.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]  # "preload is off": on purpose
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_MAX_BODY_BYTES", 1024 * 1024)
# The web process refuses a larger request body with 413 before buffering it (patches/daphne_body_limit.py);
# Django's and DRF's limit above then answers bodies between the two. A route that needs more gets its own
# entry in HTTP_MAX_BODY_BYTES_BY_PATH (path prefix -> bytes); none does today.
HTTP_MAX_BODY_BYTES = env_int("HTTP_MAX_BODY_BYTES", 4 * 1024 * 1024)
HTTP_MAX_BODY_BYTES_BY_PATH: dict[str, int] = {}

# --- E-mail: only password reset sends any; its pages exist only when EMAIL_HOST is set (accounts/urls.py)
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "webmaster@localhost")

# --- Logins: failures per username and per address lock logins out for a while (django-axes) ---------
# The lockout backend runs first, so a locked-out guess is refused before any password is hashed (a PBKDF2
# check costs ~0.3 s of CPU: unthrottled guesses were also an anonymous denial of service).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = env_float("LOGIN_LOCKOUT_S", 900.0) / 3600  # hours, as axes reads a number
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks out
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # no row per successful login (API scripts log in often)
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# The address is REMOTE_ADDR only: daphne replaces it from X-Forwarded-For when started with
# --proxy-headers behind a trusted proxy; reading the header here would let any client pick its address.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_ENABLED = env_bool("LOGIN_LOCKOUT", True)

# --- REST API (DRF, drf-spectacular; glue in the api app) -------------------------------------------
REST_FRAMEWORK = {
    # Token first: DRF answers an anonymous request with the first class's WWW-Authenticate, so 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.JobsPagination",
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# Per-user job creations, DRF rate syntax ("60/min", "1000/day"); empty turns the limit off.
API_JOB_CREATE_RATE = env_str("JOBS_CREATE_RATE", "60/min")
# --- API clients' conveniences (issue 17): Idempotency-Key and Server-Sent Events ---
# How long an Idempotency-Key is remembered per user (CONTRACT.md: 24 h).
IDEMPOTENCY_KEY_TTL_S = env_int("IDEMPOTENCY_KEY_TTL_S", 86400)
# A claim whose request never finished (its process died) is taken over by a retry after this long.
IDEMPOTENCY_CLAIM_TIMEOUT_S = env_int("IDEMPOTENCY_CLAIM_TIMEOUT_S", 60)
# Seconds without events after which an SSE stream sends a comment line (CONTRACT.md: at most 15).
SSE_KEEPALIVE_S = env_float("SSE_KEEPALIVE_S", 15.0)
# Open SSE streams of one user in one web process; past it a new stream is a 429 (0: no limit).
SSE_STREAMS_PER_USER = env_int("SSE_STREAMS_PER_USER", 20)
# How often an open SSE stream re-checks that its token / session and user are still valid.
SSE_REAUTH_S = env_float("SSE_REAUTH_S", 60.0)
HEALTHZ = {
    "PING_TIMEOUT_S": env_float("HEALTHZ_PING_TIMEOUT_S", 0.5),
    "WORKERS_CACHE_S": env_float("HEALTHZ_WORKERS_CACHE_S", 10.0),
    "MIN_WORKERS": env_int("HEALTHZ_MIN_WORKERS", 0),
    # Each RabbitMQ node of the broker URL gets this long to accept a connection (TCP and AMQP handshake).
    "BROKER_TIMEOUT_S": env_float("HEALTHZ_BROKER_TIMEOUT_S", 1.0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Video generation API",
    "DESCRIPTION": "Projects (scripts) and the long-running jobs that turn them into images, narration and video.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "PREPROCESSING_HOOKS": ["api.schema.drop_duplicate_slash_forms"],
    "WEBHOOKS": ["webhooks.schema.job_event_webhook"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "webhooks.schema.webhooks_as_extension"],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.states.STATUS_CHOICES",
        "JobTypeEnum": "jobs.plans.JOB_TYPE_CHOICES",
        "CancelledStatusEnum": "jobs.api.serializers.CANCELLED_CHOICES",
        "HealthStateEnum": "ops.health.HEALTH_STATES",
    },
}

# --- Logging: one line per event; JSON when LOG_FORMAT=json -------------------------------------------
LOG_FORMAT = env_str("LOG_FORMAT", "text")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "ops.logging.JsonFormatter"},
    },
    # job_context adds job_id / task_id to every line logged while a job or task is being handled.
    "filters": {"job_context": {"()": "ops.logging.JobContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["job_context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- Metrics (/metrics, ops/metrics.py) ---------------------------------------------------------------
# A scraper without a staff session sends `Authorization: Bearer $METRICS_TOKEN` (unset: staff only).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# Web, workers and their pool children each write their metrics here and /metrics sums the files, so every
# process of one machine must share it. Empty it only when the deployment starts (`manage.py metrics reset`).
# "off" keeps metrics per process (then only what the serving web process recorded is visible).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
if PROMETHEUS_MULTIPROC_DIR.lower() in ("off", "0", "false", "none"):
    PROMETHEUS_MULTIPROC_DIR = ""
