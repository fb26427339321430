"""The jobs example's project package. Importing it loads the Celery app, so that
``@shared_task`` tasks use it wherever Django runs (web workers, shell, Celery)."""

from jobsite.celery import app as celery_app

__all__ = ["celery_app"]
