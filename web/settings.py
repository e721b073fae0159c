"""Django settings, built from the typed WebSettings (no environment reads elsewhere)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from core.logs import logging_config
from web.config import get_settings

config = get_settings()

SECRET_KEY = config.django_secret_key or "debug-only-insecure-key"
DEBUG = config.django_debug
ALLOWED_HOSTS = config.django_allowed_hosts

# Running behind a proxy that ends TLS (all off by default: local runs are plain HTTP). The
# Strict-Transport-Security header is set by web.edge.middleware.security_headers.
SESSION_COOKIE_SECURE = config.session_cookie_secure
CSRF_COOKIE_SECURE = config.csrf_cookie_secure
CSRF_TRUSTED_ORIGINS = config.csrf_trusted_origins
if config.secure_proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + config.secure_proxy_ssl_header.upper().replace("-", "_"),
        "https",
    )
SECURE_HSTS_SECONDS = config.secure_hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.secure_hsts_include_subdomains

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",  # trigram index on text (OpClass in index expressions)
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django.contrib.staticfiles",
    "corsheaders",
    "web.data",
    "web.auth",
    "web.registry",
]

# CORS: closed unless CORS_ALLOWED_ORIGINS lists origins; then only for the API. Closed means
# the middleware is not even installed: it would cost 15-70 us per request to say no.
CORS_ALLOWED_ORIGINS = config.cors_allowed_origins
CORS_URLS_REGEX = r"^/api/"
CORS_EXPOSE_HEADERS = ["Location", "Retry-After", "X-Request-ID"]
CORS_MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware"] if CORS_ALLOWED_ORIGINS else []

# Outermost first. Every one is async-native: a sync one would cost a thread hop per request.
MIDDLEWARE = [
    "web.edge.observability.observe_request",  # request id, duration metric, access line
    *CORS_MIDDLEWARE,  # async-capable (sync_capable and async_capable in 4.9)
    "web.edge.middleware.security_headers",
    "web.edge.rate_limits.limit_callers",  # no token, or refused ones: limited per address
    "web.edge.admin_sessions.admin_sessions",  # the admin's sessions, for /admin/ only (see module)
    "web.auth.middleware.authenticate",  # bearer token and role, for /api/ (web/auth/roles.py)
    "web.edge.rate_limits.rate_limit",  # per token, shared through Redis (web/edge/rate_limiter.py)
]
# The admin's session, authentication and message middlewares run inside
# web.edge.admin_sessions for /admin/ only (so /api/ pays nothing for them); Django's checks look
# for
# them in MIDDLEWARE and cannot see that.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "web.urls"
ASGI_APPLICATION = "web.asgi.application"
APPEND_SLASH = False  # routes accept both forms; a redirect would drop POST bodies

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",  # the admin's pages
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Pooled connections (Django advises against persistent ones under ASGI, where every request's
# sync code runs in a thread of its own): a request takes a connection from the process's pool
# and gives it back at its end, so a process never holds more than WEB_DB_POOL_MAX_SIZE; a pool
# without a free one makes the request wait WEB_DB_POOL_TIMEOUT_SECONDS, then answers 503.
# Every statement is bounded by statement_timeout (web/data/statement_timeout.py answers 503).
# With a pool, CONN_HEALTH_CHECKS makes the pool check a connection when it is taken: one the
# server cut while it sat there (PostgreSQL restarted) is replaced, at one round trip, instead of
# failing the request that took it.
DATABASES = {
    "default": dj_database_url.parse(config.database_url, conn_max_age=0, conn_health_checks=True)
}
_options = DATABASES["default"].setdefault("OPTIONS", {})
_options["connect_timeout"] = 3
_options["options"] = " ".join(
    [_options.get("options", ""), f"-c statement_timeout={config.web_statement_timeout_ms}"]
).strip()
_options["pool"] = {
    "min_size": min(config.web_db_pool_min_size, config.web_db_pool_max_size),
    "max_size": config.web_db_pool_max_size,
    "timeout": config.web_db_pool_timeout_seconds,
    # While PostgreSQL is down the pool retries with a doubling delay; giving up after 3 s lets
    # the next request start a fresh attempt, so a restarted server is used within a second or
    # two, not after the last (8 s, 16 s...) backoff.
    "reconnect_timeout": 3,
}
STATEMENT_TIMEOUT_MS = config.web_statement_timeout_ms
TRANSFER_STATEMENT_TIMEOUT_MS = config.web_transfer_statement_timeout_ms
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
# Filled by `collectstatic` when the image is built; web/edge/static.py serves it (or, where nothing
# was collected, the apps' static folders through the finders).
STATIC_ROOT = Path(__file__).resolve().parent.parent / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Gzip variants written at collect time; no manifest, so URLs work uncollected too.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024  # bulk bodies of 10 000 rows

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["web.edge.json_parser.BoundedJSONParser"],
    # The middleware checked the token; DRF only reads the identity it set.
    "DEFAULT_AUTHENTICATION_CLASSES": ["web.auth.drf.TokenFromMiddleware"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "web.errors.api_exception_handler",
    "LIST_SERIALIZER_ERRORS_AS_DICT": True,  # bulk errors keyed by item index
}

SPECTACULAR_SETTINGS = {
    "TITLE": "textclf web API",
    "DESCRIPTION": "Labelled texts, training jobs and predictions. Every error is "
    '`{"error": "<code>", "detail": "<text>"}` plus field errors where relevant.',
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Predict, train and health are plain async views that drf-spectacular cannot see.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "web.registry.schema.add_registry_operations",
        "web.schema.openapi.add_plain_views",
        "web.edge.rate_limits.declare_rate_limits",
    ],
}

# One stderr handler, text or JSON (LOG_FORMAT), with the request id on every line (core/logs.py).
# httpx logs every call to the algorithm service at INFO: health checks would flood the log.
LOGGING = logging_config(config.log_format, levels={"django.request": "ERROR", "httpx": "WARNING"})

TEXT_MAX_CHARS = config.text_max_chars
BULK_MAX_ROWS = config.bulk_max_rows
PAGE_SIZE_DEFAULT = config.page_size_default
PAGE_SIZE_MAX = config.page_size_max
PREDICT_MAX_TEXTS = config.predict_max_texts
PREDICT_MAX_CHARS = config.predict_max_chars
IMPORT_MAX_BYTES = config.import_max_bytes
SEARCH_MAX_TERMS = config.search_max_terms
EXPORT_SEND_DEADLINE_SECONDS = config.export_send_deadline_seconds
