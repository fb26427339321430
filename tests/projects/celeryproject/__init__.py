"""A Django project with a Celery app, for the tests of Celery under the master
(tests/e2e/test_celery_processes.py). Its broker is the Redis named by $CELERYPROJECT_REDIS."""

from celeryproject.celery import app

__all__ = ["app"]
