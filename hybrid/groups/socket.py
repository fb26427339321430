"""``GroupsMixin``: group membership and delivery for a Tornado ``WebSocketHandler``.

``DjangoWebSocketHandler`` has it already; a plain Tornado handler gets it with
``class Feed(GroupsMixin, WebSocketHandler)``.

Delivery, as Channels dispatches: a message ``{"type": "chat.message", ...}`` calls the
socket's ``chat_message(message)``, sync or ``async def``. Override
:meth:`GroupsMixin.on_group_message` to take every message in one place instead. Handlers
run on the worker's loop, outside a request's lifecycle: write to the socket there
(``self.write_message``), and do database work in the sender, which has a request.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from hybrid.groups.layer import Layer, current
from hybrid.groups.members import Mailbox
from hybrid.groups.message import check_group, method_name
from hybrid.log import app_log

__all__ = ["GroupsMixin", "TRY_AGAIN_LATER"]

#: The close code of a socket whose group messages piled up past its queue (RFC 6455's
#: registry: "Try Again Later").
TRY_AGAIN_LATER = 1013

#: Names a message type may not call: everything a WebSocketHandler already has.
_RESERVED = frozenset(dir(WebSocketHandler))


class GroupsMixin:
    """``group_add`` / ``group_discard`` and delivery by message type (see the module).

    ``groups = ["broadcast"]`` on the class joins those groups when a socket opens, before
    ``open()`` runs, as a Channels consumer's ``groups`` does.
    """

    #: Groups every socket of the class joins when it opens (before ``open()`` runs).
    groups: ClassVar[Sequence[str]] = ()

    _group_mailbox: Mailbox | None = None
    _group_names: dict[str, None] | None = None
    _group_layer: Layer | None = None
    _group_last_write: asyncio.Future[None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("open")
        if method is not None and not getattr(method, "_hybrid_joins_groups", False):
            setattr(cls, "open", _joining_groups_first(method))  # noqa: B010
        for group in cls.groups:
            check_group(group)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        """Tornado's ``open``: here, join the class's ``groups``."""
        await self._group_join_declared()

    @property
    def joined_groups(self) -> frozenset[str]:
        """The groups this socket is in now."""
        return frozenset(self._group_names or ())

    async def group_add(self, group: str) -> None:
        """Join ``group``: from now on this socket gets the group's messages, from every
        worker and host. Returns once the backend confirmed the subscription (or, when
        Redis is down, at once: the group is subscribed when Redis is back)."""
        check_group(group)
        layer = self._group_layer or current()
        self._group_layer = layer
        if self._group_mailbox is None:
            self._group_mailbox = Mailbox(
                self._group_dispatch,
                self._group_flushed,
                self._group_overflow,
                layer.queue_limit,
            )
            self._group_names = {}
        if self._group_mailbox.closed:
            return
        assert self._group_names is not None
        if group in self._group_names:
            return
        self._group_names[group] = None
        await layer.add(group, self._group_mailbox)

    async def group_discard(self, group: str) -> None:
        """Leave ``group`` (a group it is not in is ignored). Closing the socket leaves
        every group by itself."""
        self._group_leave(group)

    def on_group_message(self, message: dict[str, Any]) -> Awaitable[Any] | None:
        """Handle one group message: by default, call the method its ``type`` names
        (``chat.message`` -> ``chat_message``). A type with no such method, or one naming
        something every WebSocketHandler has (``close``, ``write_message``...), is logged
        and dropped."""
        kind = message.get("type", "")
        name = method_name(kind)
        method = None
        if not name.startswith("_") and name not in _RESERVED:
            method = getattr(self, name, None)
        if not callable(method):
            app_log.error(
                "%s has no method %s() for group message type %r; message dropped "
                "(define it, or override on_group_message)",
                type(self).__qualname__,
                name,
                kind,
            )
            return None
        result: Awaitable[Any] | None = method(message)
        return result

    # -- plumbing ---------------------------------------------------------------------

    def write_message(
        self, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = super().write_message(message, binary)  # type: ignore[misc]
        self._group_last_write = future
        return future

    def on_connection_close(self) -> None:
        super().on_connection_close()  # type: ignore[misc]
        self._group_leave_all()

    async def _group_join_declared(self) -> None:
        for group in type(self).groups:
            await self.group_add(group)

    def _group_dispatch(self, message: dict[str, Any]) -> Awaitable[Any] | None:
        if self.ws_connection is None:  # type: ignore[attr-defined]
            return None
        try:
            result = self.on_group_message(message)
        except WebSocketClosedError:  # closed under the handler: nothing to deliver to
            return None
        if result is not None and inspect.isawaitable(result):
            return _closed_is_quiet(result)
        return result

    def _group_flushed(self) -> asyncio.Future[None] | None:
        """None when what this socket wrote has left for the kernel, else the future of its
        last write (done when it has)."""
        connection = self.ws_connection  # type: ignore[attr-defined]
        stream = getattr(connection, "stream", None)
        last = self._group_last_write
        if stream is None or last is None or last.done() or not stream.writing():
            return None
        return last

    def _group_overflow(self) -> None:
        if self._group_layer is not None:
            self._group_layer.slow_closes += 1
        mailbox = self._group_mailbox
        app_log.warning(
            "%s: WebSocket %s closed with 1013: %d group messages waited for a slow client",
            type(self).__qualname__,
            self.request.path,  # type: ignore[attr-defined]
            mailbox.limit if mailbox else 0,
        )
        self._group_leave_all()
        self.close(TRY_AGAIN_LATER, "too many group messages waiting; try again later")  # type: ignore[attr-defined]

    def _group_leave(self, group: str) -> None:
        names = self._group_names
        if not names or group not in names:
            return
        del names[group]
        if self._group_layer is not None and self._group_mailbox is not None:
            self._group_layer.discard(group, self._group_mailbox)

    def _group_leave_all(self) -> None:
        if self._group_mailbox is not None:
            self._group_mailbox.close()
        for group in list(self._group_names or ()):
            self._group_leave(group)


async def _closed_is_quiet(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except WebSocketClosedError:
        return None


def _joining_groups_first(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(self: GroupsMixin, *args: Any, **kwargs: Any) -> Any:
        await self._group_join_declared()
        result = method(self, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    wrapper._hybrid_joins_groups = True  # type: ignore[attr-defined]
    return wrapper
