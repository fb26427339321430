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

import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any

from asgiref.sync import SyncToAsync

from hybrid._compat import Internal, Library

__all__ = ["handed_exception", "library"]

VERIFIED = ("3.13",)
REQUIREMENT = "asgiref>=3.13,<4"


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
            "asgiref.sync.SyncToAsync.thread_handler(self, loop, exc_info, ...)",
            "database threads restore the traceback of an exception sync_to_async re-raised "
            "on them (no reference cycle keeps the request alive)",
            _thread_handler_takes_exc_info,
        ),
    ]
    return Library("asgiref", "asgiref", VERIFIED, REQUIREMENT, internals)
