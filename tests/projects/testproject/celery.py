"""The test project's Celery app, set up as docs/guide/tasks.md tells a Django project to:
``celery -A testproject worker`` finds it here. Its tasks are in ``testproject.tasks``."""

from __future__ import annotations

import os

from celery import Celery

import hybrid.tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

app = Celery("testproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["testproject.tasks"]
app.autodiscover_tasks()
hybrid.tasks.connect_signals(app)
