"""Sending Celery tasks from async code: :func:`apply_async`, :func:`delay`, and revoking.

kombu publishes with blocking sockets, so ``task.delay()`` called on the event loop stops
the whole worker for as long as the broker takes to answer, and with the broker down for
as long as Celery retries (tens of seconds with the default retry policy, and the Redis
result backend retries once more on its own). Here the publish runs on a small pool of
threads of its own (``PUBLISH_THREADS``, made on first use, made again after a fork), with

* Celery's publish retry off (``retry=False``),
* one broker connection per publish thread with a short connect and socket timeout
  (``CONNECT_TIMEOUT``, ``SOCKET_TIMEOUT``; the app's ``broker_transport_options`` win),
  dropped and made again after a failure,
* the Redis result backend's blocking result consumer kept out of it (hybrid's own
  subscriber waits for the result, see :mod:`hybrid.tasks.results`),

so that with the broker down the caller gets :class:`hybrid.TasksUnavailable` within about
two seconds, and a handler can answer 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from typing import TYPE_CHECKING, Any

from hybrid.errors import TasksUnavailable
from hybrid.log import gen_log

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

__all__ = ["apply_async", "delay", "revoke_soon"]

#: Threads that publish; a publish holds one for a few milliseconds, or for the connect
#: timeout when the broker is unreachable.
PUBLISH_THREADS = 4
#: Defaults of the publish threads' broker connections (seconds).
CONNECT_TIMEOUT = 1.5
SOCKET_TIMEOUT = 2.0

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()
_local = threading.local()


def _publisher() -> concurrent.futures.ThreadPoolExecutor:
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = concurrent.futures.ThreadPoolExecutor(
                PUBLISH_THREADS, thread_name_prefix="hybrid-tasks-publish"
            )
            _executor_pid = os.getpid()
        return _executor


async def apply_async(
    task: Any,
    args: tuple[Any, ...] | list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncResult:
    """``task.apply_async(args, kwargs, **options)`` without blocking the event loop.

    Returns the task's ``AsyncResult`` (give it to :func:`hybrid.tasks.wait`). Raises
    :class:`hybrid.TasksUnavailable` when the broker cannot take the task within about two
    seconds; the task was then not sent. ``retry`` and ``retry_policy`` in ``options`` are
    ignored: a request that waits for a broker is a request that hangs.
    """
    options.pop("retry", None)
    options.pop("retry_policy", None)
    loop = asyncio.get_running_loop()
    result: AsyncResult = await loop.run_in_executor(
        _publisher(), _publish, task, tuple(args or ()), dict(kwargs or {}), options
    )
    return result


async def delay(task: Any, *args: Any, **kwargs: Any) -> AsyncResult:
    """``task.delay(*args, **kwargs)`` without blocking the event loop (see
    :func:`apply_async`)."""
    return await apply_async(task, args, kwargs)


def _connection(app: Celery) -> Any:
    """This publish thread's broker connection for ``app`` (made on first use)."""
    connections: dict[int, Any] = _local.__dict__.setdefault("connections", {})
    conn = connections.get(id(app))
    if conn is None:
        transport_options = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
            "max_retries": 0,
            **(app.conf.broker_transport_options or {}),
        }
        conn = connections[id(app)] = app.connection_for_write(
            connect_timeout=CONNECT_TIMEOUT, transport_options=transport_options
        )
    return conn


def _drop_connection(app: Celery) -> None:
    conn = _local.__dict__.get("connections", {}).pop(id(app), None)
    if conn is not None:
        try:
            conn.release()
        except Exception:
            pass


def _publish(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: Any) -> Any:
    from hybrid._compat.celery import quiet_on_task_call

    app = task.app
    quiet_on_task_call(app.backend)  # this thread's own backend instance
    try:
        return task.apply_async(args, kwargs, retry=False, connection=_connection(app), **options)
    except Exception as exc:
        if not _is_connection_error(app, exc):
            raise
        _drop_connection(app)
        raise _unavailable(app, exc) from None


def _is_connection_error(app: Celery, exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError

    errors = (OperationalError, OSError, TimeoutError)
    try:
        conn = app.connection_for_write()
        errors = (*errors, *conn.connection_errors)
        conn.release()
    except Exception:
        pass
    return isinstance(exc, errors)


def _unavailable(app: Celery, exc: BaseException) -> TasksUnavailable:
    broker = broker_url(app)
    reason = str(exc) or type(exc).__name__
    return TasksUnavailable(
        f"task not sent: the Celery broker at {broker} is unavailable ({reason}); "
        "nothing was queued, try again later (answer 503)",
        broker=broker,
        reason=reason,
    )


def broker_url(app: Celery) -> str:
    """The app's broker URL without its password."""
    conn = app.connection_for_write()
    try:
        return str(conn.as_uri())
    finally:
        conn.release()


def revoke_soon(app: Celery, task_id: str, *, terminate: bool = False) -> None:
    """Ask the workers to revoke ``task_id``, from a publish thread; never waits, never
    raises (a failure is logged)."""
    future = _publisher().submit(_revoke, app, task_id, terminate)
    future.add_done_callback(lambda done: _log_revoke_failure(done, task_id))


def _revoke(app: Celery, task_id: str, terminate: bool) -> None:
    try:
        app.control.revoke(task_id, terminate=terminate, connection=_connection(app))
    except Exception:
        _drop_connection(app)
        raise


def _log_revoke_failure(done: concurrent.futures.Future[None], task_id: str) -> None:
    exc = done.exception()
    if exc is not None:
        gen_log.warning("tasks: revoking task %s failed: %s", task_id, exc)
