"""Inside a Celery task: progress, and the end of a task, sent to the task's group.

A WebSocket that joins ``task_group(task_id)`` gets, as group messages (hybrid.groups):

* ``{"type": "task.progress", "task_id", "current", "total", ...info}`` from each
  :func:`progress` call in the task (handled by ``task_progress(self, message)``);
* ``{"type": "task.done", "task_id", "result"}`` when it returns (``result`` left out
  when it is not JSON or too big), ``{"type": "task.failed", "task_id", "error"}`` when it
  raises: both sent by the signal handlers :func:`connect_signals` connects, in the worker.

Sending to the group never fails the task: with the groups backend down or unset the
message is logged and dropped (group messages are at most once anyway). The groups
backend of a Celery worker is the one ``HYBRID_GROUPS`` or ``settings.HYBRID["groups"]``
names, as for any process outside ``hybrid serve`` (a Redis URL, for the messages to
reach the web workers).
"""

from __future__ import annotations

import threading
from typing import Any

from hybrid.errors import GroupError
from hybrid.log import gen_log

__all__ = ["connect_signals", "progress", "task_group"]

#: Group names are ``PREFIX + task_id``.
PREFIX = "celery-task-"


def task_group(task_id: str) -> str:
    """The group that gets a task's ``task.progress``, ``task.done`` and ``task.failed``
    messages."""
    return f"{PREFIX}{task_id}"


def progress(
    task: Any, current: int | float, total: int | float | None = None, **info: Any
) -> None:
    """Report progress from a bound task (``@app.task(bind=True)``; pass ``self``).

    Stores ``state="PROGRESS"`` with ``meta={"current", "total", **info}`` in the result
    backend (``AsyncResult.info`` shows it) and sends ``{"type": "task.progress",
    "task_id", "current", "total", **info}`` to :func:`task_group` of the task.
    """
    task_id = task.request.id
    meta = {"current": current, "total": total, **info}
    task.update_state(state="PROGRESS", meta=meta)
    if task_id:
        send({"type": "task.progress", "task_id": task_id, **meta})


def send(message: dict[str, Any]) -> None:
    """Send ``message`` to the group of ``message["task_id"]``; log, never raise."""
    from hybrid.groups import group_send_sync

    group = task_group(message["task_id"])
    try:
        try:
            group_send_sync(group, message)
        except GroupError:
            if "result" not in message:
                raise
            # The result is not JSON, or too big: say it is done without it.
            group_send_sync(group, {k: v for k, v in message.items() if k != "result"})
    except Exception as exc:
        gen_log.warning(
            "tasks: %s for task %s not sent to its group: %s",
            message.get("type"),
            message["task_id"],
            exc,
        )


_connected: set[int] = set()
_connect_lock = threading.Lock()


def connect_signals(app: Any = None) -> None:
    """Send ``task.done`` and ``task.failed`` to a task's group when it ends.

    Call it once where the worker loads the app (``celery.py``, after ``Celery(...)``);
    again is harmless. With ``app``, only that app's tasks send them.
    """
    from celery import signals

    with _connect_lock:
        key = id(app)
        if key in _connected:
            return
        _connected.add(key)

    def mine(sender: Any) -> bool:
        return app is None or getattr(sender, "app", None) is app

    def on_success(sender: Any = None, result: Any = None, **kwargs: Any) -> None:
        task_id = getattr(getattr(sender, "request", None), "id", None)
        if task_id and mine(sender):
            send({"type": "task.done", "task_id": task_id, "result": result})

    def on_failure(
        sender: Any = None, task_id: str | None = None, exception: Any = None, **kwargs: Any
    ) -> None:
        if task_id and mine(sender):
            error = f"{type(exception).__name__}: {exception}"
            send({"type": "task.failed", "task_id": task_id, "error": error})

    uid = f"hybrid.tasks:{key}"
    signals.task_success.connect(on_success, weak=False, dispatch_uid=f"{uid}:success")
    signals.task_failure.connect(on_failure, weak=False, dispatch_uid=f"{uid}:failure")
