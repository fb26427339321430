import os

SECRET_KEY = "tests-only-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
ROOT_URLCONF = "celeryproject.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CELERYPROJECT_DB", ":memory:"),
    }
}
USE_TZ = True

CELERY_BROKER_URL = os.environ.get("CELERYPROJECT_REDIS", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_BEAT_SCHEDULE = {
    "tick": {"task": "celeryproject.celery.tick", "schedule": 0.5},
}
# Beat keeps its schedule state in a file (default: celerybeat-schedule in the current
# directory); the tests put it in their own temporary directory.
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get("CELERYPROJECT_BEAT_FILE", "celerybeat-schedule")
