"""Where a waiter's result comes from: one Redis subscriber per loop, or polling.

**Redis result backend** (``CELERY_RESULT_BACKEND = "redis://..."``). Celery's Redis
backend stores a task's state under ``celery-task-meta-<id>`` (with the app's
``global_keyprefix``, if any) and PUBLISHes the same bytes on the channel of that name.
Per event loop and Celery app, :class:`RedisResults` holds

* **one subscriber** connection (client name ``hybrid-tasks-sub-PID``): SUBSCRIBE to a
  task's channel when its first waiter comes, UNSUBSCRIBE when its last waiter goes; one
  reader task decodes each message once (the app's own serializer and compression,
  ``backend.decode``) and hands every waiter of the task the finished state;
* **one command** connection (``hybrid-tasks-get-PID``): when Redis confirms a
  subscription, the task's key is read once (batched with MGET), so a task that finished
  before anyone subscribed is answered at once, and one that finishes after is caught on
  the channel: nothing falls between the two.

Faults: the subscriber reconnects with exponential backoff (0.1 s doubling up to 5 s,
with jitter), resubscribes to every pending task, and since every confirmed subscription
reads its key, a result stored while Redis was unreachable is found after the reconnect.
A waiter meanwhile just waits, up to its own timeout. One line in the log when Redis goes,
one when it is back. No thread, no polling: 1,000 waiters are 1,000 futures and timers.

**Any other result backend** (a database, memcached, Sentinel...) is polled:
:class:`PolledResults` reads the task's state with ``backend.get_task_meta`` in the loop's
default executor, every 0.05 s at first, backing off to every 1 s. That costs a thread
for the duration of each read and a round trip per waiter per interval: the costlier path.
(``rpc://`` cannot be read by anyone but the process that sent the task; it is not
supported.)
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from hybrid.log import gen_log
from hybrid.slots import PerLoop
from hybrid.subscriber import Subscriber

if TYPE_CHECKING:
    import redis.asyncio as redis_async
    from celery import Celery

__all__ = ["PolledResults", "RedisResults", "Results", "results_for"]

#: Polling, for result backends other than Redis: first interval, and its cap.
POLL_FIRST = 0.05
POLL_MAX = 1.0
#: States after which a task's state no longer changes (celery.states.READY_STATES).
READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

Meta = dict[str, Any]


class Results:
    """A loop's source of finished task states for one Celery app."""

    def __init__(self, app: Celery, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        #: The app's result backend of the loop's thread (Celery keeps one per thread).
        self.backend: Any = app.backend
        #: Since when the backend is unreachable (None while it is fine).
        self.down_since: float | None = None
        self.down_reason = ""

    def watch(self, task_id: str) -> asyncio.Future[Meta]:
        """A future that gets the task's finished state (exceptions already re-created)."""
        raise NotImplementedError

    def forget(self, task_id: str, future: asyncio.Future[Meta]) -> None:
        """The waiter of ``future`` no longer waits (done, timed out, cancelled)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the loop's connections."""


class RedisResults(Subscriber, Results):
    """Results through one pub/sub subscriber per loop (see the module docs and
    :class:`hybrid.subscriber.Subscriber`)."""

    def __init__(self, app: Celery, loop: asyncio.AbstractEventLoop) -> None:
        Results.__init__(self, app, loop)
        from hybrid._compat.celery import redis_params

        self.params = redis_params(self.backend)
        Subscriber.__init__(
            self,
            loop,
            what="tasks: result backend Redis",
            name=_display(self.params),
            down_note="waiters keep waiting up to their timeout, reconnecting with backoff",
            back_note="resubscribed to %d pending task(s)",
        )
        self._waiters: dict[bytes, list[asyncio.Future[Meta]]] = {}
        self._ids: dict[bytes, str] = {}
        self._get_client: redis_async.Redis | None = None
        self._to_read: set[bytes] = set()
        self._getter: asyncio.Task[None] | None = None

    def key(self, task_id: str) -> bytes:
        key = self.backend.get_key_for_task(task_id)
        return key if isinstance(key, bytes) else str(key).encode()

    def watch(self, task_id: str) -> asyncio.Future[Meta]:
        future: asyncio.Future[Meta] = self.loop.create_future()
        key = self.key(task_id)
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.append(future)
            return future
        self._waiters[key] = [future]
        self._ids[key] = task_id
        if not self.started:
            self.start()
        elif self.pubsub is not None:
            self.spawn(self.subscribe(key))
        # Not connected yet (or down): the reader subscribes to every pending key once in.
        return future

    def forget(self, task_id: str, future: asyncio.Future[Meta]) -> None:
        key = self.key(task_id)
        waiters = self._waiters.get(key)
        if waiters is None or future not in waiters:
            return
        waiters.remove(future)
        if not waiters:
            self._drop(key)

    def _drop(self, key: bytes) -> None:
        del self._waiters[key]
        del self._ids[key]
        self._to_read.discard(key)
        self.unsubscribe_soon(key)

    # -- the subscriber's side -------------------------------------------------------

    def client(self) -> redis_async.Redis:
        return self._client("sub")

    def _client(self, role: str) -> redis_async.Redis:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        params = {"socket_connect_timeout": 2.0, **self.params}
        if role == "sub":
            params.pop("socket_timeout", None)  # a subscriber waits for messages forever
        return redis.asyncio.Redis(
            **params,
            client_name=f"hybrid-tasks-{role}-{os.getpid()}",
            retry=Retry(NoBackoff(), 0 if role == "sub" else 1),
            max_connections=1,
        )

    def wanted(self) -> list[bytes]:
        return list(self._waiters)

    def message(self, channel: bytes, data: Any) -> None:
        self._arrived(channel, data)

    def subscribed(self, channel: bytes) -> None:
        self._read_key(channel)

    def _arrived(self, key: bytes, payload: bytes | None) -> None:
        if key not in self._waiters or payload is None:
            return
        try:
            meta = self.backend.decode(payload)
        except Exception as exc:
            gen_log.error("tasks: undecodable result for %r dropped: %s", key, exc)
            return
        if not isinstance(meta, dict) or meta.get("status") not in READY:
            return  # PENDING, STARTED, RETRY, PROGRESS...: not finished yet
        waiters = self._waiters[key]
        self._drop(key)
        for future in waiters:
            if not future.done():
                try:
                    # Each waiter its own copy: the exception is made anew for each.
                    future.set_result(self.backend.meta_from_decoded(dict(meta)))
                except Exception as exc:  # an exception that cannot be re-created
                    future.set_exception(exc)

    # -- reading keys once subscribed ---------------------------------------------------

    def _read_key(self, key: bytes) -> None:
        if key in self._waiters:
            self._to_read.add(key)
            if self._getter is None:
                self._getter = self.loop.create_task(self._get())

    async def _get(self) -> None:
        import redis

        try:
            while self._to_read:
                keys = list(self._to_read)
                self._to_read.clear()
                if self._get_client is None:
                    self._get_client = self._client("get")
                try:
                    values = await self._get_client.mget(keys)
                except (redis.RedisError, OSError) as exc:
                    # The subscriber sees the outage too; its resubscription reads again.
                    gen_log.debug("tasks: reading %d result key(s) failed: %s", len(keys), exc)
                    continue
                for key, value in zip(keys, values, strict=True):
                    if value is not None:
                        self._arrived(key, value if isinstance(value, bytes) else value.encode())
        finally:
            self._getter = None

    async def close(self, *others: asyncio.Task[Any] | redis_async.Redis | None) -> None:
        await Subscriber.close(self, self._getter, self._get_client, *others)


class PolledResults(Results):
    """Results by polling the backend in the loop's default executor (see the module
    docs): the costlier path, for result backends other than Redis."""

    def __init__(self, app: Celery, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(app, loop)
        self._pollers: dict[asyncio.Future[Meta], asyncio.Task[None]] = {}

    def watch(self, task_id: str) -> asyncio.Future[Meta]:
        future: asyncio.Future[Meta] = self.loop.create_future()
        self._pollers[future] = self.loop.create_task(self._poll(task_id, future))
        return future

    def forget(self, task_id: str, future: asyncio.Future[Meta]) -> None:
        poller = self._pollers.pop(future, None)
        if poller is not None and not poller.done():
            poller.cancel()

    async def _poll(self, task_id: str, future: asyncio.Future[Meta]) -> None:
        interval = POLL_FIRST
        while not future.done():
            try:
                meta = await self.loop.run_in_executor(None, self._meta, task_id)
            except Exception as exc:
                self._went_down(exc)
            else:
                self.down_since = None
                if meta.get("status") in READY:
                    if not future.done():
                        future.set_result(meta)
                    return
            await asyncio.sleep(interval)
            interval = min(POLL_MAX, interval * 2)

    def _meta(self, task_id: str) -> Meta:
        # On an executor thread: that thread's own backend instance.
        meta: Meta = self.app.backend.get_task_meta(task_id, cache=False)
        return meta

    def _went_down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.down_reason = str(exc) or type(exc).__name__
            gen_log.warning("tasks: reading a task's result failed (%s)", self.down_reason)


_loops: PerLoop[dict[int, Results]] = PerLoop(dict)


def results_for(app: Celery) -> Results:
    """The running loop's results source for ``app`` (made on first use)."""
    from hybrid._compat.celery import is_redis_backend

    found = _loops.get()
    results = found.get(id(app))
    if results is None or results.app is not app:
        loop = asyncio.get_running_loop()
        kind = RedisResults if is_redis_backend(app.backend) else PolledResults
        results = found[id(app)] = kind(app, loop)
    return results


async def close() -> None:
    """Close the running loop's results sources (tests; a worker stopping)."""
    found = _loops.find()
    if found:
        for results in list(found.values()):
            await results.close()
        found.clear()


def _display(params: dict[str, Any]) -> str:
    if params.get("path"):
        return f"unix://{params['path']}"
    scheme = "rediss" if "SSL" in str(params.get("connection_class", "")) else "redis"
    host, port = params.get("host", "localhost"), params.get("port", 6379)
    return f"{scheme}://{host}:{port}/{params.get('db', 0)}"
