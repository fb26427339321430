"""Database threads ("lanes"): a bounded pool of long-lived threads, one per request.

Django's ORM is synchronous underneath; its async API (``aget``, ``acount``, ``async for``)
hands each call to asgiref's ``sync_to_async(thread_sensitive=True)``, which picks the
thread from the current ``ThreadSensitiveContext``. Without a context every request of the
process shares one thread (five concurrent 0.2 s queries take 1 s); Django's ASGI handler
gives each request a context, and so a brand-new thread and database connection per
request. hybrid does neither:

* a worker owns a :class:`LanePool` of ``--db-threads`` lanes (built from its ``Config``
  at boot and installed for its loop: :func:`install_lane_pool`), each a :class:`Lane`
  (a ``ThreadPoolExecutor(max_workers=1)``): one long-lived thread whose connection
  persists between requests as ``CONN_MAX_AGE`` allows;
* every Django request (:class:`~hybrid.DjangoHandler` and the Django fallback) enters
  ``ThreadSensitiveContext(executor=LazyLane(pool))`` (asgiref >= 3.13): the request leases
  a lane at its first thread-sensitive call (waiting without blocking the loop while all
  are busy) and keeps it to the end, so each of its ORM calls, sync views, sync
  middleware and ``request_started`` / ``request_finished`` receivers runs on that one
  thread: ``transaction.atomic()`` inside :func:`run_sync` works, and Django's per-thread
  ``connections`` stay consistent for the whole request. A request that never needs a
  thread (plain text, native MySQL, awaiting other services) never holds a lane, so a
  thousand requests waiting on I/O do not queue behind ``--db-threads``;
* at most ``--db-threads`` requests per worker touch the database at once, so the
  connection count is bounded by threads x workers; keep threads x workers x 2 below the
  server's ``max_connections`` (see :attr:`hybrid.Config.db_thread_count`).

A request holds its lane, once leased, until its response is complete, streaming
responses included.
Blocking a lane thread on a request to the same worker can deadlock once every lane
waits that way; don't.

This module is below the bridge and :mod:`hybrid.db` (both use it): it knows nothing of
Tornado or of a request beyond "this context's lane". The fair line and the hand-over of a
lease given up just as it was granted are :class:`hybrid.slots.Slots`'.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from hybrid._compat.asgiref import enter_shared_context, exit_shared_context, handed_exception
from hybrid._compat.asyncio import executor_threads
from hybrid.log import app_log
from hybrid.slots import PerLoop, Slots

__all__ = [
    "DEFAULT_LANES",
    "Lane",
    "LanePool",
    "LaneRouter",
    "LaneScope",
    "LazyLane",
    "RequestLanes",
    "close_lane_pools",
    "current_lane",
    "install_lane_pool",
    "lane_context",
    "lane_pool",
    "run_sync",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Lanes of a loop's default pool when no worker installed one (tests, scripts).
DEFAULT_LANES = 8

#: The lane of the request being served in this context, if any.
_current_lane: contextvars.ContextVar[LazyLane | None] = contextvars.ContextVar(
    "hybrid_current_lane", default=None
)


def _closed_error() -> BaseException:
    return RuntimeError("the database thread pool is closed (the worker is stopping)")


class LanePool:
    """``size`` single-thread executors handed out one per request, first come first served.

    Used only from the thread that runs its event loop. Threads start lazily, on a lane's
    first job, and live until :meth:`aclose` (or until the pool is garbage). A lease is a
    slot of :class:`~hybrid.slots.Slots`; while holding one, the holder takes the most
    recently released lane (its connection is warm).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a lane pool needs at least one thread, not {size}")
        self.size = size
        self._lanes: list[ThreadPoolExecutor] = [Lane(f"hybrid-db-{n}") for n in range(size)]
        self._free: deque[ThreadPoolExecutor] = deque(self._lanes)
        self._slots = Slots(size)
        # A pool dropped without aclose() (its loop closed, a test's own pool) still closes
        # its threads' connections on them: otherwise they end with the threads, unclosed.
        self._finalizer = _reaper.watch(self, self._lanes)

    @property
    def busy(self) -> int:
        """Lanes leased right now."""
        return self._slots.held

    @property
    def waiting(self) -> int:
        """Requests waiting for a lane right now."""
        return self._slots.waiting

    @property
    def closed(self) -> bool:
        return self._slots.closed

    def check_open(self) -> None:
        """Raise ``RuntimeError`` once the pool is closed (the worker is stopping)."""
        if self._slots.closed:
            raise _closed_error()

    def try_take(self) -> ThreadPoolExecutor | None:
        """A lane now if one is free and nobody waits, else None (:meth:`enqueue` then)."""
        return self._free.pop() if self._slots.try_acquire() else None

    def enqueue(self) -> asyncio.Future[None]:
        """Wait in line without awaiting (an executor's ``submit`` cannot): once the future
        is done, :meth:`take` the lane; :meth:`withdraw` gives up (passing on a lease that
        was just granted)."""
        return self._slots.enqueue()

    def take(self) -> ThreadPoolExecutor:
        """The lane of a lease granted through :meth:`enqueue`."""
        return self._free.pop()

    def withdraw(self, waiter: asyncio.Future[None]) -> None:
        """Give up a place taken with :meth:`enqueue`."""
        self._slots.withdraw(waiter)

    async def acquire(self) -> ThreadPoolExecutor:
        """Lease a lane, waiting (on the loop) while all are busy. Pair with :meth:`release`."""
        await self._slots.acquire()
        return self._free.pop()

    def release(self, lane: ThreadPoolExecutor) -> None:
        """Give a lane back: to the longest waiting request, or to the free list.

        Work the request left on the lane (a cancelled call still running) simply runs
        before the next request's, because a lane has exactly one thread.
        """
        self._free.append(lane)
        self._slots.release()

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[ThreadPoolExecutor]:
        """``async with pool.lease() as lane``: a lane for the block."""
        lane = await self.acquire()
        try:
            yield lane
        finally:
            self.release(lane)

    async def aclose(self) -> None:
        """Close every lane's database connections on its own thread, then the threads;
        requests still waiting for a lane fail. (A pool that is garbage without this
        closes them too, without waiting: :class:`_Reaper`.)"""
        self._finalizer.detach()
        self._slots.close(_closed_error)
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(lane, _close_connections) for lane in _started(self._lanes)]
        await asyncio.gather(*jobs, return_exceptions=True)
        for lane in self._lanes:
            lane.shutdown(wait=False)


def _started(lanes: list[ThreadPoolExecutor]) -> list[ThreadPoolExecutor]:
    """The lanes whose thread has started (the others have no connection to close)."""
    return [lane for lane in lanes if executor_threads(lane)]


def _close_connections() -> None:
    """On a lane: close the Django connections of its thread."""
    from django.db import connections

    connections.close_all()


class _Reaper:
    """Closes the lanes of pools that were dropped without :meth:`LanePool.aclose`.

    A pool's finalizer runs wherever the garbage collector does, possibly inside an
    executor's ``submit()`` holding the locks that submitting again would take: it only
    puts the pool's lanes on a ``SimpleQueue`` (safe there), and this process's reaper
    thread (a daemon, started with the first pool) has each lane close its thread's
    connections, on that thread, and end.
    """

    def __init__(self) -> None:
        self._dropped: queue.SimpleQueue[tuple[list[ThreadPoolExecutor], int]] = queue.SimpleQueue()
        self._pid = 0

    def watch(self, pool: LanePool, lanes: list[ThreadPoolExecutor]) -> weakref.finalize[Any, Any]:
        """Close ``lanes`` once ``pool`` is garbage (detach the result to stop that)."""
        pid = os.getpid()
        if self._pid != pid:  # the first pool of this process (a forked child has no thread)
            self._pid = pid
            threading.Thread(target=self._run, name="hybrid-db-reaper", daemon=True).start()
        finalizer = weakref.finalize(pool, self._dropped.put, (list(lanes), pid))
        finalizer.atexit = False  # at exit, concurrent.futures has joined the threads
        return finalizer

    def _run(self) -> None:
        while True:
            lanes, pid = self._dropped.get()
            if pid == os.getpid():  # not a pool of the process this one was forked from
                _close_lanes(lanes)
            del lanes  # the executors go with their pool


def _close_lanes(lanes: list[ThreadPoolExecutor]) -> None:
    """Each lane closes its thread's connections, then ends (without waiting)."""
    for lane in _started(lanes):
        with contextlib.suppress(RuntimeError):  # shut down already
            lane.submit(_close_connections)
    for lane in lanes:
        lane.shutdown(wait=False)


_reaper = _Reaper()


class Lane(ThreadPoolExecutor):
    """One database thread: a one-thread executor whose jobs leave no reference cycle.

    ``sync_to_async`` called inside an ``except`` block hands the exception being handled
    to the thread, which re-raises it there so that the sync function runs inside an
    ``except`` block too (:mod:`hybrid._compat.asgiref`). That leaves the thread's frame,
    which refers back to the exception, at the head of the exception's traceback: a
    cycle that would keep the request it was raised in (the loop-side frames of the
    traceback) alive until the cyclic garbage collector runs. Once such a job is over, the
    lane gives the exception back the traceback it had when it was handed over; while the
    sync function runs, ``sys.exc_info()`` is what asgiref makes it.
    """

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)

    def submit(
        self, fn: Callable[..., R], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
        return super().submit(_untangling(fn), *args, **kwargs)


def _untangling(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn``, or when it is handed an exception, ``fn`` giving it its traceback back."""
    handed = handed_exception(fn)
    if handed is None:
        return fn
    exception, traceback = handed

    def run(*args: Any, **kwargs: Any) -> R:
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            if error is not exception:  # the job re-raised it: its traceback tells where
                exception.__traceback__ = traceback
            raise
        exception.__traceback__ = traceback
        return result

    return run


class LazyLane(concurrent.futures.Executor):
    """One request's database thread: a lane of ``pool`` leased at the first job, kept to
    the end of the request (:meth:`release`).

    It is the executor of the request's ``ThreadSensitiveContext``, so asgiref calls
    :meth:`submit` from the loop for every thread-sensitive sync call. While every lane is
    busy, jobs queue here (the loop is not blocked) and start, in order, when the pool
    hands this request a lane. ``on_lease`` runs on the lane before the first job: the
    request's ``request_started`` database hygiene, when the bridge defers it to here.
    """

    def __init__(self, pool: LanePool, on_lease: Callable[[], object] | None = None) -> None:
        self.pool = pool
        self.on_lease = on_lease
        self.lane: ThreadPoolExecutor | None = None
        self._queued: list[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._released = False

    def thread_idents(self) -> frozenset[int]:
        """The idents of the lane's thread (none before the lease, or before its first
        job): whose sync connections are this request's (:mod:`hybrid.db.aliases`)."""
        if self.lane is None:
            return frozenset()
        return frozenset(t.ident for t in executor_threads(self.lane) if t.ident is not None)

    def submit(
        self, fn: Callable[..., R], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
        if self.lane is not None:
            return self.lane.submit(fn, *args, **kwargs)
        if self._released:
            raise RuntimeError("this request's database thread was released (the request ended)")
        if self._waiter is None:
            lane = self.pool.try_take()
            if lane is not None:
                self._leased(lane)
                return lane.submit(fn, *args, **kwargs)
            self._waiter = self.pool.enqueue()
            self._waiter.add_done_callback(self._granted)
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        call = _untangling(fn)
        self._queued.append((future, lambda: call(*args, **kwargs)))
        return future

    def _granted(self, waiter: asyncio.Future[None]) -> None:
        if self._released or waiter.cancelled():
            return  # release() withdrew: a lease granted meanwhile was passed on
        error = waiter.exception()
        if error is not None:  # the pool closed while we waited
            queued, self._queued = self._queued, []
            for future, _ in queued:
                future.set_exception(error)
            return
        self._leased(self.pool.take())

    def _leased(self, lane: ThreadPoolExecutor) -> None:
        self.lane = lane
        if self.on_lease is not None:
            lane.submit(self.on_lease).add_done_callback(_log_failure)
        queued, self._queued = self._queued, []
        for future, call in queued:
            lane.submit(_run_into, future, call)

    def release(self, then: Callable[[], object] | None = None) -> None:
        """The request is over: run ``then`` on the lane if one was leased (without waiting
        for it), and give the lane back; jobs still queued for a lane are cancelled."""
        if self._released:
            return
        self._released = True
        if self.lane is not None:
            if then is not None:
                self.lane.submit(then).add_done_callback(_log_failure)
            self.pool.release(self.lane)
            return
        if self._waiter is not None:
            self.pool.withdraw(self._waiter)
        for future, _ in self._queued:
            future.cancel()
        self._queued.clear()

    @property
    def released(self) -> bool:
        """Whether the request is over (:meth:`release` was called)."""
        return self._released

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.release()


def _run_into(future: concurrent.futures.Future[Any], call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        app_log.error("request hygiene on a database thread failed", exc_info=exc)


class _LoopLanes:
    """One loop's lane pools by size, and the size :func:`lane_pool` uses when given none."""

    def __init__(self) -> None:
        self.default_size = DEFAULT_LANES
        self.pools: dict[int, LanePool] = {}


_loop_lanes: PerLoop[_LoopLanes] = PerLoop(_LoopLanes)


def install_lane_pool(pool: LanePool) -> LanePool:
    """Make ``pool`` the running loop's pool: the one :func:`lane_pool` returns for its
    size or for none. A worker installs the pool it built from ``Config.db_thread_count``
    at boot; it closes with :func:`close_lane_pools`."""
    lanes = _loop_lanes.get()
    lanes.default_size = pool.size
    lanes.pools[pool.size] = pool
    return pool


def lane_pool(size: int | None = None) -> LanePool:
    """The running loop's pool of ``size`` lanes (the installed pool's size if None, else
    :data:`DEFAULT_LANES`), made on first use.

    A worker runs one loop, so it has one pool; keying pools by loop keeps leases that a
    closed loop abandoned (tests run one loop each) from starving the next loop.
    """
    lanes = _loop_lanes.get()
    size = size or lanes.default_size
    pool = lanes.pools.get(size)
    if pool is None or pool.closed:
        pool = lanes.pools[size] = LanePool(size)
    return pool


async def close_lane_pools() -> None:
    """Close the running loop's pools: each lane's connections on its own thread, then the
    threads. A stopping worker calls it after its last request."""
    lanes = _loop_lanes.pop()
    for pool in list(lanes.pools.values()) if lanes is not None else ():
        await pool.aclose()


def current_lane() -> LazyLane | None:
    """The database thread of the request served in this context, or None outside one."""
    return _current_lane.get()


def lane_context(
    pool: LanePool | int | None = None, *, on_lease: Callable[[], object] | None = None
) -> LaneScope:
    """Make a lane of ``pool`` this context's thread for thread-sensitive sync code.

    ``async with lane_context() as lane``: inside, ``sync_to_async(...,
    thread_sensitive=True)`` (every async ORM call, sync views and middleware, signal
    receivers) runs on one lane, leased at the first such call (see :class:`LazyLane`;
    ``on_lease`` runs there first). Tasks started inside must finish before the block ends
    (asgiref refuses their later thread-sensitive calls). The yielded :class:`LazyLane`'s
    ``release(then)`` may be called before the block ends to queue last work on the lane;
    the block releases it otherwise. ``pool``: a pool, a size (:func:`lane_pool`), or None
    for the loop's own.
    """
    return LaneScope(pool, on_lease)


class LaneScope:
    """The ``async with`` block of :func:`lane_context` (entered once per request: a class,
    not a generator-based context manager, which costs several times as much)."""

    __slots__ = ("_context", "_on_lease", "_pool", "_token", "lane")

    def __init__(self, pool: LanePool | int | None, on_lease: Callable[[], object] | None) -> None:
        self._pool = pool
        self._on_lease = on_lease
        self.lane: LazyLane | None = None

    async def __aenter__(self) -> LazyLane:
        pool = self._pool
        if not isinstance(pool, LanePool):
            pool = lane_pool(pool)
        pool.check_open()
        lane = self.lane = LazyLane(pool, self._on_lease)
        self._token = _current_lane.set(lane)
        self._context = ThreadSensitiveContext(executor=lane)
        try:
            await self._context.__aenter__()  # type: ignore[no-untyped-call]
        except BaseException:
            _current_lane.reset(self._token)
            lane.release()
            raise
        return lane

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.lane is not None
        try:
            await self._context.__aexit__(*exc_info)  # type: ignore[no-untyped-call]
        finally:
            _current_lane.reset(self._token)
            self.lane.release()


class LaneRouter(concurrent.futures.Executor):
    """The executor asgiref finds for every context entered with :class:`RequestLanes`:
    each call goes to the lane of the context that makes it."""

    def submit(
        self, fn: Callable[..., R], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
        lane = _current_lane.get()
        if lane is None or lane.released:
            # What asgiref answers a task that outlived its ThreadSensitiveContext.
            raise RuntimeError(
                "this request is over: a task started inside a request must finish before "
                "the request ends to make thread-sensitive calls (await it in the handler)"
            )
        return lane.submit(fn, *args, **kwargs)


_ROUTER = LaneRouter()


class RequestLanes:
    """:func:`lane_context` for one Tornado request, entered and left without awaiting.

    A request's context gets its :class:`LazyLane` and asgiref's shared context object
    (:func:`hybrid._compat.asgiref.enter_shared_context`), which routes thread-sensitive
    calls to that lane through :class:`LaneRouter`: two context variables per request,
    where a ``ThreadSensitiveContext`` of its own costs several times that. Only for code
    that no ``async_to_sync`` runs (whose thread a ``ThreadSensitiveContext`` would hide).
    """

    __slots__ = ("_context_token", "_lane_token", "lane")

    def __init__(
        self, pool: LanePool | int | None, on_lease: Callable[[], object] | None = None
    ) -> None:
        if not isinstance(pool, LanePool):
            pool = lane_pool(pool)
        pool.check_open()
        self.lane = LazyLane(pool, on_lease)
        self._lane_token = _current_lane.set(self.lane)
        self._context_token = enter_shared_context(_ROUTER)

    def close(self) -> None:
        """End the block (in the context that entered it): the lane is given back."""
        try:
            exit_shared_context(self._context_token)
        finally:
            _current_lane.reset(self._lane_token)
            self.lane.release()


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
