"""asgiref internals hybrid relies on (see :mod:`hybrid._compat`).

``sync_to_async`` called while an exception is being handled (Django 6.0's
``SessionBase._aget_session`` awaits ``aload()`` inside ``except AttributeError``) hands
that exception to the executor's thread: ``SyncToAsync.__call__`` submits
``functools.partial(self.thread_handler, loop, sys.exc_info(), ...)``, and
``thread_handler`` re-raises ``exc_info[1]`` so that the sync function, too, runs inside an
``except`` block. Re-raising puts ``thread_handler``'s frame at the head of the exception's
traceback, and that frame's local ``exc_info`` holds the exception: a reference cycle
(exception -> traceback -> frame -> ``exc_info`` -> exception) through which the loop-side
frames of the traceback keep the whole request alive until the cyclic garbage collector
runs. :func:`handed_exception` finds the exception in such a job, so that the database
thread that runs it (:class:`hybrid.lanes.LanePool`'s lanes) can give the exception back
its own traceback once the job is over.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext

from hybrid._compat import Internal, Library

__all__ = ["enter_shared_context", "exit_shared_context", "handed_exception", "library"]

VERIFIED = ("3.13",)
REQUIREMENT = "asgiref>=3.13,<4"


#: The ThreadSensitiveContext that request contexts share (never entered), and the
#: executor asgiref finds for it: set by :func:`enter_shared_context`.
_shared: list[ThreadSensitiveContext] = []


def enter_shared_context(executor: Executor) -> contextvars.Token[Any]:
    """Make ``executor`` this context's thread-sensitive executor, as entering
    ``ThreadSensitiveContext(executor=...)`` would, at the cost of one context variable.

    ``SyncToAsync.__call__`` finds the executor of the current context in its class-level
    ``context_to_thread_executor`` under ``thread_sensitive_context``: every request sets
    the same context object, registered once with ``executor`` (which must route each call
    to the calling context's own thread, see :class:`hybrid.lanes.LaneRouter`), instead of
    a new one per request (a weak-dictionary entry and two ``Local`` writes in and out).
    Unlike ``ThreadSensitiveContext`` it does not hide an enclosing ``async_to_sync``'s
    thread: only for code no ``async_to_sync`` runs (a Tornado request). Undo with
    :func:`exit_shared_context`.
    """
    if not _shared:
        shared = ThreadSensitiveContext()
        SyncToAsync.context_to_thread_executor[shared] = executor
        _shared.append(shared)
    return SyncToAsync.thread_sensitive_context.set(_shared[0])


def exit_shared_context(token: contextvars.Token[Any]) -> None:
    """Undo :func:`enter_shared_context`."""
    SyncToAsync.thread_sensitive_context.reset(token)


def _shared_context_usable() -> bool:
    source = inspect.getsource(SyncToAsync.__call__)
    return (
        isinstance(getattr(SyncToAsync, "thread_sensitive_context", None), contextvars.ContextVar)
        and isinstance(
            getattr(SyncToAsync, "context_to_thread_executor", None), weakref.WeakKeyDictionary
        )
        and "self.context_to_thread_executor[thread_sensitive_context]" in source
        and "_exited" in source
        and getattr(ThreadSensitiveContext(), "_exited", None) is False
    )


def _thread_handler() -> Any:
    """``SyncToAsync.thread_handler`` as defined (the bound methods asgiref submits wrap
    it), or None."""
    return getattr(SyncToAsync, "thread_handler", None)


def handed_exception(
    job: Callable[..., object],
) -> tuple[BaseException, TracebackType | None] | None:
    """The exception ``sync_to_async`` handed to ``job``, with the traceback it had then.

    ``job`` is what an executor was given to run; None unless it is asgiref's
    ``thread_handler`` with an exception to re-raise (a call made outside any ``except``
    block hands none).
    """
    if type(job) is not functools.partial or len(job.args) < 2:
        return None
    handler = getattr(job.func, "__func__", None)
    if handler is None or handler is not _thread_handler():
        return None
    exc_info = job.args[1]  # thread_handler(self, loop, exc_info, task_context, func, ...)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3:
        return None
    exception, traceback = exc_info[1], exc_info[2]
    if not isinstance(exception, BaseException):
        return None
    return exception, traceback


def _thread_handler_takes_exc_info() -> bool:
    handler = _thread_handler()
    if not inspect.isfunction(handler):
        return False
    parameters = list(inspect.signature(handler).parameters)
    return parameters[:3] == ["self", "loop", "exc_info"]


def library() -> Library | None:
    """What hybrid needs of asgiref (a requirement of Django's: always installed)."""
    internals = [
        Internal(
            "asgiref.sync.SyncToAsync.thread_sensitive_context/context_to_thread_executor",
            "a request's thread-sensitive calls find its database thread through one shared "
            "context object, set per request in a context variable",
            _shared_context_usable,
        ),
        Internal(
            "asgiref.sync.SyncToAsync.thread_handler(self, loop, exc_info, ...)",
            "database threads restore the traceback of an exception sync_to_async re-raised "
            "on them (no reference cycle keeps the request alive)",
            _thread_handler_takes_exc_info,
        ),
    ]
    return Library("asgiref", "asgiref", VERIFIED, REQUIREMENT, internals)
