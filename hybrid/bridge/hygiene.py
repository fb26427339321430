"""Django's own ``request_started`` / ``request_finished`` receivers, without thread hops.

Django connects its own receivers to the request signals: ``reset_queries`` and
``close_old_connections`` (``django.db``) to ``request_started``; ``close_old_connections``,
``close_caches`` (``django.core.cache``) and ``reset_urlconf`` (``django.core.handlers.base``)
to ``request_finished``. Sent the ASGI way, each signal is a round trip to the request's
thread, two per request, although the database receivers only matter on the thread whose
connections they check, and only if the request uses that thread at all.

When nothing else listens, :func:`request_hygiene` says how to do the same work cheaply:
the database receivers run on the request's lane when it is leased (before its first job)
and when it is given back (after its last), without the loop waiting for them; a request
that never leases a lane has no connection of its own to check. ``close_caches`` and
``reset_urlconf`` run on the loop, in the request's context, where the request's cache
connections and URLconf live (both are context-local; a lane thread outside
``sync_to_async`` would see other ones). As
soon as a project connects any other receiver, the signals are sent as Django sends them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybrid._compat import django as dj
from hybrid.bridge.snapshot import settings_snapshot

if TYPE_CHECKING:
    from hybrid.lanes import LazyLane

__all__ = ["RequestHygiene", "close_response", "request_hygiene"]


class RequestHygiene:
    """What sending ``request_started`` and ``request_finished`` would have done."""

    def __init__(self, sender: Any, started: list[Any], finished: list[Any]) -> None:
        from django.core import signals
        from django.core.cache import close_caches
        from django.db import close_old_connections

        self._close_caches = close_caches
        self.sender = sender
        self._started = [(signals.request_started, receiver) for receiver in started]
        self._finished_lane = [
            (signals.request_finished, r) for r in finished if r is close_old_connections
        ]
        self._finished_loop = [
            (signals.request_finished, r) for r in finished if r is not close_old_connections
        ]

    def started(self) -> None:
        """On the lane, when the request leases it: ``request_started``'s receivers."""
        for signal, receiver in self._started:
            receiver(signal=signal, sender=self.sender)

    def finished_on_lane(self) -> None:
        """On the lane, after the request's last job: ``close_old_connections``."""
        for signal, receiver in self._finished_lane:
            receiver(signal=signal, sender=self.sender)

    def finished_on_loop(self) -> None:
        """On the loop, in the request's context: the other ``request_finished`` receivers
        (``close_caches`` left out while no configured cache backend closes anything)."""
        skip = self._close_caches if settings_snapshot().caches_close_nothing else None
        for signal, receiver in self._finished_loop:
            if receiver is not skip:
                receiver(signal=signal, sender=self.sender)


_cached: tuple[Any, RequestHygiene | None] | None = None


def request_hygiene(sender: Any) -> RequestHygiene | None:
    """The cheap form of the request signals, or None when receivers other than Django's
    own are connected (then send the signals)."""
    global _cached
    from django.core import signals

    # Connecting or disconnecting a receiver changes a signal's ``receivers`` list.
    key = (sender, list(signals.request_started.receivers), signals.request_finished.receivers[:])
    if _cached is not None and _cached[0] == key:
        return _cached[1]
    hygiene = _make_hygiene(sender)
    _cached = (key, hygiene)
    return hygiene


def _make_hygiene(sender: Any) -> RequestHygiene | None:
    from django.core import signals
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    started, started_async = dj.live_receivers(signals.request_started, sender)
    finished, finished_async = dj.live_receivers(signals.request_finished, sender)
    if started_async or finished_async:
        return None
    if not set(started) <= {reset_queries, close_old_connections}:
        return None
    if not set(finished) <= {close_old_connections, close_caches, reset_urlconf}:
        return None
    return RequestHygiene(sender, started, finished)


def close_response(response: Any, hygiene: RequestHygiene, lane: LazyLane) -> None:
    """``HttpResponseBase.close()`` with ``request_finished`` done the cheap way; gives the
    request's lane back (after queueing ``close_old_connections`` on it, if leased)."""
    dj.close_resources(response, ignore_errors=True)
    response.closed = True
    hygiene.finished_on_loop()
    lane.release(hygiene.finished_on_lane)


#: Attributes through which a Django request refers back to itself: ``resolver_match``
#: (its view, a closure over the handler that holds the request), ``user`` and ``auser``
#: (AuthenticationMiddleware's closures over the request), ``_messages`` (the message
#: storage keeps the request).
_CYCLIC_ATTRIBUTES = ("resolver_match", "user", "auser", dj.MESSAGES_ATTRIBUTE)


def untangle_request(request: Any) -> None:
    """Break the reference cycles of a finished request, so that reference counting frees
    it at once.

    Under a sync server each request ends before the cyclic garbage collector next runs,
    which frees it young and cheaply. On an event loop many requests are in flight at
    every collection: their cycles survive to the oldest generation, whose full
    collections then take tens of milliseconds each under load (every request's p99).
    Called after the response is closed (``request_finished`` sent): nothing of Django's
    reads these attributes afterwards.
    """
    attributes = request.__dict__
    for name in _CYCLIC_ATTRIBUTES:
        attributes.pop(name, None)
