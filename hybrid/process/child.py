"""A command's process: started with ``subprocess.Popen``, its exit watched through a pidfd.

asyncio's ``create_subprocess_exec`` is loop-specific: on asyncio it is CPython's
``subprocess.Popen`` (``vfork`` + ``exec`` on Linux) reaped by a child watcher; on uvloop it
is libuv's ``uv_spawn``, which ``fork``\\ s the whole worker (a hundred megabytes of page
tables: measured, ``true`` per request ran five times slower) and refuses ``user=`` and
``group=``. :class:`Child` is the same on every loop: ``Popen`` starts the command, and the
loop watches a pidfd of the child, which becomes readable when it exits; then it is reaped
with ``waitpid(pid, WNOHANG)``. No SIGCHLD handler, no watcher thread, no ``waitpid`` of
anyone else's children.

``Popen`` runs on the loop thread, as asyncio's own subprocess transport does: ``vfork`` +
``exec`` returns in well under a millisecond, since the parent is suspended only until the
child has exec'd. (With ``user=``/``group=`` CPython forks instead of vforking, which costs
more but is the same on both loops.)

Needs ``os.pidfd_open`` (Linux 5.3+); :func:`hybrid._compat.asyncio.pidfd_available` says
whether this system has it (the runner uses asyncio's subprocess support otherwise).

Why not a library: asyncio has no loop-independent spawn, and a pidfd is what its own
``PidfdChildWatcher`` uses; this is that watcher without the asyncio transport around it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

__all__ = ["Child"]

# How often a child is polled for on the rare path where its pidfd could not be opened.
_POLL_INTERVAL = 0.05


class Child:
    """A started command: its ``pid``, ``returncode`` once reaped, and :meth:`wait`.

    It leads a process group of its own (``start_new_session=True``): the runner signals
    the group through ``os.killpg(pid, ...)``, as it does on the fallback path.
    """

    def __init__(self, argv: list[str], **popen: Any) -> None:
        """Start ``argv`` with ``subprocess.Popen(argv, **popen)`` (its exceptions raised
        as they are: ``FileNotFoundError``, ``PermissionError``...)."""
        self._loop = asyncio.get_running_loop()
        # On the loop thread: vfork + exec, sub-millisecond (see the module docstring).
        self._popen = subprocess.Popen(argv, **popen)  # noqa: S603  # argv, never a shell
        self.pid = self._popen.pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:
            # Out of file descriptors (EMFILE) just now: the child is ours and not reaped,
            # so nothing else fails. Poll for it rather than block the loop in waitpid.
            self._loop.call_soon(self._poll)
            return
        self._loop.add_reader(self._pidfd, self._reap)

    def _poll(self) -> None:
        if not self._reap():
            self._loop.call_later(_POLL_INTERVAL, self._poll)

    def _reap(self) -> bool:
        """Reap the child if it has exited; True once it has been."""
        if self.returncode is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the code is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return False  # not yet (a spurious wake-up)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._popen.returncode = self.returncode  # Popen must not wait for it again
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if not self._exited.done():
            self._exited.set_result(self.returncode)
        return True

    async def wait(self) -> int:
        """The exit status once the child exits (negative: the signal that ended it)."""
        return await asyncio.shield(self._exited)
