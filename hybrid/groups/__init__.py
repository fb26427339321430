"""Groups: a message reaches every WebSocket in a group, on every worker and every host.

In Channels' words, for code that already speaks them::

    class Room(hybrid.DjangoWebSocketHandler):
        async def open(self, name):
            await self.group_add(f"room-{name}")

        async def on_message(self, text):
            await hybrid.group_send(f"room-{self.name}", {"type": "chat.message", "text": text})

        def chat_message(self, message):          # "chat.message" -> chat_message
            self.write_message(message["text"])

    hybrid.group_send_sync("room-42", {...})      # a sync view, a management command, Celery

Backends, chosen by ``HYBRID["groups"]`` (``--groups``, ``HYBRID_GROUPS``):
``redis://host:6379/0`` (Redis pub/sub; ``pip install 'hybrid[redis]'``) or, by default,
``memory://`` (this process only). Delivery is at most once and in order per sender;
each socket has a bounded queue (``HYBRID["group_queue"]``) and is closed with 1013 when it
overflows. See docs/guide/groups.md.
"""

from __future__ import annotations

from typing import Any

from hybrid.errors import GroupError, GroupsUnavailable
from hybrid.groups.layer import Layer, LocalLayer, current
from hybrid.groups.socket import TRY_AGAIN_LATER, GroupsMixin

__all__ = [
    "TRY_AGAIN_LATER",
    "GroupError",
    "GroupsMixin",
    "GroupsUnavailable",
    "Layer",
    "LocalLayer",
    "backend",
    "group_send",
    "group_send_sync",
]


async def group_send(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` (a JSON-serialisable dict with a ``"type"``) to every socket in
    ``group``, on every worker and host.

    Raises :class:`GroupError` for a bad group name or message (not a dict, no ``type``,
    not JSON, over ``HYBRID["group_max_message"]``) and :class:`GroupsUnavailable` when the
    backend cannot take it (Redis down); then nothing was delivered.
    """
    await current().send(group, message)


def group_send_sync(group: str, message: dict[str, Any]) -> None:
    """:func:`group_send` for synchronous code: a sync Django view (it runs on a database
    thread), a management command, a Celery task. Raises ``RuntimeError`` when called on
    a thread that runs an event loop, which it would block; ``await group_send`` there."""
    current().send_sync(group, message)


def backend() -> Layer:
    """The process's groups backend (``backend().name`` says which)."""
    return current()
