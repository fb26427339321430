"""The per-worker concurrency gate: at most N commands at once, the rest wait in line."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence

from hybrid.process.errors import CommandBusy, describe

__all__ = ["DEFAULT_MAX_CONCURRENT", "Gate", "gate_for_running_loop", "gates",
           "get_max_concurrent", "set_max_concurrent"]

#: Commands one worker runs at once; more wait in line (see :func:`set_max_concurrent`).
DEFAULT_MAX_CONCURRENT = 16

_max_concurrent = DEFAULT_MAX_CONCURRENT


class Gate:
    """A FIFO counting gate whose size is read live from :data:`_max_concurrent`.

    One per event loop (a worker has one; pytest-tornado makes one per test), because
    asyncio primitives must not be shared between loops.
    """

    def __init__(self) -> None:
        self.active = 0
        self.closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Spawning (fork/exec and setting up the pipes, ~1 ms, up to a few) blocks the
        # loop. One spawn per loop iteration keeps 200 simultaneous commands from freezing
        # the worker for half a second: timers and I/O run between two spawns.
        self.spawn_lock = asyncio.Lock()

    async def acquire(self, argv: Sequence[str], queue_timeout: float | None) -> None:
        if self.closed:
            raise CommandBusy(
                f"command {describe(argv)} refused: the worker is shutting down",
                cmd=argv, queue_timeout=0.0,
            )
        if self.active < _max_concurrent and not self._waiters:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), queue_timeout)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise CommandBusy(
                    f"command {describe(argv)} waited {queue_timeout}s for one of the "
                    f"{_max_concurrent} command slots of this worker; raise queue_timeout=, "
                    "or the limit with set_max_concurrent()",
                    cmd=argv, queue_timeout=queue_timeout or 0.0,
                ) from None
            raise

    def release(self) -> None:
        self.active -= 1
        self.wake()

    def wake(self) -> None:
        while self._waiters and self.active < _max_concurrent:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            if self.closed:
                waiter.set_exception(
                    CommandBusy("command refused: the worker is shutting down", queue_timeout=0.0)
                )
                continue
            self.active += 1
            waiter.set_result(None)


gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Gate] = (
    weakref.WeakKeyDictionary()
)


def gate_for_running_loop() -> Gate:
    loop = asyncio.get_running_loop()
    gate = gates.get(loop)
    if gate is None:
        gate = gates[loop] = Gate()
    return gate


def set_max_concurrent(limit: int) -> None:
    """Let each worker run at most ``limit`` commands at once; the rest wait in line.

    A process-wide setting (one worker = one process = one loop), applied immediately.
    """
    global _max_concurrent
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"the command concurrency limit must be an int >= 1, not {limit!r}")
    _max_concurrent = limit
    try:
        gate_for_running_loop().wake()
    except RuntimeError:  # no running loop: the new limit applies at the next acquire
        pass


def get_max_concurrent() -> int:
    """The current per-worker concurrency limit."""
    return _max_concurrent
