"""Group backends: the in-process one, and the process's current backend.

A backend (a "layer", as Channels calls it) is made once per process from the Config
(``--groups``, ``HYBRID_GROUPS``, ``settings.HYBRID["groups"]``) and keeps its state per
event loop (:class:`hybrid.slots.PerLoop`): each loop has its own :class:`Membership`, and
the Redis backend its own connections, because asyncio objects cannot cross loops. A worker
has one loop; tests run one loop each.

* :class:`LocalLayer` (``memory://``, the default): a message reaches the member sockets of
  this process only. Right for one worker, the quickstart and unit tests; it says so once
  in the log, because with several workers a room would be split among them.
* :class:`hybrid.groups.redis_layer.RedisLayer` (``redis://``, ``rediss://``,
  ``unix://``): Redis pub/sub, across workers and hosts.

:func:`current` is the process's backend: the one the worker installed, else one built
from the environment and Django settings on first use (a management command, a Celery
task, a shell).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from hybrid.groups.members import DEFAULT_QUEUE_LIMIT, Mailbox, Membership
from hybrid.groups.message import DEFAULT_MESSAGE_LIMIT, check_group, decode, encode
from hybrid.log import gen_log

if TYPE_CHECKING:
    from hybrid.config import Config

__all__ = ["Layer", "LocalLayer", "check", "current", "install", "make_layer", "reset"]


class Layer(ABC):
    """What every groups backend offers (see the module docs)."""

    #: The backend as it is named in logs and errors, without a password.
    name: str

    def __init__(
        self,
        *,
        message_limit: int = DEFAULT_MESSAGE_LIMIT,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        self.message_limit = message_limit
        self.queue_limit = queue_limit
        #: Sockets closed with 1013 because their queue overflowed.
        self.slow_closes = 0
        #: Messages refused on the sender's side because the backend was unavailable.
        self.send_failures = 0

    @abstractmethod
    def membership(self) -> Membership:
        """The running loop's membership."""

    @abstractmethod
    async def add(self, group: str, mailbox: Mailbox) -> None:
        """Put ``mailbox`` in ``group``; from now on it gets the group's messages."""

    @abstractmethod
    def discard(self, group: str, mailbox: Mailbox) -> None:
        """Take ``mailbox`` out of ``group`` (never blocks; safe from ``on_close``)."""

    @abstractmethod
    async def send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member of ``group``, wherever it is."""

    @abstractmethod
    def send_sync(self, group: str, message: dict[str, Any]) -> None:
        """:meth:`send` from a thread without a running event loop."""

    async def start(self) -> None:  # noqa: B027  # most backends need nothing started
        """Begin what a serving worker needs (the Redis subscriber), without waiting for it."""

    async def close(self) -> None:  # noqa: B027
        """Release the running loop's resources."""

    def encode(self, group: str, message: object) -> bytes:
        return encode(check_group(group), message, self.message_limit)


def refuse_on_loop(function: str) -> None:
    """Raise when called on a thread that runs an event loop (blocking it would stall it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{function}() would block the event loop it was called from: use "
        "`await hybrid.group_send(...)` in async code"
    )


class LocalLayer(Layer):
    """Groups within this process (``memory://``; see the module docs)."""

    name = "memory://"

    def __init__(self, **limits: int) -> None:
        super().__init__(**limits)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Membership] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._warned = False

    def membership(self) -> Membership:
        loop = asyncio.get_running_loop()
        membership = self._loops.get(loop)
        if membership is None:
            with self._lock:
                membership = self._loops.setdefault(loop, Membership())
        return membership

    async def add(self, group: str, mailbox: Mailbox) -> None:
        check_group(group)
        if not self._warned:
            self._warned = True
            gen_log.info(
                "groups: in-process backend: group messages reach the sockets of this "
                "worker only; with several workers or hosts set HYBRID['groups'] = "
                "'redis://HOST:6379/0' (or --groups)"
            )
        self.membership().add(group, mailbox)

    def discard(self, group: str, mailbox: Mailbox) -> None:
        self.membership().discard(group, mailbox)

    async def send(self, group: str, message: dict[str, Any]) -> None:
        self._fan_out(group, self.encode(group, message))

    def send_sync(self, group: str, message: dict[str, Any]) -> None:
        refuse_on_loop("group_send_sync")
        data = self.encode(group, message)
        if not self._loops and not self._warned:
            # A management command or a Celery task with the default backend: nobody here
            # has sockets, so the message goes nowhere. Say it once.
            self._warned = True
            gen_log.warning(
                "groups: in-process backend in a process without sockets: group messages "
                "sent from here reach nobody; set HYBRID['groups'] = 'redis://HOST:6379/0' "
                "(or HYBRID_GROUPS) here and in the workers"
            )
        self._fan_out(group, data)

    def _fan_out(self, group: str, data: bytes) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            loops = [(loop, m) for loop, m in self._loops.items() if group in m]
        for loop, membership in loops:
            if loop is running:
                membership.deliver(group, decode(data))
            elif not loop.is_closed():
                loop.call_soon_threadsafe(membership.deliver, group, decode(data))


def make_layer(config: Config) -> Layer:
    """The backend ``config.groups`` names (in-process when it names none)."""
    limits = {"message_limit": config.group_max_message, "queue_limit": config.group_queue}
    url = config.groups
    if url is None or url.startswith("memory:"):
        return LocalLayer(**limits)
    from hybrid.groups.redis_layer import RedisLayer

    return RedisLayer(url, **limits)


def check(config: Config) -> None:
    """In the master, before any worker starts: a Redis URL without the client installed
    is one :class:`ConfigError` line, not workers that cannot boot."""
    url = config.groups
    if url is None or url.startswith("memory:"):
        return
    try:
        import redis  # noqa: F401
    except ImportError:
        from hybrid.errors import ConfigError

        where = config.sources.get("groups", "--groups")
        raise ConfigError(
            f"{where}: groups over Redis need the redis client: pip install 'hybrid[redis]'",
            option=where,
            value=url,
        ) from None


_current: Layer | None = None
_current_lock = threading.Lock()


def install(layer: Layer) -> Layer:
    """Make ``layer`` the process's backend (the worker does, from its Config)."""
    global _current
    _current = layer
    return layer


def reset() -> Layer | None:
    """Forget the process's backend and return it (tests; a changed setting)."""
    global _current
    layer, _current = _current, None
    return layer


def current() -> Layer:
    """The process's backend: installed by the worker, else built from the environment and
    ``settings.HYBRID`` (when Django settings are configured) on first use."""
    layer = _current
    if layer is not None:
        return layer
    with _current_lock:
        if _current is None:
            install(make_layer(_config_outside_a_worker()))
        assert _current is not None
        return _current


def _config_outside_a_worker() -> Config:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from hybrid.config import Config

    try:  # settings are read on first access, from DJANGO_SETTINGS_MODULE
        hybrid = getattr(settings, "HYBRID", None) or {}
    except ImproperlyConfigured:  # no Django settings in this process: environment only
        hybrid = {}
    keys = ("groups", "group_queue", "group_max_message")
    options = {key: hybrid[key] for key in keys if key in hybrid}
    return Config.from_sources(django_options=options)
