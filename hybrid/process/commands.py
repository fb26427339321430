"""The public coroutine API: :func:`run_command` and :func:`stream_command`."""

from __future__ import annotations

import asyncio
import codecs
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, AnyStr, Generic, Literal, Self, TypedDict, Unpack, overload

from hybrid.process.argv import DEFAULT_MAX_OUTPUT, Command, Prepared, prepare
from hybrid.process.limits import Limits
from hybrid.process.result import CommandResult
from hybrid.process.runner import Execution

__all__ = ["CommandStream", "OutputEvent", "run_command", "stream_command"]

# A streaming consumer that falls this far behind pauses the pipes (the child then blocks
# on write); reading resumes once it has caught up to the low mark.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
#: Longest run of events a stream hands out without letting the event loop run: a chunk of
#: 64 KiB from ``yes`` is 32,768 lines, each returned without suspending, and a consumer
#: whose writes complete at once (a fast client) never suspends either. Without a turn for
#: the loop every few milliseconds, every other request of the worker waited seconds.
_MAX_RUN = 0.002
#: Bytes of a chunk split into events at once (a 64 KiB read of ``yes`` took 35 ms).
_SLICE = 2048
#: Longest line :func:`stream_command` holds back waiting for its newline.
DEFAULT_MAX_LINE = 64 * 1024


class Options(TypedDict, total=False):
    """Keyword options shared by :func:`run_command` and :func:`stream_command`."""

    input: bytes | str | None
    cwd: str | os.PathLike[str] | None
    env: Mapping[str, str] | None
    errors: str
    shell: bool
    limits: Limits | None
    kill_grace: float
    queue_timeout: float | None
    user: str | int | None
    group: str | int | None
    extra_groups: Sequence[str | int] | None


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and discards (but counts) the rest."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, data: bytes) -> None:
        if self.limit is None:
            self.data += data
            return
        room = self.limit - len(self.data)
        if room > 0:
            self.data += data[:room]
        if len(data) > room:
            self.truncated = True


async def execute(
    prep: Prepared, on_spawn: Callable[[Execution], None] | None = None
) -> CommandResult[Any]:
    """Run a prepared command to the end, capturing capped output."""
    captures = {"stdout": _Capture(prep.max_output), "stderr": _Capture(prep.max_output)}
    execution = Execution(prep, lambda name, data: captures[name].add(data))
    await execution.start()
    if on_spawn is not None:
        on_spawn(execution)
    await execution.supervise()
    out, err = captures["stdout"], captures["stderr"]
    return execution.result(bytes(out.data), bytes(err.data), (out.truncated, err.truncated))


@overload
async def run_command(
    args: Command,
    *,
    timeout: float | None,
    text: Literal[False] = False,
    encoding: None = None,
    check: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    **options: Unpack[Options],
) -> CommandResult[bytes]: ...
@overload
async def run_command(
    args: Command,
    *,
    timeout: float | None,
    text: Literal[True],
    encoding: str | None = None,
    check: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    **options: Unpack[Options],
) -> CommandResult[str]: ...
@overload
async def run_command(
    args: Command,
    *,
    timeout: float | None,
    text: bool = False,
    encoding: str,
    check: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    **options: Unpack[Options],
) -> CommandResult[str]: ...
@overload
async def run_command(
    args: Command,
    *,
    timeout: float | None,
    text: bool = False,
    encoding: str | None = None,
    check: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    **options: Unpack[Options],
) -> CommandResult[Any]: ...
async def run_command(
    args: Command,
    *,
    timeout: float | None,
    text: bool = False,
    encoding: str | None = None,
    check: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    **options: Unpack[Options],
) -> CommandResult[Any]:
    """Run ``args`` without blocking the loop and return its :class:`CommandResult`.

    ``args`` is an argv list; a string runs through ``/bin/sh -c`` only with
    ``shell=True``. ``timeout`` is required (seconds, or None for no limit, on purpose: a
    request must not wait forever by accident); at the timeout the command's whole process
    group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds, and the result says
    ``timed_out``. Options, as :func:`subprocess.run` users know them, plus safety:

    - ``input`` (bytes, or str in text mode), ``cwd``; stdin is /dev/null otherwise;
    - ``text=True`` / ``encoding=`` decode output (utf-8, ``errors="replace"`` by default,
      because a capped stream can end in the middle of a character);
    - ``check=True`` raises :class:`CommandFailed` / :class:`CommandTimeout` carrying the
      result;
    - ``env`` is *added to* a scrubbed environment (PATH, HOME, LANG, LC_*, TZ, ...): the
      worker's secrets never reach a command unless passed here;
    - ``max_output`` bytes kept per stream (None: unlimited), the rest drained and flagged;
    - ``limits=Limits(cpu_seconds=..., address_space=..., open_files=...)``;
    - ``user``/``group``/``extra_groups`` to run as (the worker must be root);
    - ``queue_timeout``: how long to wait for a slot of the worker's concurrency limit
      before :class:`CommandBusy` (default: wait).

    The executable is resolved before anything starts: a missing one raises
    :class:`CommandNotFound` right here.
    """
    prep = prepare(
        args, timeout=timeout, text=text, encoding=encoding, max_output=max_output, **options
    )
    result = await execute(prep)
    if check:
        result.check_returncode()
    return result


@dataclass(frozen=True)
class OutputEvent(Generic[AnyStr]):
    """One piece of a running command's output: ``stream`` is "stdout" or "stderr"."""

    stream: str
    data: AnyStr


class _Splitter:
    """Turns raw pipe chunks into event payloads: chunks or lines, bytes or text."""

    def __init__(self, lines: bool, max_line: int, encoding: str | None, errors: str) -> None:
        self.lines = lines
        self.max_line = max_line
        self.buffer = b""
        self.decoder = (
            codecs.getincrementaldecoder(encoding)(errors) if encoding is not None else None
        )

    def feed(self, data: bytes) -> list[Any]:
        if not self.lines:
            return self._decode([data])
        buffer = self.buffer + data if self.buffer else data
        pieces: list[bytes] = []
        start = 0
        while True:  # slices from a moving start: copying the rest per line was quadratic
            end = buffer.find(b"\n", start, start + self.max_line)
            if end >= 0:
                cut = end + 1
            elif len(buffer) - start >= self.max_line:
                cut = start + self.max_line
            else:
                break
            pieces.append(buffer[start:cut])
            start = cut
        self.buffer = buffer[start:]
        return self._decode(pieces)

    def flush(self) -> list[Any]:
        rest, self.buffer = self.buffer, b""
        out = self._decode([rest] if rest else [])
        if self.decoder is not None:
            tail = self.decoder.decode(b"", final=True)
            if tail:
                out.append(tail)
        return out

    def _decode(self, pieces: list[bytes]) -> list[Any]:
        if self.decoder is None:
            return [p for p in pieces if p]
        texts = [self.decoder.decode(p) for p in pieces]
        return [t for t in texts if t]


class CommandStream(Generic[AnyStr]):
    """A running command whose output is consumed as it comes (see :func:`stream_command`).

    Use it as ``async with``; leaving the block kills the command if it is still running
    (that is how a handler stops a command when its client disconnects). After the
    iteration ends, :attr:`result` holds the exit status (its stdout/stderr are empty:
    the output went to the iterator).
    """

    def __init__(self, prep: Prepared, lines: bool, max_line: int) -> None:
        self._prep = prep
        self._splitters = {
            name: _Splitter(lines, max_line, prep.encoding, prep.errors)
            for name in ("stdout", "stderr")
        }
        self._chunks: deque[tuple[str, bytes | memoryview]] = deque()
        self._events: deque[OutputEvent[AnyStr]] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._execution: Execution | None = None
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self._flushed = False
        self._run_started = 0.0

    @property
    def pid(self) -> int:
        """The command's pid (and process group id); 0 before it started."""
        return self._execution.pid if self._execution is not None else 0

    @property
    def result(self) -> CommandResult[AnyStr]:
        """Exit status of the finished command; RuntimeError while it still runs."""
        if self._execution is None or not self._done:
            raise RuntimeError("the command is still running; read the stream to its end first")
        result: CommandResult[AnyStr] = self._execution.result(b"", b"", (False, False))
        return result

    def ready(self) -> bool:
        """Whether the next event is already here (the iteration would not wait for the
        command): a consumer can batch its writes and flush when this turns False."""
        return bool(self._events or self._chunks)

    def cancel(self) -> None:
        """Kill the command (TERM, grace, KILL); the iteration then ends. Not a coroutine."""
        if self._execution is not None:
            self._execution.cancel()

    async def __aenter__(self) -> Self:
        execution = Execution(self._prep, self._on_output)
        await execution.start()
        self._execution = execution
        self._task = asyncio.get_running_loop().create_task(self._supervise(execution))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        if not self._task.done():
            self.cancel()
        await asyncio.shield(self._task)

    async def _supervise(self, execution: Execution) -> None:
        try:
            await execution.supervise()
        finally:
            self._done = True
            self._wake()

    def _on_output(self, name: str, data: bytes) -> None:
        self._chunks.append((name, data))
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and self._execution is not None:
            self._execution.pause_output()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> OutputEvent[AnyStr]:
        if self._execution is None:
            raise RuntimeError("use the stream inside 'async with stream_command(...) as s:'")
        while not self._events:
            if self._chunks:
                name, data = self._chunks.popleft()
                if len(data) > _SLICE:  # bounded work per step (see _MAX_RUN)
                    self._chunks.appendleft((name, memoryview(data)[_SLICE:]))
                    data = data[:_SLICE]
                self._buffered -= len(data)
                if self._buffered < _LOW_WATER:
                    self._execution.resume_output()
                self._push(name, self._splitters[name].feed(bytes(data)))
            elif self._done:
                if self._flushed:
                    raise StopAsyncIteration
                self._flushed = True
                for name, splitter in self._splitters.items():
                    self._push(name, splitter.flush())
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
                self._run_started = time.monotonic()
        now = time.monotonic()
        if now - self._run_started > _MAX_RUN:
            await asyncio.sleep(0)  # let the loop run: other requests, timers, the pipes
            self._run_started = time.monotonic()
        return self._events.popleft()

    def _push(self, name: str, payloads: list[Any]) -> None:
        self._events.extend(OutputEvent(name, payload) for payload in payloads)


@overload
def stream_command(
    args: Command,
    *,
    timeout: float | None,
    lines: bool = False,
    max_line: int = DEFAULT_MAX_LINE,
    text: Literal[False] = False,
    encoding: None = None,
    **options: Unpack[Options],
) -> CommandStream[bytes]: ...
@overload
def stream_command(
    args: Command,
    *,
    timeout: float | None,
    lines: bool = False,
    max_line: int = DEFAULT_MAX_LINE,
    text: Literal[True],
    encoding: str | None = None,
    **options: Unpack[Options],
) -> CommandStream[str]: ...
@overload
def stream_command(
    args: Command,
    *,
    timeout: float | None,
    lines: bool = False,
    max_line: int = DEFAULT_MAX_LINE,
    text: bool = False,
    encoding: str,
    **options: Unpack[Options],
) -> CommandStream[str]: ...
@overload
def stream_command(
    args: Command,
    *,
    timeout: float | None,
    lines: bool = False,
    max_line: int = DEFAULT_MAX_LINE,
    text: bool = False,
    encoding: str | None = None,
    **options: Unpack[Options],
) -> CommandStream[Any]: ...
def stream_command(
    args: Command,
    *,
    timeout: float | None,
    lines: bool = False,
    max_line: int = DEFAULT_MAX_LINE,
    text: bool = False,
    encoding: str | None = None,
    **options: Unpack[Options],
) -> CommandStream[Any]:
    """Start ``args`` and iterate over its output as it is produced::

        async with stream_command(["ping", "-c", "3", host], timeout=10, text=True) as s:
            async for event in s:
                print(event.stream, event.data)
        print(s.result.returncode)

    Events are raw chunks, or lines (``lines=True``; a line longer than ``max_line`` bytes
    is split), bytes or text (``text=True``/``encoding=``), in the order they were read.
    Memory stays bounded: when the consumer falls behind, reading pauses and the command
    blocks on its full pipe. Options, timeout and kill behaviour as for
    :func:`run_command`; validation (and :class:`CommandNotFound`) happens in this call.
    """
    if max_line < 1:
        raise ValueError(f"max_line must be >= 1 byte, not {max_line!r}")
    prep = prepare(args, timeout=timeout, text=text, encoding=encoding, max_output=None, **options)
    return CommandStream(prep, lines, max_line)
