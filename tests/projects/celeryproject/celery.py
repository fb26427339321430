"""The project's Celery app, configured from Django settings (``CELERY_*``), as Celery's
Django guide sets one up; ``celery -A celeryproject`` finds it here."""

import os
import time

import redis
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "celeryproject.settings")

app = Celery("celeryproject")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url)


@app.task
def tick() -> None:
    """Run by beat every half second: counts, and says which worker ran it."""
    client = _redis()
    client.incr("ticks")
    client.set("tick-worker", os.getpid())


@app.task
def nap(seconds: float, key: str) -> str:
    """Sleep, then set ``key``: a task that is running when the worker is told to stop."""
    _redis().set(f"{key}-started", os.getpid())
    time.sleep(seconds)
    _redis().set(key, "done")
    return "done"
