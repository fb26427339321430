"""Settings of the benchmark project: the database comes from the environment.

``MARIADB_HOST``, ``MARIADB_PORT``, ``MARIADB_USER``, ``MARIADB_PASSWORD`` (what
``scripts/mariadb start`` prints), ``BENCH_DATABASE`` (default ``hybrid_bench``) and
``BENCH_CONN_MAX_AGE`` (default 60; the harness gives uvicorn 0, see its Stacks table).
"""

import os

import pymysql

pymysql.version_info = (2, 2, 7, "final", 0)  # what Django's backend requires of mysqlclient
pymysql.install_as_MySQLdb()

SECRET_KEY = "benchmark-only-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "benchapp",
]

# Django's default middleware (what startproject writes), the same for every stack.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "benchproject.urls"
HYBRID_ROUTES = "benchapp.handlers.routes"
WSGI_APPLICATION = "benchproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": os.environ.get("MARIADB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("MARIADB_PORT", "3306"),
        "USER": os.environ.get("MARIADB_USER", "hybrid"),
        "PASSWORD": os.environ.get("MARIADB_PASSWORD", "hybrid"),
        "NAME": os.environ.get("BENCH_DATABASE", "hybrid_bench"),
        "CONN_MAX_AGE": int(os.environ.get("BENCH_CONN_MAX_AGE", "60")),
        # No TLS on loopback. Without ssl_disabled, PyMySQL (2.2.8 here) tries TLS in
        # "preferred" mode: it builds an SSL context on every connect, loading the system CA
        # bundle (~30 ms of CPU), even though this MariaDB has TLS off. With a connection per
        # request (CONN_MAX_AGE 0, or uvicorn's thread per request) that starved every
        # database endpoint; under gevent it blocked the hub (0 req/s). aiomysql (raw
        # Tornado, hybrid's native path) does no TLS unless asked; hybrid drops the option.
        "OPTIONS": {"charset": "utf8mb4", "ssl_disabled": True},
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
