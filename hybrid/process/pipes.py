"""Non-blocking pipe ends the runner owns itself, read and written with ``loop.add_reader``.

The runner creates the pipes and hands only their child ends to ``create_subprocess_exec``,
so asyncio's transport knows nothing about them. That is deliberate: on CPython 3.11
``Process.wait()`` does not return until every pipe asyncio watches is closed, and a
grandchild that inherited stdout (``sh -c 'daemon &'``) holds it open forever (CPython
gh-119710). Owning the read ends lets the runner stop reading whenever it decides the
command is over, and pause reading when a streaming consumer falls behind.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

__all__ = ["CHUNK", "Feeder", "Reader", "open_pipe"]

CHUNK = 65536


def open_pipe() -> tuple[int, int]:
    """A close-on-exec pipe: no other child, from any thread, inherits either end."""
    return os.pipe2(os.O_CLOEXEC)


def close_fd(fd: int) -> None:
    """Close ``fd``, ignoring an already closed one (cleanup paths must not raise)."""
    try:
        os.close(fd)
    except OSError:
        pass


class Reader:
    """Reads one output pipe into ``sink(name, data)`` until EOF or :meth:`close`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        name: str,
        sink: Callable[[str, bytes], None],
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.name = name
        self._sink = sink
        self._paused = False
        self.closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        # One read per wake-up: a flooding command (``yes``) must not starve the loop.
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._sink(self.name, data)
        else:
            self.close()

    def pause(self) -> None:
        """Stop reading; the child blocks on a full pipe (backpressure, bounded memory)."""
        if not self._paused and self.fd >= 0:
            self._paused = True
            self.loop.remove_reader(self.fd)

    def resume(self) -> None:
        if self._paused and self.fd >= 0:
            self._paused = False
            self.loop.add_reader(self.fd, self._on_readable)

    def drain_and_close(self, max_reads: int = 16) -> None:
        """Take what is already in the pipe, then close it even if a writer is still alive.

        ``max_reads`` bounds the work when something outside the process group (a child
        that called ``setsid()``) keeps writing.
        """
        for _ in range(max_reads):
            if self.fd < 0:
                return
            try:
                data = os.read(self.fd, CHUNK)
            except OSError:
                break
            if not data:
                break
            self._sink(self.name, data)
        self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        if not self._paused:
            self.loop.remove_reader(self.fd)
        close_fd(self.fd)
        self.fd = -1
        if not self.closed.done():
            self.closed.set_result(None)


class Feeder:
    """Writes ``data`` to the child's stdin without blocking, then closes it (EOF).

    A child that exits or closes stdin early makes the write fail with EPIPE; that is not
    an error, exactly as with :func:`subprocess.run`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
        self.loop = loop
        self.fd = fd
        self._view = memoryview(data)
        os.set_blocking(fd, False)
        if self._view:
            loop.add_writer(fd, self._on_writable)
        else:
            self.close()

    def _on_writable(self) -> None:
        try:
            written = os.write(self.fd, self._view[:CHUNK])
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self._view = self._view[written:]
        if not self._view:
            self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_writer(self.fd)
        close_fd(self.fd)
        self.fd = -1
        self._view = memoryview(b"")
