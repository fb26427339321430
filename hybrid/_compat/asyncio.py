"""Python internals hybrid relies on (see :mod:`hybrid._compat`).

asyncio and ``concurrent.futures`` pieces that have no public equivalent: the thread of a
one-thread executor (which database thread a request holds), the buffer of a
``StreamReader`` (aiomysql's packets read without awaiting), and the child watcher: 3.11's
default starts a thread per subprocess and is replaced, 3.12 and 3.13 pick a pidfd watcher
by themselves (the watcher API is deprecated there and gone in 3.14). The version
differences are decided here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import platform
import sys
import warnings
from collections.abc import Callable, Collection
from threading import Thread
from typing import Any

from hybrid._compat import Internal, Library, has_attrs
from hybrid.log import gen_log

__all__ = [
    "executor_threads",
    "library",
    "reader_buffer",
    "reader_buffer_consumed",
    "reader_buffer_usable",
    "use_pidfd_watcher",
]

VERIFIED = ("3.11", "3.12", "3.13")
REQUIREMENT = "python>=3.11"


# -- concurrent.futures (hybrid.lanes) -------------------------------------------------


def executor_threads(executor: concurrent.futures.ThreadPoolExecutor) -> Collection[Thread]:
    """The threads an executor has started (none before its first job)."""
    # A lane is a one-thread executor: its thread tells whose sync connection is whose.
    return executor._threads


# -- asyncio.StreamReader (hybrid.db.connection) ---------------------------------------


def reader_buffer(reader: asyncio.StreamReader) -> bytearray | None:
    """The bytes received and not yet read, or None when the reader holds an error."""
    # Whole MySQL packets are taken from the buffer without two awaited readexactly() calls.
    if reader._exception is not None:  # type: ignore[attr-defined]
        return None
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    return buffer


def reader_buffer_consumed(reader: asyncio.StreamReader) -> None:
    """Call after taking bytes from :func:`reader_buffer`, as ``readexactly()`` does."""
    # A transport paused at the buffer's high-water mark resumes reading once it drains.
    reader._maybe_resume_transport()  # type: ignore[attr-defined]


def reader_buffer_usable() -> bool:
    """Whether a ``StreamReader`` has the buffer :func:`reader_buffer` reads."""
    loop = asyncio.new_event_loop()
    try:
        reader = asyncio.StreamReader(loop=loop)
    finally:
        loop.close()
    return (
        isinstance(getattr(reader, "_buffer", None), bytearray)
        and hasattr(reader, "_exception")
        and callable(getattr(reader, "_maybe_resume_transport", None))
    )


# -- the child watcher (hybrid.process.runner) -----------------------------------------

# Defined on 3.11 only: subclassing AbstractChildWatcher warns from 3.12 on (removed in 3.14),
# where asyncio reaps through pidfds by itself.
if sys.version_info < (3, 12):

    class _PidfdWatcher(asyncio.AbstractChildWatcher):
        """Python 3.12's ``PidfdChildWatcher``, for 3.11: each child's pidfd is watched by the
        loop running when it was spawned; no thread, no signal handler.

        Ours rather than 3.11's own class because that one serves a single loop, attached by
        the event loop policy only on ``set_event_loop`` in the main thread: a loop it was not
        attached to (a test's, an embedding application's) could spawn but never reap.
        """

        def __enter__(self) -> _PidfdWatcher:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

        def is_active(self) -> bool:
            return True

        def close(self) -> None:
            return None

        def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
            return None

        def add_child_handler(  # type: ignore[override]  # typeshed's is generic over args
            self, pid: int, callback: Callable[..., object], *args: Any
        ) -> None:
            loop = asyncio.get_running_loop()
            pidfd = os.pidfd_open(pid)
            loop.add_reader(pidfd, self._reap, loop, pid, pidfd, callback, args)

        def remove_child_handler(self, pid: int) -> bool:
            return True  # as 3.12's: the pidfd goes when the child has been reaped

        @staticmethod
        def _reap(
            loop: asyncio.AbstractEventLoop,
            pid: int,
            pidfd: int,
            callback: Callable[..., object],
            args: tuple[Any, ...],
        ) -> None:
            loop.remove_reader(pidfd)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:  # reaped elsewhere
                returncode = 255
                gen_log.warning("pid %d was reaped by someone else: exit status 255", pid)
            else:
                returncode = os.waitstatus_to_exitcode(status)
            finally:
                os.close(pidfd)
            callback(pid, returncode, *args)


#: Whether this process reaps through pidfds; None until the first spawn decides.
_pidfd_watcher: bool | None = None


def use_pidfd_watcher() -> bool:
    """On Python 3.11, reap commands through pidfds on the loop rather than a thread each.

    asyncio's default child watcher on 3.11 (``ThreadedChildWatcher``) starts a thread per
    command that blocks in ``waitpid``: 200 commands in flight are 200 threads, each
    started from the loop. A pidfd per child watched by the loop (Linux >= 5.3) is what
    Python 3.12 does by itself. Only the stock watcher is replaced (a project's own choice
    stays), and only after a probe shows pidfds work here (seccomp profiles may forbid
    them). Decided once, at the first spawn; True when pidfds are in use.
    """
    global _pidfd_watcher
    if _pidfd_watcher is None:
        if sys.version_info >= (3, 12):
            _pidfd_watcher = _asyncio_uses_pidfds()
        else:
            _pidfd_watcher = _install_pidfd_watcher()
    return _pidfd_watcher


def _asyncio_uses_pidfds() -> bool:
    if sys.version_info >= (3, 14):
        return hasattr(os, "pidfd_open")  # no watchers left: asyncio uses pidfds where it can
    # 3.12 and 3.13 pick PidfdChildWatcher where pidfds work; a project may have set another.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)


def _install_pidfd_watcher() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    # 3.11's watcher API (deprecated from 3.12): the only way to change how children are reaped.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if type(asyncio.get_child_watcher()) is not asyncio.ThreadedChildWatcher:
            return False
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return False
        asyncio.set_child_watcher(_PidfdWatcher())
    return True


# -- probes ----------------------------------------------------------------------------


def _executor_has_threads() -> bool:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return isinstance(getattr(executor, "_threads", None), Collection)
    finally:
        executor.shutdown(wait=False)


def _child_watcher_api() -> bool:
    if sys.version_info >= (3, 14):
        return True  # not used: the watchers are gone, asyncio reaps through pidfds
    if sys.version_info >= (3, 12):
        return has_attrs(asyncio, "get_child_watcher", "PidfdChildWatcher")()
    return has_attrs(
        asyncio,
        "AbstractChildWatcher",
        "ThreadedChildWatcher",
        "get_child_watcher",
        "set_child_watcher",
    )()


class _Python(Library):
    """The running interpreter, whose version is not a distribution's."""

    def version(self) -> str:
        return platform.python_version()


def library() -> Library | None:
    """What hybrid needs of Python (always there: never None)."""
    internals: list[Internal] = [
        Internal(
            "concurrent.futures.ThreadPoolExecutor._threads",
            "a request's database thread tells which sync connections are its own",
            _executor_has_threads,
        ),
        Internal(
            "asyncio.StreamReader._buffer/_exception/_maybe_resume_transport",
            "aiomysql's packets are read straight from the buffer when whole",
            reader_buffer_usable,
        ),
        Internal(
            "asyncio.get_child_watcher/set_child_watcher/ThreadedChildWatcher"
            "/PidfdChildWatcher (3.11 to 3.13)",
            "commands are reaped through pidfds, not a waitpid thread each (3.11 installs it)",
            _child_watcher_api,
        ),
    ]
    return _Python("Python", "asyncio", VERIFIED, REQUIREMENT, internals)
