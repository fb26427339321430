"""A command's process: started with ``subprocess.Popen``, its exit watched through a pidfd.

asyncio's ``create_subprocess_exec`` is loop-specific: on asyncio it is CPython's
``subprocess.Popen`` (``vfork`` + ``exec`` on Linux) reaped by a child watcher; on uvloop it
is libuv's ``uv_spawn``, which ``fork``\\ s the whole worker (a hundred megabytes of page
tables: measured, ``true`` per request ran five times slower) and refuses ``user=`` and
``group=``. :class:`Child` is the same on every loop: ``Popen`` starts the command (on the
loop thread, as asyncio's own transport does; ``vfork`` + ``exec`` takes well under a
millisecond), and the loop watches a pidfd of the child, which becomes readable when it
exits; then it is reaped with ``waitpid(pid, WNOHANG)``. No SIGCHLD handler, no watcher
thread, no ``waitpid`` of anyone else's children.

Needs ``os.pidfd_open`` (Linux 5.3+); :func:`pidfd_available` says whether this system has
it (the runner uses asyncio's subprocess support otherwise).

Why not a library: asyncio has no loop-independent spawn, and a pidfd is what its own
``PidfdChildWatcher`` uses; this is that watcher without the asyncio transport around it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from typing import Any

__all__ = ["Child", "pidfd_available"]


@functools.cache
def pidfd_available() -> bool:
    """Whether this system can watch a child through a pidfd (``os.pidfd_open``)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # ENOSYS: a kernel before 5.3, or a sandbox without the call
        return False
    return True


class Child:
    """A started command: its ``pid``, ``returncode`` once reaped, and :meth:`wait`."""

    def __init__(self, argv: list[str], **popen: Any) -> None:
        """Start ``argv`` with ``subprocess.Popen(argv, **popen)`` (its exceptions raised
        as they are: ``FileNotFoundError``, ``PermissionError``...)."""
        self._loop = asyncio.get_running_loop()
        self._popen = subprocess.Popen(argv, **popen)  # noqa: S603  # argv, never a shell
        self.pid = self._popen.pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = self._loop.create_future()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:
            # The child is ours and not reaped, so this does not happen; if it does, wait
            # for it the blocking way (it is being killed or is gone already).
            self._pidfd = -1
            self._reap(blocking=True)
            return
        self._loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        self._reap(blocking=False)

    def _reap(self, *, blocking: bool) -> None:
        try:
            pid, status = os.waitpid(self.pid, 0 if blocking else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the code is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return  # not yet (a spurious wake-up)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._popen.returncode = self.returncode  # Popen must not wait for it again
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        """The exit status once the child exits (negative: the signal that ended it)."""
        return await asyncio.shield(self._exited)
