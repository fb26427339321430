"""The tasks benchmark's side of the project (``scripts/bench/tasks_wait.py``): a Celery app
and its one task, the handler that sends it and waits for it, and the probe that samples the
worker's event loop meanwhile.

``hybrid serve --celery-app benchapp.waiting:app --celery 'worker --pool threads ...'`` runs
the Celery worker; ``/h/tasks/sleep?seconds=S`` does ``await hybrid.tasks.delay(nap, S)``
then ``await hybrid.tasks.wait(result, timeout=30)``; ``/h/tasks/probe`` sleeps 5 ms at a
time and records, per sample, the monotonic clock, how late the loop woke (ms), and how many
requests were publishing and waiting at that moment.
"""

import asyncio
import os
import time

import tornado.web
from celery import Celery

import hybrid.tasks
from hybrid import DjangoHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings_tasks")

app = Celery("benchapp")
app.config_from_object("django.conf:settings", namespace="CELERY")

PROBE_SECONDS = 0.005
WAIT_TIMEOUT = 30.0

# This worker's requests now between the two awaits: sending, or waiting for the result.
state = {"publishing": 0, "waiting": 0, "done": 0, "failed": 0}


@app.task
def nap(seconds: float) -> float:
    """Sleep in the Celery worker (a thread of its pool), return the seconds slept."""
    time.sleep(seconds)
    return seconds


class Sleep(DjangoHandler):
    """``GET /h/tasks/sleep?seconds=S``: a task that sleeps S seconds, awaited."""

    async def get(self):
        seconds = float(self.get_argument("seconds", "2"))
        state["publishing"] += 1
        try:
            result = await hybrid.tasks.delay(nap, seconds)
        except Exception:
            state["failed"] += 1
            raise
        finally:
            state["publishing"] -= 1
        state["waiting"] += 1
        try:
            value = await hybrid.tasks.wait(result, timeout=WAIT_TIMEOUT)
        except Exception:
            state["failed"] += 1
            raise
        finally:
            state["waiting"] -= 1
        state["done"] += 1
        self.set_header("Content-Type", "text/plain")
        self.write(f"{value}\n")


class Ping(tornado.web.RequestHandler):
    def get(self):
        self.write("pong")


class Probe(tornado.web.RequestHandler):
    """``GET /h/tasks/probe?seconds=MAX&settle=S``: sample the loop every 5 ms until MAX
    seconds, or until requests were seen and none has been in flight for S seconds. Answers
    the worker's pid, its counters, and the samples as parallel lists."""

    async def get(self):
        longest = float(self.get_argument("seconds", "30"))
        settle = float(self.get_argument("settle", "0.5"))
        times, lags, publishing, waiting = [], [], [], []
        start = time.monotonic()
        seen, idle_since = False, None
        while time.monotonic() - start < longest:
            before = time.monotonic()
            await asyncio.sleep(PROBE_SECONDS)
            now = time.monotonic()
            times.append(now)
            lags.append(max(0.0, now - before - PROBE_SECONDS) * 1000)
            publishing.append(state["publishing"])
            waiting.append(state["waiting"])
            busy = state["publishing"] or state["waiting"]
            seen = seen or bool(busy)
            if busy:
                idle_since = None
            elif seen:
                idle_since = idle_since or now
                if now - idle_since >= settle:
                    break
        self.write(
            {
                "pid": os.getpid(),
                "state": dict(state),
                "t": times,
                "lag_ms": lags,
                "publishing": publishing,
                "waiting": waiting,
            }
        )


routes = [
    (r"/h/tasks/sleep", Sleep),
    (r"/h/tasks/probe", Probe),
    (r"/h/ping", Ping),
]
