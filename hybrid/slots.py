"""Bounded slots with a fair line, and state kept per event loop.

Three things in a worker hand out a scarce resource to coroutines of its loop: the
database threads (:mod:`hybrid.lanes`), the native aiomysql connections
(:mod:`hybrid.db.pool`) and the command slots (:mod:`hybrid.process.gate`). Each needs the
same guarantees, each easy to get subtly wrong when written by hand, so
they live here once:

* :class:`Slots`: at most ``limit`` holders; the others wait in line, first come first
  served (a newcomer never overtakes a waiter, even when a slot is momentarily free); a
  waiter that gives up (cancelled, or past its timeout) just as a slot was handed to it
  passes that slot on instead of losing it; :meth:`Slots.close` fails every waiter.
* :class:`PerLoop`: one value per running event loop, made on first use. asyncio futures
  must not cross loops, a worker's objects must be made after the fork (never in the
  master), and tests run one loop each: keyed by loop (weakly), a closed loop's leftovers
  cannot starve the next one.

Neither knows what the slots stand for; the owner keeps its own free list (lanes,
connections) and takes from it only while holding a slot.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

__all__ = ["PerLoop", "Slots"]

T = TypeVar("T")


def _closed() -> BaseException:
    return RuntimeError("closed")


class Slots:
    """At most ``limit`` holders at once; the others wait in line (see the module docs).

    Used only from its event loop's thread. ``await acquire()`` then ``release()``, or
    ``async with slots.hold():``. Code that cannot await (an executor's ``submit``) joins
    the line with :meth:`enqueue` and leaves it with :meth:`withdraw`.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"at least one slot is needed, not {limit}")
        self._limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._error: Callable[[], BaseException] | None = None

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        """A new limit applies at once: waiters get the room a raise makes; after a cut,
        holders above it give their slots back as they finish."""
        if limit < 1:
            raise ValueError(f"at least one slot is needed, not {limit}")
        self._limit = limit
        self._wake()

    @property
    def held(self) -> int:
        """Slots held right now."""
        return self._held

    @property
    def waiting(self) -> int:
        """Waiters in line right now."""
        return len(self._waiters)

    @property
    def closed(self) -> bool:
        return self._error is not None

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits (raises once closed)."""
        self._check_open()
        if self._held < self._limit and not self._waiters:
            self._held += 1
            return True
        return False

    def enqueue(self) -> asyncio.Future[None]:
        """Join the line: the future is done when a slot is handed over (the slot is then
        held), or fails when the slots close. Call :meth:`withdraw` to give up."""
        self._check_open()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()
        return waiter

    def withdraw(self, waiter: asyncio.Future[None]) -> None:
        """Leave the line; a slot handed to ``waiter`` already is passed to the next one."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            self.release()
            return
        waiter.cancel()
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    async def acquire(self, timeout: float | None = None) -> None:
        """Hold a slot, waiting in line (up to ``timeout`` seconds, then ``TimeoutError``)."""
        if self.try_acquire():
            return
        waiter = self.enqueue()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            self.withdraw(waiter)  # cancelled or timed out, perhaps just after a handover
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiting one, or to the free room."""
        if self._held <= 0:
            raise RuntimeError("release() without a held slot")
        self._held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._held < self._limit:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled without withdraw(): its turn is skipped
                continue
            self._held += 1
            waiter.set_result(None)

    @asynccontextmanager
    async def hold(self, timeout: float | None = None) -> AsyncIterator[None]:
        """``async with slots.hold():`` a slot for the block."""
        await self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def close(self, error: Callable[[], BaseException] = _closed) -> None:
        """Refuse new holders and fail every waiter with ``error()``; holders keep their
        slots until they release them."""
        self._error = error
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error())


class PerLoop(Generic[T]):
    """One ``T`` per event loop, found through the running loop (see the module docs).

    ``factory`` makes the value on first use in a loop; without one, a loop has a value
    only once something :meth:`install`\\ s it (the worker, from its ``Config``). The
    owner closes it (:meth:`pop` it, then close it) before its loop closes.
    """

    def __init__(self, factory: Callable[[], T] | None = None) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], T] | None = None

    def get(self) -> T:
        """The running loop's value, made by the factory if it has none yet."""
        loop = asyncio.get_running_loop()
        # Asked for on every request: the last answer, without a WeakKeyDictionary lookup.
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        value = self._values.get(loop)
        if value is None:
            if self._factory is None:
                raise LookupError("nothing was installed for this event loop")
            value = self._values[loop] = self._factory()
        self._last = (weakref.ref(loop), value)
        return value

    def find(self, loop: asyncio.AbstractEventLoop | None = None) -> T | None:
        """``loop``'s value (default: the running loop's; None outside one), never made."""
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return self._values.get(loop)

    def install(self, value: T, loop: asyncio.AbstractEventLoop | None = None) -> T:
        """Make ``value`` the value of ``loop`` (default: the running loop)."""
        self._values[loop or asyncio.get_running_loop()] = value
        self._last = None
        return value

    def pop(self, loop: asyncio.AbstractEventLoop | None = None) -> T | None:
        """Forget ``loop``'s value (default: the running loop's) and return it, to close."""
        self._last = None
        return self._values.pop(loop or asyncio.get_running_loop(), None)
