"""Celery from async handlers, without blocking the loop or holding a thread.

::

    from shop.tasks import build_report

    class Report(hybrid.DjangoHandler):
        async def post(self):
            try:
                result = await hybrid.tasks.delay(build_report, self.user_id)
            except hybrid.TasksUnavailable:
                raise tornado.web.HTTPError(503)
            self.write({"rows": await hybrid.tasks.wait(result, timeout=30)})

    @app.task(bind=True)                          # in the Celery worker
    def build_report(self, user_id):
        for i, row in enumerate(rows):
            hybrid.tasks.progress(self, i, len(rows))   # -> task_group(self.request.id)

* :func:`delay`, :func:`apply_async`: publish from a small thread pool of their own, no
  retry, short timeouts: :class:`hybrid.TasksUnavailable` within about 2 s when the broker
  is down. (Plain ``task.delay()`` on the loop blocks the whole worker while kombu
  publishes, for up to tens of seconds when the broker is down.)
* :func:`wait`: the return value or the task's exception; :class:`hybrid.TaskTimeout`;
  cancelling leaves the task running (``revoke_on_cancel=True`` revokes it). With the
  Redis result backend one subscriber connection per worker serves every waiter.
* :func:`progress`, :func:`task_group`, :func:`connect_signals`: progress and the end of
  a task as group messages to WebSockets (hybrid.groups).

Importing this package does not import Celery; the functions do. See docs/guide/tasks.md.
"""

from __future__ import annotations

from hybrid.errors import TasksUnavailable, TaskTimeout
from hybrid.tasks.progress import connect_signals, progress, task_group
from hybrid.tasks.publish import apply_async, delay
from hybrid.tasks.waiting import wait

__all__ = [
    "TaskTimeout",
    "TasksUnavailable",
    "apply_async",
    "connect_signals",
    "delay",
    "progress",
    "task_group",
    "wait",
]
