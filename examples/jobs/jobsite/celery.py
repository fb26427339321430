"""The project's Celery app, as Celery's Django guide sets one up: ``CELERY_*`` settings,
tasks found in each app's ``tasks.py``. ``celery -A jobsite`` (and so ``hybrid serve
--celery ... --settings jobsite.settings``) finds it here."""

import os

from celery import Celery

import hybrid.tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsite.settings")

app = Celery("jobsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# task.done / task.failed to the task's group when a task ends (the job page listens).
hybrid.tasks.connect_signals(app)
