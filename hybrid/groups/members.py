"""Who is in which group on this event loop, and each member's bounded outgoing queue.

A backend receives one message for a group and hands it to :meth:`Membership.deliver`,
which gives each member socket of this loop its own shallow copy through the member's
:class:`Mailbox`. A mailbox runs its socket's handler for one message at a time, in the
order they came, and waits for the socket to flush what that handler wrote before it runs
the next one. What arrives meanwhile waits in the mailbox, up to ``limit`` messages; one
more and the mailbox calls its ``overflow`` callback (the socket closes with 1013, "try
again later") and drops what it held. So a slow or stalled client costs at most ``limit``
messages of memory, and never slows the other members: each has its own mailbox.

Used only from its loop's thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from hybrid.log import app_log

__all__ = ["DEFAULT_QUEUE_LIMIT", "Mailbox", "Membership"]

#: Messages a member may have waiting before it is closed with 1013
#: (``HYBRID["group_queue"]``). Channels' default channel capacity is 100 as well.
DEFAULT_QUEUE_LIMIT = 100

Dispatch = Callable[[dict[str, Any]], Awaitable[Any] | None]


class Mailbox:
    """One member's queue of group messages (see the module docs).

    ``dispatch`` runs the socket's handler for one message and may return an awaitable;
    ``flushed`` returns None when everything the socket wrote has left for the kernel, or
    a future that is done when it has; ``overflow`` is called once, when the queue would
    exceed ``limit``.
    """

    __slots__ = ("_busy", "_dispatch", "_flushed", "_overflow", "closed", "limit", "queue")

    def __init__(
        self,
        dispatch: Dispatch,
        flushed: Callable[[], asyncio.Future[Any] | None],
        overflow: Callable[[], None],
        limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        self._dispatch = dispatch
        self._flushed = flushed
        self._overflow = overflow
        self.limit = limit
        self.queue: deque[dict[str, Any]] = deque()
        self.closed = False
        self._busy = False

    def put(self, message: dict[str, Any]) -> None:
        """Queue ``message``, and run it now if nothing is ahead of it."""
        if self.closed:
            return
        if len(self.queue) >= self.limit:
            self.close()
            self._overflow()
            return
        self.queue.append(message)
        if not self._busy:
            self._pump()

    def close(self) -> None:
        """Drop what is queued and take nothing more."""
        self.closed = True
        self.queue.clear()

    def _pump(self, _: object = None) -> None:
        self._busy = True
        queue = self.queue
        while queue and not self.closed:
            message = queue.popleft()
            try:
                result = self._dispatch(message)
            except Exception:
                app_log.error("group message %r failed", message.get("type"), exc_info=True)
                continue
            if result is not None and inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(self._after_task)
                return
            pending = self._flushed()
            if pending is not None:
                pending.add_done_callback(self._pump)
                return
        self._busy = False

    def _after_task(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            app_log.error("group message handler failed", exc_info=task.exception())
        pending = self._flushed()
        if pending is not None:
            pending.add_done_callback(self._pump)
        else:
            self._pump()


class Membership:
    """The groups of one event loop and their members' mailboxes."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[Mailbox, None]] = {}
        #: Copies handed to members so far (the ``hybrid_group_deliveries`` metric).
        self.delivered = 0

    def add(self, group: str, mailbox: Mailbox) -> bool:
        """Put ``mailbox`` in ``group``; True when the group was empty on this loop."""
        members = self._groups.get(group)
        if members is None:
            self._groups[group] = {mailbox: None}
            return True
        members[mailbox] = None
        return False

    def discard(self, group: str, mailbox: Mailbox) -> bool:
        """Take ``mailbox`` out of ``group``; True when that emptied the group here."""
        members = self._groups.get(group)
        if members is None or mailbox not in members:
            return False
        del members[mailbox]
        if members:
            return False
        del self._groups[group]
        return True

    def __contains__(self, group: str) -> bool:
        return group in self._groups

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._groups))

    def __len__(self) -> int:
        return len(self._groups)

    def members(self, group: str) -> int:
        members = self._groups.get(group)
        return len(members) if members else 0

    def deliver(self, group: str, message: dict[str, Any]) -> int:
        """Give each member of ``group`` its own copy of ``message``; how many got one."""
        members = self._groups.get(group)
        if not members:
            return 0
        for mailbox in list(members):
            mailbox.put(dict(message))
        self.delivered += len(members)
        return len(members)

    def memberships(self) -> int:
        """Sockets in groups here, a socket in two groups counted twice."""
        return sum(len(members) for members in self._groups.values())
