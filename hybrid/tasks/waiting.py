"""``await hybrid.tasks.wait(result)``: a Celery task's return value, without a thread.

A waiter is a future fed by the loop's results source (:mod:`hybrid.tasks.results`) and a
timer (``loop.call_later``); nothing blocks, nothing polls per waiter with the Redis result
backend. Semantics:

* the task's return value, or the task's own exception raised as ``AsyncResult.get()``
  raises it (re-created by the result backend's ``exception_to_python``), with the worker's
  traceback text attached as a note and as ``exc.remote_traceback``; a revoked task raises
  Celery's ``TaskRevokedError``, a prefork child killed under its task ``WorkerLostError``;
* at ``timeout`` seconds :class:`hybrid.TaskTimeout`; the task is left alone;
* cancelled (the client went away): the waiter stops waiting and the task keeps running,
  unless ``revoke_on_cancel=True``, which asks the workers to revoke it (from a publish
  thread; the cancellation does not wait for that).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from hybrid.errors import TaskTimeout
from hybrid.tasks.results import Meta, results_for

if TYPE_CHECKING:
    from celery.result import AsyncResult

__all__ = ["wait"]


async def wait(
    async_result: AsyncResult,
    timeout: float = 30.0,
    *,
    revoke_on_cancel: bool = False,
) -> Any:
    """The return value of the task behind ``async_result`` (see the module docs).

    Raises the task's exception if it failed, :class:`hybrid.TaskTimeout` after
    ``timeout`` seconds. Cancelling the caller leaves the task running unless
    ``revoke_on_cancel``.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    task_id = str(async_result.id)
    results = results_for(async_result.app)
    loop = results.loop
    started = time.monotonic()
    future = results.watch(task_id)
    timer = loop.call_later(timeout, _expire, future, results, task_id, timeout)
    try:
        meta = await future
    except asyncio.CancelledError:
        # Cancelling this task cancelled the future too: revoke unless a result came.
        if revoke_on_cancel and (future.cancelled() or not future.done()):
            from hybrid.tasks.publish import revoke_soon

            revoke_soon(async_result.app, task_id)
        raise
    finally:
        timer.cancel()
        results.forget(task_id, future)
    return _outcome(task_id, meta, time.monotonic() - started)


def _expire(future: asyncio.Future[Meta], results: Any, task_id: str, timeout: float) -> None:
    if future.done():
        return
    message = (
        f"task {task_id} did not finish within {timeout:g}s; it was left running: give "
        "wait() a longer timeout, or make the task shorter and report progress"
    )
    if results.down_since is not None:
        message += f" (the result backend is unavailable: {results.down_reason})"
    future.set_exception(TaskTimeout(message, task_id=task_id, timeout=timeout))


def _outcome(task_id: str, meta: Meta, waited: float) -> Any:
    status = meta.get("status")
    result = meta.get("result")
    if status == "SUCCESS":
        return result
    if not isinstance(result, BaseException):
        result = RuntimeError(f"task {task_id} ended {status}: {result!r}")
    traceback = meta.get("traceback")
    if traceback:
        try:
            result.add_note(f"Remote traceback of task {task_id}:\n{traceback.rstrip()}")
            result.remote_traceback = traceback  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # an exception type with __slots__
            pass
    raise result
