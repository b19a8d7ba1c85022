"""All settings, read from the environment. Every variable is listed in the README.

Defaults work with nothing configured: SQLite under var/, Redis on 127.0.0.1:6379, the offline
agent provider, Chromium from Debian's package.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from agents.config import default_chromium_path

# Django's generic classes take type arguments at run time too (`admin.ModelAdmin[Price]`).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ENIGMA_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or a random key kept in var/ so that restarts keep sessions and keys."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "accounts",
    "billing",
    "sessions_app",
    "integrations",
    "dashboard",
    "environments",
    "policies",
    "webhooks",
    "triggers",
    "video",
    "recordings",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "enigma_site.csp.ContentSecurityPolicyMiddleware",
    "enigma_site.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "enigma_site.middleware.ApiEdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "enigma_site.urls"
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
WSGI_APPLICATION = None
ASGI_APPLICATION = "enigma_site.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'enigma.sqlite3'}",
        # Kept open between requests (a new SQLite connection cost a third of a GET's CPU);
        # checked before reuse, so a restarted PostgreSQL costs one reconnect.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL and a busy timeout let the web process and the workers write the same file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so the worker processes that tests start can open the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# ModelBackend that refuses while an email or client address has too many failed logins.
AUTHENTICATION_BACKENDS = ["accounts.login_throttle.ThrottledModelBackend"]
ENIGMA_LOGIN_MAX_FAILURES = env_int("ENIGMA_LOGIN_MAX_FAILURES", 5)
ENIGMA_LOGIN_MAX_FAILURES_PER_IP = env_int("ENIGMA_LOGIN_MAX_FAILURES_PER_IP", 50)
ENIGMA_LOGIN_WINDOW_S = env_int("ENIGMA_LOGIN_WINDOW_S", 900)

# Behind https (ENIGMA_HTTPS, on by default when ENIGMA_PUBLIC_URL is https): cookies are Secure,
# HSTS is sent, and http is redirected. DJANGO_SECURE_PROXY_SSL_HEADER=on trusts a proxy's
# X-Forwarded-Proto (only set it when the proxy overwrites that header).
ENIGMA_HTTPS = env_bool("ENIGMA_HTTPS", os.environ.get("ENIGMA_PUBLIC_URL", "").startswith("https://"))
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = ENIGMA_HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("ENIGMA_HSTS_SECONDS", 31_536_000 if ENIGMA_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("ENIGMA_HSTS_INCLUDE_SUBDOMAINS")
SECURE_SSL_REDIRECT = ENIGMA_HTTPS and env_bool("ENIGMA_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^start/health$", r"^metrics$"]
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy of the dashboard and viewer pages (enigma_site.middleware); empty: none.
ENIGMA_CSP = os.environ.get("ENIGMA_CSP", "on")
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve static files from the app folders too, so nothing depends on having run collectstatic.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(os.environ.get("ENIGMA_MEDIA_ROOT", VAR_DIR / "media"))

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Enigma <noreply@localhost>")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Per process and client; redis-py's own default (100) is too few for a web process with
# hundreds of concurrent requests.
ENIGMA_REDIS_MAX_CONNECTIONS = env_int("ENIGMA_REDIS_MAX_CONNECTIONS", 2000)
# Long-lived threads a web process runs requests' sync code on (enigma_site/asgi.py); each holds
# at most one database connection.
ENIGMA_WEB_THREADS = env_int("ENIGMA_WEB_THREADS", 16)

# Read timeout of every Redis connection (enigma_site.redis and the channel layer). redis-py 8
# made it 5 s by default, exactly the 5 s BZPOPMIN of channels_redis' receive(): an idle socket's
# receive raised TimeoutError and the socket was dropped (channels_redis#422). It must outlast the
# longest blocking read (BZPOPMIN 5 s, the command reader's XREAD 2 s) and still notice a dead
# Redis; keepalive finds a vanished peer on an idle connection.
REDIS_SOCKET_TIMEOUT_S = 15.0
REDIS_CONNECT_TIMEOUT_S = 2.0

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
                    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
                    "socket_keepalive": True,
                }
            ],
            "capacity": 500,
            "expiry": 30,
        },
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "enigma_site.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "enigma_site.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "enigma_site.openapi.AutoSchema",  # /openapi.json (drf-spectacular)
}

# Celery: Redis is the broker; results are not needed (state lives in the database).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("ENIGMA_BROKER_VISIBILITY_S", 7200)}
CELERY_TASK_ROUTES = {"sessions.host_session": {"queue": "browsers"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Keys are HMAC-ed with this secret; changing it invalidates every API key.
ENIGMA_KEY_HMAC_SECRET = os.environ.get("ENIGMA_KEY_HMAC_SECRET", SECRET_KEY)
ENIGMA_METRICS_TOKEN = os.environ.get("ENIGMA_METRICS_TOKEN", "")
ENIGMA_PUBLIC_URL = os.environ.get("ENIGMA_PUBLIC_URL", "").rstrip("/")

# Rate limits per team and endpoint scope, requests per sliding 60 s window (api.md §6.3).
ENIGMA_RATE_LIMITS: dict[str, int] = {
    "start-session": 10,
    "send-message": 10,
    "run-task": 10,
    "chat-completions": 10,
    "files-upload": 10,
}
for _item in env_list("ENIGMA_RATE_LIMITS"):
    _scope, _, _limit = _item.partition("=")
    ENIGMA_RATE_LIMITS[_scope.strip()] = int(_limit)
ENIGMA_RATE_LIMIT_WINDOW_S = env_int("ENIGMA_RATE_LIMIT_WINDOW_S", 60)

# Sessions and the browser runtime.
ENIGMA_INLINE_WAIT_S = env_float("ENIGMA_INLINE_WAIT_S", 50)
ENIGMA_INACTIVITY_TIMEOUT_S = env_float("ENIGMA_INACTIVITY_TIMEOUT_S", 300)
ENIGMA_SESSION_MAX_LIFETIME_S = env_float("ENIGMA_SESSION_MAX_LIFETIME_S", 4 * 3600)
ENIGMA_ORPHAN_GRACE_S = env_float("ENIGMA_ORPHAN_GRACE_S", 300)
ENIGMA_HEARTBEAT_S = env_float("ENIGMA_HEARTBEAT_S", 2)
ENIGMA_HEARTBEAT_STALE_S = env_float("ENIGMA_HEARTBEAT_STALE_S", 10)
ENIGMA_SWEEP_INTERVAL_S = env_float("ENIGMA_SWEEP_INTERVAL_S", 5)
# A worker whose task consumer has been down this long exits (its supervisor restarts it).
ENIGMA_CONSUMER_LOST_EXIT_S = env_float("ENIGMA_CONSUMER_LOST_EXIT_S", 60)
ENIGMA_WORKER_CAPACITY = env_int("ENIGMA_WORKER_CAPACITY", 20)
# This machine's id in the fleet: its browser worker consumes the Celery queue browsers.<id>.
ENIGMA_HOST_ID = os.environ.get("ENIGMA_HOST_ID", "").strip() or socket.gethostname()
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", ENIGMA_HOST_ID):
    raise ImproperlyConfigured(f"ENIGMA_HOST_ID {ENIGMA_HOST_ID!r}: letters, digits, '.', '_' and '-' only")
# A draining worker lets running tasks finish this long before it moves their sessions anyway.
ENIGMA_DRAIN_GRACE_S = env_float("ENIGMA_DRAIN_GRACE_S", 300)
# Live sessions one team may have at once, unless its own value is set in admin.
ENIGMA_TEAM_SESSION_LIMIT = env_int("ENIGMA_TEAM_SESSION_LIMIT", 5)
ENIGMA_WARM_POOL = env_int("ENIGMA_WARM_POOL", 2)
# Raw CDP sessions: dedicated browsers each worker keeps started; how long a token opens
# connections (0: the session lifetime cap, so the start-session token lasts as long as its session).
ENIGMA_CDP_WARM_POOL = env_int("ENIGMA_CDP_WARM_POOL", 1)
ENIGMA_CDP_TOKEN_TTL_S = env_int("ENIGMA_CDP_TOKEN_TTL_S", 0)
# The workers' CDP relay listener, which the web tier's gateway dials (sessions_app/cdp.py):
# where it binds ("" turns the direct path off: frames then go through Redis), its port (0: any
# free one) and the host name web hosts reach it by (default: the bound address; set it when
# binding 0.0.0.0 on a browser host of a fleet).
ENIGMA_CDP_RELAY_HOST = os.environ.get("ENIGMA_CDP_RELAY_HOST", "127.0.0.1").strip()
ENIGMA_CDP_RELAY_PORT = env_int("ENIGMA_CDP_RELAY_PORT", 0)
ENIGMA_CDP_RELAY_ADVERTISE = os.environ.get("ENIGMA_CDP_RELAY_ADVERTISE", "").strip()
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH") or default_chromium_path()  # the workers' browser
ENIGMA_ALLOWED_PRIVATE_HOSTS = frozenset(env_list("ENIGMA_ALLOWED_PRIVATE_HOSTS"))


def _own_addresses() -> str:
    """host:port of the product's own listeners (web, Redis, database): never reachable by the
    browser unless ENIGMA_ALLOWED_PRIVATE_HOSTS names one exactly."""
    from urllib.parse import urlsplit

    found = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"]
    default_ports = {"redis": 6379, "rediss": 6379, "postgres": 5432, "postgresql": 5432, "mysql": 3306}
    for url in (REDIS_URL, CELERY_BROKER_URL, os.environ.get("DATABASE_URL", "")):
        parts = urlsplit(url)
        port = parts.port or default_ports.get(parts.scheme)
        if parts.hostname and port:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            found.append(f"{host}:{port}")
    return ",".join(found)


# The egress gate (agents/egress): netns = Chromium in its own network namespace, off = unsafe.
ENIGMA_EGRESS_SANDBOX = os.environ.get("ENIGMA_EGRESS_SANDBOX", "netns").strip().lower()
ENIGMA_EGRESS_RESOLVER = os.environ.get("ENIGMA_EGRESS_RESOLVER", "").strip()
ENIGMA_OWN_ADDRESSES = tuple(env_list("ENIGMA_OWN_ADDRESSES", _own_addresses()))
# The unprivileged user Chromium runs as (scripts/install.sh creates it; `nobody` if it is missing).
ENIGMA_BROWSER_USER = os.environ.get("ENIGMA_BROWSER_USER", "enigma-browser").strip()
# The gate's bounds per session (agents/egress/gate.py).
ENIGMA_EGRESS_RESPONSE_TIMEOUT_S = env_float("ENIGMA_EGRESS_RESPONSE_TIMEOUT_S", 60)
ENIGMA_EGRESS_IDLE_TIMEOUT_S = env_float("ENIGMA_EGRESS_IDLE_TIMEOUT_S", 300)
ENIGMA_EGRESS_MAX_CONNECTIONS = env_int("ENIGMA_EGRESS_MAX_CONNECTIONS", 256)
# The agent (agents.config.AgentSettings, built by the browser worker).
ENIGMA_AGENT_PROVIDER = os.environ.get("ENIGMA_AGENT_PROVIDER", "auto")
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
ENIGMA_ANTHROPIC_MODEL = os.environ.get("ENIGMA_ANTHROPIC_MODEL", "claude-sonnet-4-5")
ENIGMA_ANTHROPIC_MAX_RETRIES = env_int("ENIGMA_ANTHROPIC_MAX_RETRIES", 4)
ENIGMA_ANTHROPIC_RETRY_BASE_S = env_float("ENIGMA_ANTHROPIC_RETRY_BASE_S", 1.0)
ENIGMA_AGENT_SCREENSHOTS = env_bool("ENIGMA_AGENT_SCREENSHOTS")
ENIGMA_SCREENCAST_QUALITY = env_int("ENIGMA_SCREENCAST_QUALITY", 60)
ENIGMA_SCREENCAST_EVERY_NTH_FRAME = env_int("ENIGMA_SCREENCAST_EVERY_NTH_FRAME", 2)

# Video (video/, recordings/): the WHEP live stream and the recording of each session.
ENIGMA_WEBRTC_ICE_HOSTS = tuple(env_list("ENIGMA_WEBRTC_ICE_HOSTS"))  # empty: this machine's addresses
ENIGMA_WEBRTC_BITRATE = env_int("ENIGMA_WEBRTC_BITRATE", 1_500_000)
ENIGMA_RECORDINGS = env_bool("ENIGMA_RECORDINGS", True)
ENIGMA_RECORDING_MAX_FPS = env_float("ENIGMA_RECORDING_MAX_FPS", 5)
ENIGMA_RECORDING_QUALITY = env_int("ENIGMA_RECORDING_QUALITY", 50)
ENIGMA_RECORDING_RETENTION_DAYS = env_float("ENIGMA_RECORDING_RETENTION_DAYS", 30)

# Environments and stored files (environments/). Sizes in MB.
ENIGMA_MAX_UPLOAD_MB = env_float("ENIGMA_MAX_UPLOAD_MB", 50)  # per file of POST /files/upload
ENIGMA_MAX_PROFILE_MB = env_float("ENIGMA_MAX_PROFILE_MB", 500)  # a profile archive
# How far a profile archive may decompress before it is refused (a gzip bomb stops here).
ENIGMA_MAX_PROFILE_INFLATED_MB = env_float("ENIGMA_MAX_PROFILE_INFLATED_MB", 200)
# Profile uploads per team and window (api.md §6.3: 100 per 15 minutes).
ENIGMA_PROFILE_UPLOAD_RATE_LIMIT = env_int("ENIGMA_PROFILE_UPLOAD_RATE_LIMIT", 100)
ENIGMA_PROFILE_UPLOAD_RATE_WINDOW_S = env_float("ENIGMA_PROFILE_UPLOAD_RATE_WINDOW_S", 900)
ENIGMA_ORPHAN_FILE_TTL_S = env_float("ENIGMA_ORPHAN_FILE_TTL_S", 3600)
ENIGMA_MAX_DOWNLOAD_MB = env_float("ENIGMA_MAX_DOWNLOAD_MB", 100)  # one file a page pushes to the browser
ENIGMA_MAX_DOWNLOADS_PER_SESSION = env_int("ENIGMA_MAX_DOWNLOADS_PER_SESSION", 50)  # later ones are refused
ENIGMA_DOWNLOAD_RETENTION_S = env_float("ENIGMA_DOWNLOAD_RETENTION_S", 7 * 86400)
ENIGMA_TEAM_STORAGE_MB = env_float("ENIGMA_TEAM_STORAGE_MB", 5120)  # uploads and downloads of a team
# A provider's proxy URL (http://user:pass@host:port) for session proxies of source "WebRun".
ENIGMA_MANAGED_PROXY_URL = os.environ.get("ENIGMA_MANAGED_PROXY_URL", "").strip()
# Where blobs live (environments/storage.py): "local" (MEDIA_ROOT) or "s3", an S3-compatible bucket.
ENIGMA_STORAGE = os.environ.get("ENIGMA_STORAGE", "").strip().lower() or "local"
if ENIGMA_STORAGE not in ("local", "s3"):
    raise ImproperlyConfigured(f"ENIGMA_STORAGE must be one of local, s3, not {ENIGMA_STORAGE!r}")
ENIGMA_S3_ENDPOINT_URL = os.environ.get("ENIGMA_S3_ENDPOINT_URL", "").strip()  # empty: AWS S3 itself
ENIGMA_S3_BUCKET = os.environ.get("ENIGMA_S3_BUCKET", "").strip()
# Empty keys: boto3's own credential chain (environment, instance role, ...).
ENIGMA_S3_ACCESS_KEY_ID = os.environ.get("ENIGMA_S3_ACCESS_KEY_ID", "").strip()
ENIGMA_S3_SECRET_ACCESS_KEY = os.environ.get("ENIGMA_S3_SECRET_ACCESS_KEY", "").strip()
ENIGMA_S3_REGION = os.environ.get("ENIGMA_S3_REGION", "").strip() or "us-east-1"
ENIGMA_S3_PREFIX = os.environ.get("ENIGMA_S3_PREFIX", "").strip()  # key prefix inside the bucket, e.g. "enigma/"

# Webhooks (webhooks/): the first retry waits ENIGMA_WEBHOOK_RETRY_BASE_S, doubling per attempt.
ENIGMA_WEBHOOK_RETRY_BASE_S = env_float("ENIGMA_WEBHOOK_RETRY_BASE_S", 10)
ENIGMA_WEBHOOK_MAX_ATTEMPTS = env_int("ENIGMA_WEBHOOK_MAX_ATTEMPTS", 6)
ENIGMA_WEBHOOK_TIMEOUT_S = env_float("ENIGMA_WEBHOOK_TIMEOUT_S", 30)
# How old a signature timestamp a receiver should accept (the replay window).
ENIGMA_WEBHOOK_TOLERANCE_S = env_int("ENIGMA_WEBHOOK_TOLERANCE_S", 300)

# Triggers (triggers/, /cron-jobs).
ENIGMA_TRIGGER_MIN_INTERVAL_S = env_int("ENIGMA_TRIGGER_MIN_INTERVAL_S", 60)
ENIGMA_MAX_TRIGGERS = env_int("ENIGMA_MAX_TRIGGERS", 50)

# Billing.
ENIGMA_METER_INTERVAL_S = env_float("ENIGMA_METER_INTERVAL_S", 10)
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/")
ENIGMA_TOPUP_MIN_USD = env_float("ENIGMA_TOPUP_MIN_USD", 5)
ENIGMA_TOPUP_MAX_USD = env_float("ENIGMA_TOPUP_MAX_USD", 1000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ENIGMA_LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        # One line per session start with where its time went, whatever the root level.
        "sessions_app.starts": {"level": "INFO"},
    },
}
