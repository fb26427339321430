"""One Redis pub/sub connection of an event loop that reconnects by itself.

Two parts of hybrid listen to Redis for as long as a worker lives: groups
(:mod:`hybrid.groups.redis_layer`, a channel per group with members here) and task results
(:mod:`hybrid.tasks.results`, a channel per task someone awaits). Both need the same
thing, written once here:

* one reader task per loop and purpose, started on first use, that connects, subscribes to
  every channel the owner wants at that moment (:meth:`Subscriber.wanted`), and hands each
  message and each subscription confirmation to the owner;
* on a lost connection or a refused one: retry after a pause doubling from 0.1 s up to 5 s
  (with jitter, so that a fleet of workers does not reconnect in step), and say so in the
  log once per outage, not once per try; one more line when Redis is back;
* redis-py's own retries turned off for this connection, so a failure reaches the loop
  above at once instead of being retried inside a read;
* :meth:`Subscriber.close` cancels the reader and the owner's background tasks and closes
  the connections.

The owner subclasses it and says what to subscribe to and what to do with a message.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from hybrid.log import gen_log

if TYPE_CHECKING:
    import redis.asyncio as redis_async

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "Subscriber", "quietly"]

#: Reconnect backoff: the first pause, and the cap it doubles up to.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class Subscriber(ABC):
    """A loop's reconnecting pub/sub reader (see the module docs).

    ``what`` names it in the log (``groups: Redis``), ``name`` is the server without its
    password; ``down_note`` ends the outage line with what it means for users of the
    owner, ``back_note`` the recovery line (``%d`` is the number of channels resubscribed).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        what: str,
        name: str,
        down_note: str,
        back_note: str,
    ) -> None:
        self.loop = loop
        self.what = what
        self.name = name
        self.down_note = down_note
        self.back_note = back_note
        #: The connected ``redis.asyncio.client.PubSub``, None while (re)connecting.
        self.pubsub: Any = None
        #: When the current outage began and why (None while connected or connecting).
        self.down_since: float | None = None
        self.down_reason = ""
        self._sub_client: redis_async.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    # -- what the owner says ---------------------------------------------------------

    @abstractmethod
    def client(self) -> redis_async.Redis:
        """A new client for the subscriber's connection (no retries; see the module)."""

    @abstractmethod
    def wanted(self) -> list[bytes]:
        """The channels to subscribe to now (after every connect)."""

    @abstractmethod
    def message(self, channel: bytes, data: Any) -> None:
        """A message arrived on ``channel``."""

    def subscribed(self, channel: bytes) -> None:  # noqa: B027  # optional
        """Redis confirmed the subscription to ``channel``."""

    def went_down(self) -> None:  # noqa: B027  # optional
        """The connection was lost or refused (after the log line, once per try)."""

    # -- the reader --------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._reader is not None

    def start(self) -> None:
        """Start the reader (once; not after :meth:`close`)."""
        if self._reader is None and not self.closing:
            self._reader = self.loop.create_task(self._read())

    async def _read(self) -> None:
        import redis

        backoff = BACKOFF_FIRST
        while not self.closing:
            if self._sub_client is None:
                self._sub_client = self.client()
            pubsub: Any = self._sub_client.pubsub()  # redis-py leaves PubSub untyped
            try:
                await pubsub.connect()
                # Set first: a channel wanted while the SUBSCRIBE below is on its way sends
                # its own (a second SUBSCRIBE to a channel is harmless).
                self.pubsub = pubsub
                channels = self.wanted()
                if channels:
                    await pubsub.subscribe(*channels)
                self._back_up(len(channels))
                backoff = BACKOFF_FIRST
                await self._receive(pubsub)
            except (redis.RedisError, OSError) as exc:
                self.pubsub = None
                self._went_down(exc)
                self.went_down()
                await quietly(pubsub.aclose())
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(BACKOFF_MAX, backoff * 2)
            except asyncio.CancelledError:
                self.pubsub = None
                await quietly(pubsub.aclose())
                raise

    async def _receive(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self.message(message["channel"], message["data"])
                # Messages already read arrive without a suspension: without this, a burst
                # of them (tasks finishing together) would wake every waiter in one turn of
                # the loop, and the loop would answer them all before anything else ran.
                await asyncio.sleep(0)
            elif kind == "subscribe":
                self.subscribed(message["channel"])

    def _went_down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.down_reason = str(exc) or type(exc).__name__
            gen_log.warning(
                "%s at %s unavailable (%s); %s",
                self.what,
                self.name,
                self.down_reason,
                self.down_note,
            )

    def _back_up(self, channels: int) -> None:
        if self.down_since is not None:
            gen_log.warning(
                "%s at %s is back after %.1fs; %s",
                self.what,
                self.name,
                time.monotonic() - self.down_since,
                self.back_note % channels,
            )
            self.down_since = None

    # -- channel changes and closing ---------------------------------------------------

    async def subscribe(self, channel: bytes) -> bool:
        """SUBSCRIBE now, if connected; False when not sent (the reader subscribes to
        :meth:`wanted` when it connects again)."""
        pubsub = self.pubsub
        if pubsub is None:
            return False
        try:
            await pubsub.subscribe(channel)
        except Exception:  # the reader sees the same failure and reconnects
            return False
        return True

    def unsubscribe_soon(self, channel: bytes) -> None:
        """UNSUBSCRIBE in the background, unless ``channel`` is wanted again by then."""
        if self.pubsub is not None:
            self.spawn(self._unsubscribe(self.pubsub, channel))

    async def _unsubscribe(self, pubsub: Any, channel: bytes) -> None:
        if pubsub is not self.pubsub or channel in self.wanted():
            return
        try:
            await pubsub.unsubscribe(channel)
        except Exception:
            pass  # a reconnected subscriber subscribes to wanted channels only

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background; :meth:`close` cancels it."""
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, *others: asyncio.Task[Any] | redis_async.Redis | None) -> None:
        """Cancel the reader, the background tasks and ``others`` that are tasks; close
        the subscriber's client and ``others`` that are clients."""
        self.closing = True
        tasks = [self._reader, *self._tasks, *(o for o in others if isinstance(o, asyncio.Task))]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
                await quietly(task)
        clients = [self._sub_client, *(o for o in others if not isinstance(o, asyncio.Task))]
        for client in clients:
            if client is not None:
                await quietly(client.aclose())


async def quietly(awaitable: Any) -> None:
    """Await ``awaitable``, ignoring what it raises (closing what may already be broken)."""
    try:
        await awaitable
    except (Exception, asyncio.CancelledError):
        pass
