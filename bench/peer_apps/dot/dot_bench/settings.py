"""django-oauth-toolkit as the benchmark's peer: a minimal Django project (what `startproject`
gives, less admin and messages) whose only routes are DOT's, on SQLite in WAL mode with
synchronous=NORMAL (as the service runs SQLite) and immediate transactions (Django's own answer
to "database is locked" under threads), the database file named by DOT_BENCH_DB. DOT's settings
are its defaults, so client secrets are hashed unless an application says otherwise
(dot_bench/provision.py creates one of each)."""

import os

SECRET_KEY = os.environ.get("DOT_BENCH_SECRET_KEY", "bench-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "dot_bench.urls"
WSGI_APPLICATION = "dot_bench.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DOT_BENCH_DB", "dot.sqlite3"),
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "read", "introspection": "introspect tokens"},
    "ACCESS_TOKEN_EXPIRE_SECONDS": 14400,
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
