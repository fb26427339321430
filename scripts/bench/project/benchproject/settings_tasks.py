"""Settings of the tasks benchmark (``scripts/bench/tasks_wait.py``): the benchmark
project's, with the waiting routes (``benchapp.waiting``) and Celery on a private Redis
(``BENCH_REDIS_URL``, broker and result backend both). No database is touched."""

import os

from benchproject.settings import *  # noqa: F403

HYBRID_ROUTES = "benchapp.waiting.routes"

CELERY_BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Each thread of the Celery worker's pool takes one task at a time.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
