"""Settings of the chat example: SQLite by default, MariaDB/MySQL with one setting.

CHAT_DB=/path/chat.sqlite3                              # where the SQLite file goes
CHAT_DB=mysql://user:password@127.0.0.1:3306/chat       # MariaDB/MySQL instead
CHAT_REDIS=redis://127.0.0.1:6379/0                     # groups across workers (or --groups)
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-chat-demo-only")
DEBUG = os.environ.get("CHAT_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "hybrid",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
HYBRID_ROUTES = "chatsite.routes.routes"
# Groups reach the sockets of every worker through Redis; without it (empty), only those
# of the same worker. `hybrid serve --groups redis://...` overrides this.
HYBRID = {"groups": os.environ.get("CHAT_REDIS", "")}
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database(url: str) -> dict[str, object]:
    if not url.startswith("mysql://"):
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": url or str(BASE_DIR / "db.sqlite3"),
        }
    import pymysql

    pymysql.version_info = (2, 2, 7, "final", 0)  # stands in for mysqlclient, as Django checks
    pymysql.install_as_MySQLdb()
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 3306),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"charset": "utf8mb4"},
    }


DATABASES = {"default": _database(os.environ.get("CHAT_DB", ""))}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
# `manage.py collectstatic` puts files here; nginx serves them (hybrid serve --static).
STATIC_ROOT = os.environ.get("CHAT_STATIC", str(BASE_DIR / "static"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
