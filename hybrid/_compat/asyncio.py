"""Python internals hybrid relies on (see :mod:`hybrid._compat`).

asyncio and ``concurrent.futures`` pieces that have no public equivalent: the thread of a
one-thread executor (which database thread a request holds), the buffer of a
``StreamReader`` (aiomysql's packets read without awaiting). Also whether this system has
pidfds, through which commands are reaped on every loop (no child watcher is involved).
The version differences are decided here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import platform
from collections.abc import Collection
from threading import Thread

from hybrid._compat import Internal, Library
from hybrid.log import gen_log

__all__ = [
    "executor_threads",
    "library",
    "pidfd_available",
    "reader_buffer",
    "reader_buffer_consumed",
    "reader_buffer_usable",
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


# -- pidfds (hybrid.process.child) -----------------------------------------------------


@functools.cache
def pidfd_available() -> bool:
    """Whether this system can watch a child through a pidfd (``os.pidfd_open``).

    Linux 5.3 and later have it; an older kernel answers ENOSYS, and a seccomp profile may
    forbid the call (EPERM). Decided once, by a probe on this process; the first time it
    is missing, says so in a debug line (commands then go through asyncio's subprocess
    support: see :mod:`hybrid.process.runner`).
    """
    if not hasattr(os, "pidfd_open"):
        reason = "os.pidfd_open is missing"
    else:
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError as exc:
            reason = f"os.pidfd_open failed: {exc}"
        else:
            return True
    gen_log.debug(
        "%s; commands are started and reaped through asyncio's subprocess support", reason
    )
    return False


# -- probes ----------------------------------------------------------------------------


def _executor_has_threads() -> bool:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return isinstance(getattr(executor, "_threads", None), Collection)
    finally:
        executor.shutdown(wait=False)


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
    ]
    return _Python("Python", "asyncio", VERIFIED, REQUIREMENT, internals)
