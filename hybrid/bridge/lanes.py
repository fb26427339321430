"""Database threads ("lanes"): a bounded pool of long-lived threads, one per request.

Django's ORM is synchronous underneath; its async API (``aget``, ``acount``, ``async for``)
hands each call to asgiref's ``sync_to_async(thread_sensitive=True)``, which picks the
thread from the current ``ThreadSensitiveContext``. Without a context every request of the
process shares one thread (five concurrent 0.2 s queries take 1 s); Django's ASGI handler
gives each request a context, and so a brand-new thread and database connection per
request. hybrid does neither:

* a worker owns a :class:`LanePool` of ``--db-threads`` lanes, each a
  ``ThreadPoolExecutor(max_workers=1)``: one long-lived thread whose connection persists
  between requests as ``CONN_MAX_AGE`` allows;
* every Django request (:class:`~hybrid.DjangoHandler` and the Django fallback) leases one
  lane for its lifetime (waiting without blocking the loop while all are busy) and enters
  ``ThreadSensitiveContext(executor=lane)`` (asgiref >= 3.13), so each of its ORM calls,
  sync views, sync middleware and ``request_started`` / ``request_finished`` receivers runs
  on that one thread: ``transaction.atomic()`` inside :func:`run_sync` works, and Django's
  per-thread ``connections`` stay consistent for the whole request;
* at most ``--db-threads`` requests per worker touch the database at once, so the
  connection count is bounded by threads x workers; keep threads x workers x 2 below the
  server's ``max_connections`` (see :attr:`hybrid.Config.db_thread_count`).

A request holds its lane until its response is complete, streaming responses included.
Blocking a lane thread on a request to the same worker can deadlock once every lane
waits that way; don't.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async

__all__ = [
    "LanePool",
    "close_pools",
    "current_lane",
    "get_pool",
    "lane_context",
    "run_sync",
    "set_default_size",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The lane of the request being served in this context, if any.
_current_lane: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "hybrid_current_lane", default=None
)


class LanePool:
    """``size`` single-thread executors handed out one per request, first come first served.

    Used only from the thread that runs its event loop. Threads start lazily, on a lane's
    first job, and live until :meth:`aclose` (or until the pool is garbage).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a lane pool needs at least one thread, not {size}")
        self.size = size
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hybrid-db-{n}")
            for n in range(size)
        ]
        self._free: deque[ThreadPoolExecutor] = deque(self._lanes)
        self._waiters: deque[asyncio.Future[ThreadPoolExecutor]] = deque()
        self.closed = False

    @property
    def busy(self) -> int:
        """Lanes leased right now."""
        return self.size - len(self._free)

    @property
    def waiting(self) -> int:
        """Requests waiting for a lane right now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> ThreadPoolExecutor:
        """Lease a lane, waiting (on the loop) while all are busy. Pair with :meth:`release`."""
        if self.closed:
            raise RuntimeError("the database thread pool is closed (the worker is stopping)")
        if self._free and not self.waiting:
            return self._free.pop()  # the most recently used: its connection is warm
        waiter: asyncio.Future[ThreadPoolExecutor] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            raise

    def release(self, lane: ThreadPoolExecutor) -> None:
        """Give a lane back: to the longest waiting request, or to the free list.

        Work the request left on the lane (a cancelled call still running) simply runs
        before the next request's, because a lane has exactly one thread.
        """
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(lane)
                return
        self._free.append(lane)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[ThreadPoolExecutor]:
        """``async with pool.lease() as lane``: a lane for the block."""
        lane = await self.acquire()
        try:
            yield lane
        finally:
            self.release(lane)

    async def aclose(self) -> None:
        """Close every lane's database connections on its own thread, then the threads."""
        self.closed = True
        from django.db import connections

        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(lane, connections.close_all) for lane in self._lanes]
        await asyncio.gather(*jobs, return_exceptions=True)
        for lane in self._lanes:
            lane.shutdown(wait=False)


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, LanePool]] = (
    weakref.WeakKeyDictionary()
)
_default_size = 8


def set_default_size(size: int) -> None:
    """The pool size :func:`get_pool` uses when given none (``make_app`` sets it)."""
    global _default_size
    _default_size = size


def get_pool(size: int | None = None) -> LanePool:
    """The running loop's pool of ``size`` lanes (the configured default size if None).

    A worker runs one loop, so it has one pool; keying pools by loop keeps leases that a
    closed loop abandoned (tests run one loop each) from starving the next loop.
    """
    loop = asyncio.get_running_loop()
    size = size or _default_size
    pools = _pools.setdefault(loop, {})
    pool = pools.get(size)
    if pool is None or pool.closed:
        pool = pools[size] = LanePool(size)
    return pool


async def close_pools() -> None:
    """Close the running loop's pools: each lane's connections on its own thread, then the
    threads. A stopping worker calls it after its last request."""
    for pool in list(_pools.pop(asyncio.get_running_loop(), {}).values()):
        await pool.aclose()


def current_lane() -> ThreadPoolExecutor | None:
    """The lane of the request served in this context, or None outside one."""
    return _current_lane.get()


@asynccontextmanager
async def lane_context(pool: LanePool | int | None = None) -> AsyncIterator[ThreadPoolExecutor]:
    """Lease a lane and make it this context's thread for thread-sensitive sync code.

    Inside, ``sync_to_async(..., thread_sensitive=True)`` (every async ORM call, sync views
    and middleware, signal receivers) runs on the lane. Tasks started inside must finish
    before the block ends (asgiref refuses their later thread-sensitive calls).
    """
    if not isinstance(pool, LanePool):
        pool = get_pool(pool)
    async with pool.lease() as lane:
        token = _current_lane.set(lane)
        try:
            async with ThreadSensitiveContext(executor=lane):
                yield lane
        finally:
            _current_lane.reset(token)


async def run_sync(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run sync (ORM) code on the current request's database thread and return its result.

    ``await run_sync(place_order, cart, user=u)`` is how a :class:`~hybrid.DjangoHandler`
    runs blocking code that must see the request's connection, for example a
    ``transaction.atomic()`` block: everything inside ``fn`` runs on one thread, in one
    transaction. Outside a request it leases a lane of the worker's pool for the call.
    Never call the sync ORM directly from a handler: it would block the loop (Django
    raises ``SynchronousOnlyOperation``).
    """
    call: Callable[..., Any] = sync_to_async(fn, thread_sensitive=True)
    if _current_lane.get() is not None:
        result: R = await call(*args, **kwargs)
        return result
    async with lane_context():
        result = await call(*args, **kwargs)
        return result
