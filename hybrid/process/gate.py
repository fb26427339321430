"""The per-worker concurrency gate: at most N commands at once, the rest wait in line.

The worker builds its gate from ``Config.max_commands`` at boot and installs it for its
loop (:func:`install_command_gate`); a loop without one (tests, scripts) gets a gate of
:data:`DEFAULT_MAX_CONCURRENT` on its first command. The line itself (FIFO, a slot given
up just as it was granted passed on, the queue timeout) is :class:`hybrid.slots.Slots`'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hybrid.process.errors import CommandBusy, describe
from hybrid.slots import PerLoop, Slots

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "Gate",
    "gate_for_running_loop",
    "gates",
    "get_max_concurrent",
    "install_command_gate",
    "set_max_concurrent",
]

#: Commands one worker runs at once unless ``--max-commands`` says otherwise.
DEFAULT_MAX_CONCURRENT = 16


def _shutting_down() -> BaseException:
    return CommandBusy("command refused: the worker is shutting down", queue_timeout=0.0)


class Gate:
    """A FIFO counting gate of ``limit`` command slots, for one event loop.

    One per event loop (a worker has one; pytest-tornado makes one per test), because
    asyncio primitives must not be shared between loops.
    """

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT) -> None:
        self.slots = Slots(_checked_limit(limit))
        # Spawning (fork/exec and setting up the pipes, ~1 ms, up to a few) blocks the
        # loop. One spawn per loop iteration keeps 200 simultaneous commands from freezing
        # the worker for half a second: timers and I/O run between two spawns.
        self.spawn_lock = asyncio.Lock()

    @property
    def active(self) -> int:
        """Commands holding a slot right now."""
        return self.slots.held

    @property
    def closed(self) -> bool:
        return self.slots.closed

    async def acquire(self, argv: Sequence[str], queue_timeout: float | None) -> None:
        """Take a slot for ``argv``, waiting in line up to ``queue_timeout`` seconds."""
        if self.slots.closed:
            raise CommandBusy(
                f"command {describe(argv)} refused: the worker is shutting down",
                cmd=argv,
                queue_timeout=0.0,
            )
        try:
            await self.slots.acquire(queue_timeout)
        except TimeoutError:
            raise CommandBusy(
                f"command {describe(argv)} waited {queue_timeout}s for one of the "
                f"{self.slots.limit} command slots of this worker; raise queue_timeout=, "
                "or the limit with set_max_concurrent()",
                cmd=argv,
                queue_timeout=queue_timeout or 0.0,
            ) from None

    def release(self) -> None:
        self.slots.release()

    def close(self) -> None:
        """Refuse new commands; those waiting in line fail with :class:`CommandBusy`."""
        self.slots.close(_shutting_down)


#: Each loop's gate: the worker's (installed at boot), else a default one made on demand.
gates: PerLoop[Gate] = PerLoop(Gate)


def _checked_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"the command concurrency limit must be an int >= 1, not {limit!r}")
    return limit


def install_command_gate(gate: Gate) -> Gate:
    """Make ``gate`` the running loop's (the worker's, from ``Config.max_commands``)."""
    return gates.install(gate)


def gate_for_running_loop() -> Gate:
    return gates.get()


def set_max_concurrent(limit: int) -> None:
    """Let this worker run at most ``limit`` commands at once; the rest wait in line.

    Call it on the worker's loop (a handler, a startup hook): the limit is the running
    loop's gate's, applied immediately. ``--max-commands`` sets it at boot.
    """
    _checked_limit(limit)
    try:
        gate = gates.get()
    except RuntimeError:
        raise RuntimeError(
            "set_max_concurrent() needs the worker's running event loop (at boot the "
            "worker takes --max-commands / Config.max_commands)"
        ) from None
    gate.slots.limit = limit


def get_max_concurrent() -> int:
    """The running loop's concurrency limit (the default outside a loop, or before the
    loop's first command)."""
    gate = gates.find()
    return gate.slots.limit if gate is not None else DEFAULT_MAX_CONCURRENT
