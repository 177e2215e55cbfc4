"""Django settings, read from the environment in one place.

Development defaults (SQLite under var/, embedded Redis, debug on) apply only while DJANGO_DEBUG is on;
with debug off every secret must be given and the secure-cookie / HSTS settings are on by default.
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from jobs import queues as job_queues  # pure constants: no Django app is loaded here

from .env import env_bool, env_float, env_int, env_list, env_str, redis_db_of, redis_url_with_db

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
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Persistent connections under ASGI pile up (one per thread); a psycopg pool is opt-in instead.
    if env_bool("DATABASE_POOL", False):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN", 2),
            "max_size": env_int("DATABASE_POOL_MAX", 20),
            "timeout": 10,
        }
    # ChannelsLiveServerTestCase and pytest-django need the test database named explicitly.
    DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", f"test_{DATABASES['default']['NAME']}")}
else:
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", str(VAR_DIR / "test_db.sqlite3"))}

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

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Redis: broker, channel layer and our own keys each on their own database number ----------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
_REDIS_BASE_DB = redis_db_of(REDIS_URL)
REDIS_BROKER_URL = redis_url_with_db(REDIS_URL, _REDIS_BASE_DB)
REDIS_CHANNELS_URL = redis_url_with_db(REDIS_URL, _REDIS_BASE_DB + 1)
REDIS_APP_URL = redis_url_with_db(REDIS_URL, _REDIS_BASE_DB + 2)
# Two deployments (or two test runs) sharing one Redis stay apart by key prefix.
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "vg")

# --- realtime: the channel layer (figures: bench/ws_fanout.py, docs/jobsocket.md) ---------------------
# RedisPubSubChannelLayer is the default: each daphne process subscribes once per group and fans out in
# memory, where RedisChannelLayer writes one Redis entry per watcher per message (bench/ws_fanout.py
# compares them; figures in docs/jobsocket.md). Both are at-most-once; clients recover via the
# snapshot and `resume`, and consumers refill seq gaps from JobEvent.
# A slow client cannot make others lose messages with either: pub/sub queues per consumer in the daphne
# process (the slow socket's own buffer grows), and the core layer's capacity is per consumer channel.
CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer that tells consumers to resync after a lost Redis connection (patches/).
        "BACKEND": env_str("CHANNEL_LAYER_BACKEND", "patches.channels_redis_pubsub.ResyncingPubSubChannelLayer"),
        "CONFIG": {
            "hosts": [REDIS_CHANNELS_URL],
            "prefix": f"{REDIS_KEY_PREFIX}:asgi",
            # The rest applies to channels_redis.core.RedisChannelLayer only (pub/sub ignores it).
            # Messages buffered per consumer channel: a job pushes at most JOBS_PROGRESS_EVENTS_PER_S
            # (10) a second, and a project stream a few jobs' worth; 1,000 is well over a minute of a
            # stalled client. Past it that one client misses pushes and its consumer refills the gap
            # from JobEvent on the next message.
            "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000),
            # A message nobody read within 60 s is stale (the client reconnects and resumes by seq).
            "expiry": env_int("CHANNEL_LAYER_EXPIRY", 60),
            # Group membership of a consumer whose process died without leaving: one day.
            "group_expiry": env_int("CHANNEL_LAYER_GROUP_EXPIRY", 86400),
        },
    }
}

# --- Celery (read by config/celery.py with the CELERY_ namespace) ------------------------------------
CELERY_BROKER_URL = REDIS_BROKER_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than the hard time limit so a running task is never handed to a second worker.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600 + 600),
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:",
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-results' table; ops/result_backend.py retries a store whose connection PostgreSQL ended (at most
# CELERY_RESULT_BACKEND_MAX_RETRIES times, backing off from 10 ms, about 5 s in all) instead of the worker's
# main process stopping on it.
CELERY_RESULT_BACKEND = "ops.result_backend:DatabaseBackend"
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = env_int("CELERY_RESULT_BACKEND_MAX_RETRIES", 8)
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 3600)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 10)
# Pool children keep their PostgreSQL connection across tasks: celery's Django fix-up otherwise closes it
# before and after every task, so every job task connected anew. ops/celery_signals.py health-checks the kept
# connection at each task start and replaces it after an error or WORKER_DB_CONN_MAX_AGE seconds; the
# fix-up still closes it every CELERY_DB_REUSE_MAX tasks. Web processes keep CONN_MAX_AGE = 0 (see above).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 100)
WORKER_DB_CONN_MAX_AGE = env_int("WORKER_DB_CONN_MAX_AGE", 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3540)
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE
# --- Celery task system: queues, routes, publishing ---
# One queue per kind of work so each can get its own workers; `maintenance` carries our periodic tasks.
JOB_QUEUES = job_queues.ALL
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in JOB_QUEUES]
CELERY_TASK_ROUTES = (
    {
        "jobs.tasks.reap_jobs_task": {"queue": job_queues.MAINTENANCE},
        "jobs.tasks.cleanup_results_task": {"queue": job_queues.MAINTENANCE},
        "jobs.tasks.terminate_cancelled_job_task": {"queue": job_queues.MAINTENANCE},
        "api.tasks.sweep_idempotency_keys_task": {"queue": job_queues.MAINTENANCE},
        # A slow receiver only ever holds a webhooks worker; the periodic webhook tasks are maintenance.
        "webhooks.tasks.deliver_job_webhooks_task": {"queue": job_queues.WEBHOOKS},
        "webhooks.tasks.sweep_deliveries_task": {"queue": job_queues.MAINTENANCE},
        "webhooks.tasks.cleanup_deliveries_task": {"queue": job_queues.MAINTENANCE},
        "jobs.tasks.sweep_media_task": {"queue": job_queues.MAINTENANCE},
    },
    # Each stage task to its queue, derived from the job plans (jobs/plans) when Celery first routes.
    "jobs.plans.routing.route_task",
)
# Dispatch happens inside an API request (on commit) and publishes with retry=False: with a short connect
# timeout it fails fast when the broker is down, and the reaper dispatches the still-queued job later.
# Workers keep Celery's publish retries for the next stage of a chain.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_BROKER_TRANSPORT_OPTIONS.setdefault("socket_connect_timeout", 2)
# A broker that accepts connections but never answers (stuck, swapping) hung a request that dispatches on
# commit or revokes; now each of those calls gives up after this many seconds (the job stays queued and
# the reaper dispatches it later). Longer than kombu's 1 s BRPOP wait, so idle workers are unaffected.
CELERY_BROKER_TRANSPORT_OPTIONS.setdefault("socket_timeout", env_float("CELERY_BROKER_SOCKET_TIMEOUT", 5.0))
CELERY_TASK_SEND_SENT_EVENT = False

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
# Throttle counters live in Redis so every server process shares them.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_APP_URL,
        "KEY_PREFIX": f"{REDIS_KEY_PREFIX}:cache",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
HEALTHZ = {
    "PING_TIMEOUT_S": env_float("HEALTHZ_PING_TIMEOUT_S", 0.5),
    "WORKERS_CACHE_S": env_float("HEALTHZ_WORKERS_CACHE_S", 10.0),
    "MIN_WORKERS": env_int("HEALTHZ_MIN_WORKERS", 0),
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
