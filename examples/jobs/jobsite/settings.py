"""Settings of the jobs example, from the environment.

JOBS_REDIS=redis://127.0.0.1:6379/0     # Celery broker, result backend and groups
JOBS_BROKER=amqp://guest:guest@127.0.0.1:5672//   # another broker (RabbitMQ); results stay in Redis
JOBS_DB=/path/jobs.sqlite3              # where the SQLite database goes
JOBS_UPLOADS=/path/uploads              # where uploaded CSV files are kept
JOBS_STATIC=/path/static                # where collectstatic puts the static files
JOBS_ROW_DELAY=0.05                     # seconds the import sleeps per row (0 for real work)
JOBS_PROGRESS_EVERY=10                  # rows between two progress reports
JOBS_HOUSEKEEPING_EVERY=30              # seconds between two runs of the periodic task
JOBS_KEEP_UPLOADS=86400                 # seconds a finished job's file is kept
JOBS_BEAT_FILE=/path/celerybeat-schedule   # beat's state
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-jobs-demo-only")
DEBUG = os.environ.get("JOBS_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "hybrid",
    "jobs",
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

ROOT_URLCONF = "jobsite.urls"
HYBRID_ROUTES = "jobsite.routes.routes"
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

# The web workers read while the Celery worker writes: WAL lets them, and a writer waits
# for another one (up to 20 s) instead of failing with "database is locked".
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("JOBS_DB") or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
# `manage.py collectstatic` puts files here; nginx serves them (hybrid serve --static).
STATIC_ROOT = os.environ.get("JOBS_STATIC", str(BASE_DIR / "static"))
# Uploaded CSV files; never served: only the import task reads them.
MEDIA_ROOT = os.environ.get("JOBS_UPLOADS", str(BASE_DIR / "uploads"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- Celery, Redis and groups -----------------------------------------------------------
# One Redis for all three: Celery's broker (the queue), its result backend (what
# hybrid.tasks.wait() listens to) and hybrid's groups (progress from the Celery worker to
# the job page's WebSocket on whichever web worker holds it). The Celery worker reads the
# groups URL from here, not from `hybrid serve --groups`.
REDIS_URL = os.environ.get("JOBS_REDIS", "redis://127.0.0.1:6379/0")
HYBRID = {"groups": REDIS_URL}

CELERY_BROKER_URL = os.environ.get("JOBS_BROKER") or REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TRACK_STARTED = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get(
    "JOBS_BEAT_FILE", str(BASE_DIR / "celerybeat-schedule")
)
# Beat sends the housekeeping task every JOBS_HOUSEKEEPING_EVERY seconds: it deletes the
# files of finished jobs older than JOBS_KEEP_UPLOADS and leaves a heartbeat the job list
# shows ("housekeeping ran 12 s ago").
CELERY_BEAT_SCHEDULE = {
    "housekeeping": {
        "task": "jobs.tasks.housekeeping",
        "schedule": float(os.environ.get("JOBS_HOUSEKEEPING_EVERY", "30")),
    },
}

# -- the import --------------------------------------------------------------------------
JOBS_ROW_DELAY = float(os.environ.get("JOBS_ROW_DELAY", "0.05"))
JOBS_PROGRESS_EVERY = int(os.environ.get("JOBS_PROGRESS_EVERY", "10"))
JOBS_KEEP_UPLOADS = float(os.environ.get("JOBS_KEEP_UPLOADS", str(24 * 3600)))
#: The most rows one file may have, and the most rejected rows whose reasons are kept.
JOBS_MAX_ROWS = 100_000
JOBS_MAX_REASONS = 200
