"""The core of the command runner: spawn, supervise, kill, reap.

Every command goes through :class:`Execution`:

1. :func:`hybrid.process.argv.prepare` has checked the arguments synchronously (argv only,
   executable resolved on the scrubbed PATH, limits wrapped) so that mistakes raise where
   the call is written;
2. the worker's concurrency gate queues it until a slot is free;
3. it is spawned with ``subprocess.Popen`` (``vfork`` + ``exec``) in a new session (its own
   process group), with pipes the runner owns (see :mod:`hybrid.process.pipes`), on
   asyncio and uvloop alike (:mod:`hybrid.process.child`);
4. on exit, timeout or cancel the whole process group is signalled (TERM, a grace, KILL),
   the leader is reaped when its pidfd, watched by the loop, says it exited (no SIGCHLD
   handler is installed; only where the system has no pidfds does asyncio's subprocess
   support do it: its thread child watcher, or libuv on uvloop), leftover group members are
   killed (:func:`hybrid.procutil.group_alive` tells), and the pipes are closed even if an
   escaped grandchild still holds them;
5. what it left behind becomes a :class:`~hybrid.process.result.CommandResult`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hybrid._compat.asyncio import pidfd_available
from hybrid.eventloop import is_uvloop
from hybrid.log import gen_log
from hybrid.process.argv import Prepared
from hybrid.process.child import Child
from hybrid.process.errors import CommandError, CommandNotFound, describe
from hybrid.process.gate import Gate, gate_for_running_loop, gates
from hybrid.process.pipes import Feeder, Reader, close_fd, open_pipe
from hybrid.process.result import CommandResult, decode
from hybrid.procutil import group_alive

__all__ = [
    "Execution",
    "command_timeouts",
    "running_commands",
    "terminate_all",
]

# How long pipes may take to report EOF once the process group is gone.
_PIPE_LINGER = 0.5


# --- supervision ----------------------------------------------------------------------

_running: set[Execution] = set()
_cleanups: set[asyncio.Task[None]] = set()
#: Commands this process killed for running past their timeout (for metrics).
_timeouts = 0


def command_timeouts() -> int:
    """How many commands this process killed for running past their timeout."""
    return _timeouts


def running_commands() -> list[tuple[int, tuple[str, ...]]]:
    """``(pid, argv)`` of every command this process is running now (for status pages)."""
    return sorted((e.pid, e.prep.argv) for e in _running)


class Execution:
    """One command from spawn to reap; output goes to ``sink(stream_name, data)``."""

    def __init__(self, prep: Prepared, sink: Callable[[str, bytes], None]) -> None:
        self.prep = prep
        self.loop = asyncio.get_running_loop()
        self.sink = sink
        self.pid = 0
        self.readers: list[Reader] = []
        self.feeder: Feeder | None = None
        self.timed_out = False
        self.kill_grace = prep.kill_grace
        self.returncode: int | None = None
        self.started = 0.0
        self.duration = 0.0
        self._proc: Child | asyncio.subprocess.Process | None = None
        self._out_r = self._err_r = self._in_w = -1
        self._stop: asyncio.Future[None] = self.loop.create_future()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self._gate: Gate | None = None

    def __repr__(self) -> str:
        return f"<Execution pid={self.pid} {describe(self.prep.argv)}>"

    async def start(self) -> None:
        """Wait for a slot, then spawn. Raises :class:`CommandError` if it cannot start."""
        gate = gate_for_running_loop()
        await gate.acquire(self.prep.argv, self.prep.queue_timeout)
        self._gate = gate
        try:
            async with gate.spawn_lock:
                await self._spawn()
        except BaseException:
            self._gate = None
            gate.release()
            raise
        _running.add(self)

    async def _spawn(self) -> None:
        if pidfd_available():
            self._spawn_child()
            # Hold the spawn lock across one pass of the loop: commands started together
            # then spawn one per pass, and timers and I/O run between them.
            await asyncio.sleep(0)
        else:
            await self._spawn_asyncio()
        self.readers = [
            Reader(self.loop, self._out_r, "stdout", self.sink),
            Reader(self.loop, self._err_r, "stderr", self.sink),
        ]
        if self.prep.input is not None:
            self.feeder = Feeder(self.loop, self._in_w, self.prep.input)
        gen_log.debug("command %s started (pid %d)", describe(self.prep.argv), self.pid)

    def _spawn_child(self) -> None:
        """Start the command with ``subprocess.Popen`` and watch it through a pidfd
        (:mod:`hybrid.process.child`): the same fast spawn on asyncio and uvloop."""
        prep = self.prep
        with self._pipes() as (stdin, stdout, stderr):
            self.started = time.monotonic()
            self._proc = Child(
                prep.spawn_argv,
                executable=prep.executable,
                stdin=stdin if stdin >= 0 else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=prep.cwd,
                env=prep.env,
                close_fds=True,
                start_new_session=True,
                user=prep.user,
                group=prep.group,
                extra_groups=prep.extra_groups,
            )
        self.pid = self._proc.pid

    @contextmanager
    def _pipes(self) -> Iterator[tuple[int, int, int]]:
        """The child's ends of new stdin (-1 without ``input``), stdout and stderr pipes,
        for the spawn in the ``with`` block. The child's ends are closed after it (the
        child has its copies); the runner's ends are kept when the spawn succeeded, else
        closed, and a failed start raises :meth:`_start_error`'s exception."""
        out_r, out_w = open_pipe()
        err_r, err_w = open_pipe()
        in_r, in_w = open_pipe() if self.prep.input is not None else (-1, -1)
        try:
            yield in_r, out_w, err_w
        except BaseException as exc:
            for fd in (out_r, err_r, in_w):
                close_fd(fd)
            error = self._start_error(exc)
            if error is exc:
                raise
            raise error from exc
        finally:
            for fd in (out_w, err_w, in_r):
                if fd >= 0:
                    close_fd(fd)
        self._out_r, self._err_r, self._in_w = out_r, err_r, in_w

    def _start_error(self, exc: BaseException) -> BaseException:
        """What a failed start raises: ``exc`` as a :class:`CommandError` when it is an
        ``OSError``, else ``exc`` itself."""
        prep = self.prep
        if isinstance(exc, FileNotFoundError):
            return CommandNotFound(
                f"cannot start {describe(prep.argv)}: {exc.strerror}; install it or pass "
                "its full path",
                cmd=prep.argv,
            )
        if isinstance(exc, OSError):
            return CommandError(
                f"cannot start {describe(prep.argv)}: {exc}; check permissions, cwd= and "
                "user=/group=",
                cmd=prep.argv,
            )
        return exc

    async def _spawn_asyncio(self) -> None:
        """Start the command with asyncio's subprocess support (no pidfd on this system)."""
        prep = self.prep
        identity: dict[str, Any] = {
            name: value
            for name, value in (
                ("user", prep.user),
                ("group", prep.group),
                ("extra_groups", prep.extra_groups),
            )
            if value is not None
        }
        if identity and is_uvloop(self.loop):
            # uvloop's subprocess_exec (libuv's spawn) takes no user=/group=/extra_groups=.
            raise CommandError(
                f"cannot start {describe(prep.argv)} with {'=, '.join(identity)}=: this "
                "system has no pidfds (Linux 5.3+), and uvloop's own spawn cannot start a "
                "command as another user; serve with --loop asyncio",
                cmd=prep.argv,
            )
        with self._pipes() as (stdin, stdout, stderr):
            self.started = time.monotonic()
            # (uvloop shows executable= as argv[0]: the resolved path, not argv[0] as written.)
            self._proc = await asyncio.create_subprocess_exec(
                *prep.spawn_argv,
                executable=prep.executable,
                stdin=stdin if stdin >= 0 else asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=prep.cwd,
                env=prep.env,
                close_fds=True,
                start_new_session=True,
                **identity,
            )
        self.pid = self._proc.pid

    def cancel(self, kill_grace: float | None = None) -> None:
        """Ask for the command to be killed (TERM, grace, KILL); safe to call any time."""
        if kill_grace is not None:
            self.kill_grace = kill_grace
        if not self._stop.done():
            self._stop.set_result(None)

    def pause_output(self) -> None:
        for reader in self.readers:
            reader.pause()

    def resume_output(self) -> None:
        for reader in self.readers:
            reader.resume()

    async def supervise(self) -> None:
        """Wait for exit, the timeout or :meth:`cancel`; then kill, reap and close.

        If the awaiting task is itself cancelled (a client went away, a handler timed out),
        the cleanup continues in a background task: the command never outlives its caller
        unsupervised, and the caller is not held up by the kill grace.
        """
        assert self._proc is not None
        exit_task = self.loop.create_task(self._proc.wait())
        wakers: set[asyncio.Future[Any]] = {exit_task, self._stop}
        try:
            await asyncio.wait(
                wakers, timeout=self.prep.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            self._start_cleanup(exit_task)
            raise
        if not exit_task.done():
            self.timed_out = not self._stop.done()
            if self.timed_out:
                global _timeouts
                _timeouts += 1
                gen_log.info(
                    "command %s (pid %d) ran past its timeout of %ss; killing its process group",
                    describe(self.prep.argv),
                    self.pid,
                    self.prep.timeout,
                )
        # Shielded: cancelling the caller from here on must not interrupt the kill/reap.
        await asyncio.shield(self._start_cleanup(exit_task))

    def _start_cleanup(self, exit_task: asyncio.Task[int]) -> asyncio.Task[None]:
        task = self.loop.create_task(self._cleanup(exit_task))
        _cleanups.add(task)
        task.add_done_callback(_cleanups.discard)
        return task

    async def _cleanup(self, exit_task: asyncio.Task[int]) -> None:
        try:
            if not exit_task.done():
                await self._terminate(exit_task)
            self.returncode = exit_task.result()
            self.duration = time.monotonic() - self.started
            await self._kill_leftovers()
            await self._close_pipes()
        finally:
            self._release()

    async def _terminate(self, exit_task: asyncio.Task[int]) -> None:
        self._signal(signal.SIGTERM)
        done, _ = await asyncio.wait({exit_task}, timeout=self.kill_grace)
        if not done:
            gen_log.warning(
                "command %s (pid %d) ignored SIGTERM for %.1fs; sending SIGKILL",
                describe(self.prep.argv),
                self.pid,
                self.kill_grace,
            )
            self._signal(signal.SIGKILL)
            await exit_task

    async def _kill_leftovers(self) -> None:
        """Kill what the command left running in its process group (``cmd &``)."""
        if not group_alive(self.pid):
            return
        gen_log.debug(
            "command %s (pid %d) left processes behind; terminating them",
            describe(self.prep.argv),
            self.pid,
        )
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        while group_alive(self.pid):
            if time.monotonic() >= deadline:
                self._signal(signal.SIGKILL)
                break
            await asyncio.sleep(0.02)

    async def _close_pipes(self) -> None:
        pending = [r.closed for r in self.readers if not r.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=_PIPE_LINGER)
        for reader in self.readers:
            reader.drain_and_close()
        if self.feeder is not None:
            self.feeder.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _release(self) -> None:
        for reader in self.readers:
            reader.close()
        if self.feeder is not None:
            self.feeder.close()
        _running.discard(self)
        if self._gate is not None:
            self._gate.release()
            self._gate = None
        if not self.finished.done():
            self.finished.set_result(None)

    def result(
        self, stdout: bytes, stderr: bytes, truncated: tuple[bool, bool]
    ) -> CommandResult[Any]:
        prep = self.prep
        return CommandResult(
            args=prep.argv,
            returncode=self.returncode if self.returncode is not None else -signal.SIGKILL,
            stdout=decode(stdout, prep.encoding, prep.errors),
            stderr=decode(stderr, prep.encoding, prep.errors),
            timed_out=self.timed_out,
            duration=self.duration,
            pid=self.pid,
            stdout_truncated=truncated[0],
            stderr_truncated=truncated[1],
        )


async def terminate_all(timeout: float = 0.0, *, kill_grace: float = 1.0) -> int:
    """Stop this worker's commands for a graceful shutdown; return how many were killed.

    Waits up to ``timeout`` seconds for running commands to finish on their own, then
    sends the rest SIGTERM, and SIGKILL after ``kill_grace``; waits until they are reaped.
    Commands still queued for a slot, and any started afterwards on this loop, fail with
    :class:`CommandBusy`: the worker is going away.
    """
    loop = asyncio.get_running_loop()
    gate = gates.find(loop)
    if gate is not None:
        gate.close()
    mine = [e for e in _running if e.loop is loop]
    if mine and timeout > 0:
        await asyncio.wait([e.finished for e in mine], timeout=timeout)
    left = [e for e in mine if not e.finished.done()]
    if not left:
        return 0
    gen_log.warning("%d command(s) still running at shutdown; terminating them", len(left))
    for execution in left:
        execution.cancel(kill_grace)
    await asyncio.wait([e.finished for e in left], timeout=kill_grace + 2 * _PIPE_LINGER + 1)
    return len(left)
