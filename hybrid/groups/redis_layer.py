"""Groups over Redis pub/sub: every worker of every host that has members of a group.

Per worker (per event loop), two connections, whatever the number of sockets and groups:

* **one subscriber** (client name ``hybrid-sub-PID``). The worker SUBSCRIBEs to a group's
  channel when its first local socket joins the group and UNSUBSCRIBEs when its last one
  leaves, so Redis sends a group's messages only to the workers with members: a message to
  a group nobody here is in costs this worker nothing. One reader task decodes each
  message once and hands each local member its copy (:class:`Membership`).
* **one publisher** (``hybrid-pub-PID``). ``group_send`` queues the message and awaits; one
  task sends everything queued in one pipeline, so a burst of sends costs one round trip.
  PUBLISH is fire-and-forget in Redis: delivery is at most once.

Order: Redis delivers the messages of one channel in the order it received them, and one
sender's pipeline keeps its order, so the messages one sender sends to a group arrive in
that order at every member.

Faults. The subscriber (:class:`hybrid.subscriber.Subscriber`) reconnects by itself, with
exponential backoff (0.1 s doubling up to 5 s, with jitter), resubscribes to every group
that has members here, and says so in the log once per outage (one line when Redis goes,
one when it is back); sockets stay open throughout and messages sent during the outage
are lost for them (at most once). A send while Redis is down or unreachable raises
:class:`GroupsUnavailable` on the sender's side within the connect timeout (2 s by
default; ``?socket_connect_timeout=`` in the URL). A worker that starts while Redis is
unreachable serves anyway and keeps retrying.

Pub/sub channels are shared by every database of a Redis server: the channel name carries
the URL's database number (``hybrid.groups:0:room-42``), so projects that share a server
keep apart by using different database numbers, or by a ``?prefix=`` of their own.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hybrid.errors import GroupsUnavailable
from hybrid.groups.layer import Layer, refuse_on_loop
from hybrid.groups.members import Mailbox, Membership
from hybrid.groups.message import check_group, decode
from hybrid.log import gen_log
from hybrid.subscriber import Subscriber

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

__all__ = ["RedisLayer", "display_url"]

#: How long ``group_add`` waits for Redis to confirm a new subscription before it returns
#: anyway (the subscription then completes in the background).
SUBSCRIBE_WAIT = 5.0
#: Defaults of the connections, unless the URL's query sets them.
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0


def display_url(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _split_prefix(url: str) -> tuple[str, str]:
    """(the URL without hybrid's own ``prefix`` query parameter, the channel prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for key, value in query if key == "prefix"), None)
    rest = [(key, value) for key, value in query if key != "prefix"]
    clean = urlunsplit(parts._replace(query=urlencode(rest)))
    if prefix is None:
        db = parts.path.strip("/") or "0"
        if parts.scheme == "unix":
            db = dict(query).get("db", "0")
        prefix = f"hybrid.groups:{db}:"
    return clean, prefix


class RedisLayer(Layer):
    """Groups over Redis pub/sub (see the module docs)."""

    def __init__(self, url: str, **limits: int) -> None:
        super().__init__(**limits)
        import redis  # noqa: F401  # fail early, in one line, when the extra is missing

        self.url, self.prefix = _split_prefix(url)
        self.name = display_url(self.url)
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Link] = (
            weakref.WeakKeyDictionary()
        )
        self._sync_client: redis_sync.Redis | None = None
        self._sync_pid = 0

    def channel(self, group: str) -> bytes:
        return (self.prefix + group).encode()

    def link(self) -> _Link:
        """The running loop's connections (made on first use)."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            link = self._links[loop] = _Link(self, loop)
        return link

    def membership(self) -> Membership:
        return self.link().membership

    async def start(self) -> None:
        self.link().start()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        link = self._links.pop(loop, None)
        if link is not None:
            await link.close()

    async def add(self, group: str, mailbox: Mailbox) -> None:
        await self.link().add(check_group(group), mailbox)

    def discard(self, group: str, mailbox: Mailbox) -> None:
        self.link().discard(group, mailbox)

    async def send(self, group: str, message: dict[str, Any]) -> None:
        data = self.encode(group, message)
        await self.link().publish(group, data)

    def send_sync(self, group: str, message: dict[str, Any]) -> None:
        refuse_on_loop("group_send_sync")
        data = self.encode(group, message)
        import redis

        client = self._sync()
        try:
            client.publish(self.channel(group), data)
        except (redis.RedisError, OSError) as exc:
            raise self.unavailable(group, exc) from None

    def unavailable(self, group: str, exc: BaseException) -> GroupsUnavailable:
        self.send_failures += 1
        reason = str(exc) or type(exc).__name__
        return GroupsUnavailable(
            f"group message for {group!r} not sent: Redis at {self.name} is unavailable "
            f"({reason}); nothing was delivered, try again later",
            group=group,
            backend=self.name,
            reason=reason,
        )

    def _sync(self) -> redis_sync.Redis:
        # One thread-safe client per process, made again after a fork.
        if self._sync_client is None or self._sync_pid != os.getpid():
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._sync_client = redis.Redis.from_url(
                self.url,
                **_defaults(self.url),
                client_name=f"hybrid-pub-{os.getpid()}",
                retry=Retry(NoBackoff(), 1),
            )
            self._sync_pid = os.getpid()
        return self._sync_client

    def client(self, role: str, *, retries: int) -> redis_async.Redis:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return redis.asyncio.Redis.from_url(
            self.url,
            **_defaults(self.url),
            client_name=f"hybrid-{role}-{os.getpid()}",
            retry=Retry(NoBackoff(), retries),
            max_connections=1,
        )


def _defaults(url: str) -> dict[str, Any]:
    given = {key for key, _ in parse_qsl(urlsplit(url).query)}
    defaults: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
    }
    return {key: value for key, value in defaults.items() if key not in given}


class _Link(Subscriber):
    """One loop's subscriber (:class:`hybrid.subscriber.Subscriber`) and publisher."""

    def __init__(self, layer: RedisLayer, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(
            loop,
            what="groups: Redis",
            name=layer.name,
            down_note="sockets stay open, reconnecting with backoff; sends fail with "
            "GroupsUnavailable meanwhile",
            back_note="resubscribed %d group(s)",
        )
        self.layer = layer
        self.membership = Membership()
        self._prefix = len(layer.prefix)
        self._pub_client: redis_async.Redis | None = None
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = {}
        self._outbox: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- the subscriber's side -------------------------------------------------------

    def client(self) -> redis_async.Redis:
        return self.layer.client("sub", retries=0)

    def wanted(self) -> list[bytes]:
        return [self.layer.channel(group) for group in self.membership]

    def message(self, channel: bytes, data: Any) -> None:
        group = channel[self._prefix :].decode()
        if group not in self.membership:
            return  # left since; the UNSUBSCRIBE is on its way
        try:
            decoded = decode(data)
        except ValueError:
            gen_log.error("groups: undecodable message on %r dropped", group)
            return
        self.membership.deliver(group, decoded)

    def subscribed(self, channel: bytes) -> None:
        for waiter in self._confirm.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def went_down(self) -> None:
        for channel in list(self._confirm):
            self.subscribed(channel)  # their groups are resubscribed on reconnect

    # -- membership ------------------------------------------------------------------

    async def add(self, group: str, mailbox: Mailbox) -> None:
        self.start()
        channel = self.layer.channel(group)
        new = self.membership.add(group, mailbox)
        if self.pubsub is None and self.down_since is not None:
            return  # Redis is down: subscribed when the subscriber reconnects
        if not new and channel not in self._confirm:
            return
        # Wait for Redis to confirm: our SUBSCRIBE, one already sent for another socket,
        # or (still connecting) the one the subscriber sends for every group once it is in.
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._confirm.setdefault(channel, []).append(waiter)
        if new and self.pubsub is not None and not await self.subscribe(channel):
            self._drop_waiter(channel, waiter)
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_WAIT)
        except TimeoutError:
            self._drop_waiter(channel, waiter)

    def discard(self, group: str, mailbox: Mailbox) -> None:
        if self.membership.discard(group, mailbox):
            self.unsubscribe_soon(self.layer.channel(group))

    def _drop_waiter(self, channel: bytes, waiter: asyncio.Future[None]) -> None:
        waiters = self._confirm.get(channel)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._confirm[channel]

    # -- the publisher ---------------------------------------------------------------

    async def publish(self, group: str, data: bytes) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._outbox.append((group, data, waiter))
        if self._flusher is None:
            self._flusher = self.loop.create_task(self._flush())
        await waiter

    async def _flush(self) -> None:
        import redis

        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                if self._pub_client is None:
                    self._pub_client = self.layer.client("pub", retries=1)
                try:
                    async with self._pub_client.pipeline(transaction=False) as pipe:
                        for group, data, _ in batch:
                            pipe.publish(self.layer.channel(group), data)
                        await pipe.execute()
                except (redis.RedisError, OSError) as exc:
                    for group, _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(self.layer.unavailable(group, exc))
                else:
                    for _, _, waiter in batch:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self._flusher = None

    async def close(self, *others: asyncio.Task[Any] | redis_async.Redis | None) -> None:
        await super().close(self._flusher, self._pub_client, *others)
