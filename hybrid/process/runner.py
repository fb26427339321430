"""The core of the command runner: prepare, spawn, supervise, kill, reap.

Every command goes through :class:`Execution`:

1. :func:`prepare` checks the arguments synchronously (argv only, executable resolved on the
   scrubbed PATH, limits wrapped) so that mistakes raise where the call is written;
2. the worker's concurrency gate queues it until a slot is free;
3. it is spawned with ``asyncio.create_subprocess_exec`` in a new session (its own process
   group), with pipes the runner owns (see :mod:`hybrid.process.pipes`);
4. on exit, timeout or cancel the whole process group is signalled (TERM, a grace, KILL),
   the leader is reaped by asyncio's child watcher (no SIGCHLD handler is installed: a
   pidfd watched by the loop, see :func:`hybrid._compat.asyncio.use_pidfd_watcher`), leftover
   group members are killed, and the pipes are closed even if an escaped grandchild
   still holds them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, AnyStr, Generic

from hybrid._compat.asyncio import use_pidfd_watcher
from hybrid.log import gen_log
from hybrid.process.errors import (
    CommandError,
    CommandFailed,
    CommandNotFound,
    CommandTimeout,
    describe,
)
from hybrid.process.gate import (
    DEFAULT_MAX_CONCURRENT,
    Gate,
    gate_for_running_loop,
    gates,
    get_max_concurrent,
    set_max_concurrent,
)
from hybrid.process.limits import Limits, safe_environ, wrap_argv
from hybrid.process.pipes import Feeder, Reader, close_fd, open_pipe

__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_OUTPUT",
    "CommandResult",
    "Execution",
    "Prepared",
    "command_timeouts",
    "get_max_concurrent",
    "prepare",
    "running_commands",
    "set_max_concurrent",
    "terminate_all",
]

#: Bytes kept per stream (stdout, stderr) unless ``max_output=`` says otherwise.
DEFAULT_MAX_OUTPUT = 1 << 20
#: Seconds between SIGTERM and SIGKILL.
DEFAULT_KILL_GRACE = 2.0
# How long pipes may take to report EOF once the process group is gone.
_PIPE_LINGER = 0.5

Command = Sequence["str | os.PathLike[str]"] | str


@dataclass(frozen=True)
class CommandResult(Generic[AnyStr]):
    """What a finished command left behind, like :class:`subprocess.CompletedProcess`.

    ``returncode`` is negative when a signal ended the command (``-9`` after a KILL).
    ``stdout``/``stderr`` are bytes, or str when ``text=True``/``encoding=`` was given;
    each holds at most ``max_output`` bytes of output, and ``*_truncated`` says whether
    more was produced (and discarded, so the child never blocked on a full pipe).
    """

    args: tuple[str, ...]
    returncode: int
    stdout: AnyStr
    stderr: AnyStr
    timed_out: bool
    duration: float
    pid: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out

    def check_returncode(self) -> None:
        """Raise :class:`CommandTimeout` or :class:`CommandFailed` unless :attr:`ok`."""
        if self.timed_out:
            raise CommandTimeout(
                f"command {describe(self.args)} timed out after {self.duration:.1f}s and was "
                "killed; raise timeout= or make the command faster",
                result=self,
                timeout=self.duration,
            )
        if self.returncode != 0:
            raise CommandFailed(
                f"command {describe(self.args)} exited with status {self.returncode}; "
                "see .stderr of this exception, or pass check=False to inspect the result",
                result=self,
            )


# --- preparation ----------------------------------------------------------------------


@dataclass
class Prepared:
    """A validated, spawn-ready command (made by :func:`prepare`)."""

    argv: tuple[str, ...]
    spawn_argv: list[str]
    executable: str | None
    env: dict[str, str]
    cwd: str | None
    input: bytes | None
    timeout: float | None
    kill_grace: float
    max_output: int | None
    encoding: str | None
    errors: str
    queue_timeout: float | None
    user: str | int | None = None
    group: str | int | None = None
    extra_groups: Sequence[str | int] | None = None


def normalize_argv(args: Command, shell: bool) -> list[str]:
    """Turn ``args`` into an argv; a shell appears only when ``shell=True`` names it."""
    if shell:
        if not isinstance(args, str):
            raise TypeError(
                "shell=True takes one command line string, e.g. 'ls -l | wc -l'; "
                "to run a list of arguments, drop shell=True"
            )
        return ["/bin/sh", "-c", args]
    if isinstance(args, (str, bytes)):
        raise TypeError(
            f"args must be a list like ['ls', '-l'], not the string {args!r}: hybrid never "
            "splits a string into words; pass shell=True only if you need a shell"
        )
    argv: list[str] = []
    for arg in args:
        value = os.fspath(arg)
        if not isinstance(value, str):
            raise TypeError(f"arguments must be str or str paths, not {value!r}; decode it")
        if "\0" in value:
            raise ValueError(f"argument {value!r} contains a NUL byte, which exec cannot pass")
        argv.append(value)
    if not argv:
        raise ValueError("args is empty; pass the command and its arguments, e.g. ['uptime']")
    return argv


def resolve_executable(program: str, path: str, cwd: str | None, argv: Sequence[str]) -> str:
    """The absolute path ``program`` will exec, or :class:`CommandNotFound`.

    Resolved here, before anything is spawned, so a missing executable raises at the call
    (the callback API's contract too) and the PATH searched is the child's scrubbed one.
    """
    if os.sep in program:
        candidate = program if os.path.isabs(program) or cwd is None else os.path.join(cwd, program)
        found = candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which(program, path=path)
    if found is None:
        raise CommandNotFound(
            f"command not found: {program!r} (searched PATH={path!r}); install it, pass its "
            "full path, or add its directory to PATH with env={'PATH': ...}",
            cmd=argv,
        )
    return os.path.abspath(found)


def prepare(
    args: Command,
    *,
    timeout: float | None,
    input: bytes | str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    text: bool = False,
    encoding: str | None = None,
    errors: str = "replace",
    shell: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    limits: Limits | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    queue_timeout: float | None = None,
    user: str | int | None = None,
    group: str | int | None = None,
    extra_groups: Sequence[str | int] | None = None,
) -> Prepared:
    """Validate everything that can be validated without spawning (see :func:`run_command`)."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, or None for no limit, not {timeout!r}")
    if max_output is not None and max_output < 0:
        raise ValueError(f"max_output must be >= 0 bytes, or None, not {max_output!r}")
    if kill_grace < 0:
        raise ValueError(f"kill_grace must be >= 0 seconds, not {kill_grace!r}")
    argv = normalize_argv(args, shell)
    child_env = safe_environ(env)
    cwd_str = os.fspath(cwd) if cwd is not None else None
    if cwd_str is not None and not os.path.isdir(cwd_str):
        raise CommandError(f"cwd {cwd_str!r} is not a directory; create it or fix cwd=", cmd=argv)
    executable = resolve_executable(argv[0], child_env["PATH"], cwd_str, argv)
    if text and encoding is None:
        encoding = "utf-8"
    if isinstance(input, str):
        if encoding is None:
            raise TypeError("input= is a str but the command runs in bytes mode; pass "
                            "text=True (or encoding=), or encode the input yourself")
        data: bytes | None = input.encode(encoding)
    else:
        data = input
    if limits is not None:
        spawn_argv, spawn_exe = wrap_argv(limits, executable, argv), None
    else:
        spawn_argv, spawn_exe = argv, executable
    return Prepared(
        argv=tuple(argv), spawn_argv=spawn_argv, executable=spawn_exe, env=child_env,
        cwd=cwd_str, input=data, timeout=timeout, kill_grace=kill_grace,
        max_output=max_output, encoding=encoding, errors=errors,
        queue_timeout=queue_timeout, user=user, group=group, extra_groups=extra_groups,
    )


def decode(data: bytes, encoding: str | None, errors: str) -> Any:
    """Bytes as they are, or text with universal newlines as ``subprocess`` text mode gives."""
    if encoding is None:
        return data
    return data.decode(encoding, errors).replace("\r\n", "\n").replace("\r", "\n")


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


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    # killpg(0) also succeeds for zombies an init that does not reap keeps around: look.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


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
        self._proc: asyncio.subprocess.Process | None = None
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
        prep = self.prep
        use_pidfd_watcher()
        out_r, out_w = open_pipe()
        err_r, err_w = open_pipe()
        in_r, in_w = open_pipe() if prep.input is not None else (-1, -1)
        child_fds = [out_w, err_w, in_r]
        self.started = time.monotonic()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *prep.spawn_argv,
                executable=prep.executable,
                stdin=in_r if in_r >= 0 else asyncio.subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                cwd=prep.cwd,
                env=prep.env,
                close_fds=True,
                start_new_session=True,
                user=prep.user,
                group=prep.group,
                extra_groups=prep.extra_groups,
            )
        except BaseException as exc:
            for fd in (out_r, err_r, in_w):
                close_fd(fd)
            if isinstance(exc, FileNotFoundError):
                raise CommandNotFound(
                    f"cannot start {describe(prep.argv)}: {exc.strerror}; install it or pass "
                    "its full path", cmd=prep.argv,
                ) from exc
            if isinstance(exc, OSError):
                raise CommandError(
                    f"cannot start {describe(prep.argv)}: {exc}; check permissions, cwd= and "
                    "user=/group=", cmd=prep.argv,
                ) from exc
            raise
        finally:
            for fd in child_fds:
                if fd >= 0:
                    close_fd(fd)
        self.pid = self._proc.pid
        self.readers = [
            Reader(self.loop, out_r, "stdout", self.sink),
            Reader(self.loop, err_r, "stderr", self.sink),
        ]
        if prep.input is not None:
            self.feeder = Feeder(self.loop, in_w, prep.input)
        gen_log.debug("command %s started (pid %d)", describe(prep.argv), self.pid)

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
            await asyncio.wait(wakers, timeout=self.prep.timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._start_cleanup(exit_task)
            raise
        if not exit_task.done():
            self.timed_out = not self._stop.done()
            if self.timed_out:
                global _timeouts
                _timeouts += 1
                gen_log.info(
                    "command %s (pid %d) ran past its timeout of %ss; killing its process "
                    "group", describe(self.prep.argv), self.pid, self.prep.timeout,
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
                describe(self.prep.argv), self.pid, self.kill_grace,
            )
            self._signal(signal.SIGKILL)
            await exit_task

    async def _kill_leftovers(self) -> None:
        """Kill what the command left running in its process group (``cmd &``)."""
        if not _group_alive(self.pid):
            return
        gen_log.debug("command %s (pid %d) left processes behind; terminating them",
                      describe(self.prep.argv), self.pid)
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        while _group_alive(self.pid):
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
    gate = gates.get(loop)
    if gate is not None:
        gate.closed = True
        gate.wake()
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
