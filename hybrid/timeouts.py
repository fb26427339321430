"""``--request-timeout``: a request that runs out of time is cancelled and answered 504.

uWSGI's harakiri and gunicorn's ``timeout`` bound a request by killing its worker. A hybrid
worker serves many requests at once on one loop (a blocked loop is what ``--timeout``
catches), so the bound here is per request, on the loop:

* Tornado runs a request's handler as one task (``RequestHandler._execute``: ``prepare()``,
  the method, ``finish()``). :class:`~hybrid.web.HybridApplication` serves a route that has
  a timeout with :func:`timed_class` of its handler class (made once per class), whose
  ``_execute`` arms one timer for the request; a route without one is served by its own
  class, with no timer and no cost. (The subclass has the class's name, module and
  docstring; ``isinstance`` holds, ``type(handler) is Cls`` does not.)
* At the deadline the task is cancelled. Whatever the handler awaits raises
  ``CancelledError``: its commands are killed (:mod:`hybrid.process`), its database
  thread is given back (the request's lifecycle block ends), a
  :class:`~hybrid.DjangoHandler`'s method is cancelled with it. A handler with a
  ``stop_for_timeout()`` method is answered at once and asked to wind down by itself
  instead (the Django fallback tells Django that the client went away, and Django cancels
  the view; a sync view finishes its call on its thread first), and is cancelled only if
  it has not ended :data:`STOP_GRACE` seconds later.
* The client gets ``504 Gateway Timeout`` when nothing was sent yet; a response already
  streaming is cut off (its connection closed, so the client sees it incomplete). The
  access log line ends with ``timeout``.

A handler class sets its own limit with ``request_timeout = SECONDS`` (``None`` or ``0``:
none, e.g. for a long stream); WebSocket handlers have none. Sync code running on a
database thread cannot be interrupted: its current call finishes there, after the lane was
given back (the next request on that lane waits for it).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from hybrid._compat import tornado as tornado_compat

__all__ = ["STOP_GRACE", "route_timeout", "timed_class"]

#: Seconds a handler that was asked to stop (``stop_for_timeout()``) has before it is
#: cancelled.
STOP_GRACE = 1.0

_UNSET = object()

_timed: dict[tuple[type[RequestHandler], float], type[RequestHandler]] = {}


def route_timeout(handler_class: type[RequestHandler], default: float) -> float | None:
    """Seconds a request to ``handler_class`` may take: its ``request_timeout`` attribute,
    else ``default`` (``--request-timeout``, 0 for none); None for no limit."""
    if issubclass(handler_class, WebSocketHandler):
        return None
    value = getattr(handler_class, "request_timeout", _UNSET)
    if value is _UNSET:
        value = default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise TypeError(
            f"{handler_class.__module__}.{handler_class.__qualname__}.request_timeout = "
            f"{value!r}: use a number of seconds, or None for no limit"
        )
    return float(value) if 0 < value < math.inf else None


def timed_class(handler_class: type[RequestHandler], seconds: float) -> type[RequestHandler]:
    """``handler_class`` with requests cancelled after ``seconds`` (a subclass of the same
    name, made once per class and limit)."""
    key = (handler_class, seconds)
    timed = _timed.get(key)
    if timed is None:
        timed = _timed[key] = _make_timed(handler_class, seconds)
    return timed


def _make_timed(base: type[RequestHandler], seconds: float) -> type[RequestHandler]:
    class Timed(base):  # type: ignore[valid-type, misc]
        _hybrid_cancelled = False

        async def _execute(self, transforms: Any, *args: bytes, **kwargs: bytes) -> None:
            task = asyncio.current_task()
            assert task is not None
            timer = asyncio.get_running_loop().call_later(seconds, _expire, self, task)
            try:
                await super()._execute(transforms, *args, **kwargs)
            except asyncio.CancelledError:
                if not self._hybrid_cancelled or task.uncancel() > 0:
                    raise  # not (only) the deadline: a stopping worker, say
                _answer(self)
            finally:
                timer.cancel()

        def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
            if self.__dict__.get("_hybrid_timed_out"):
                _answer(self)  # what tornado answers a cancelled or failed handler
                return
            super().send_error(status_code, **kwargs)

    Timed.__name__ = base.__name__
    Timed.__qualname__ = base.__qualname__
    Timed.__module__ = base.__module__
    Timed.__doc__ = base.__doc__
    return Timed


def _expire(handler: Any, task: asyncio.Task[Any]) -> None:
    if task.done():
        return
    if tornado_compat.is_finished(handler) and tornado_compat.headers_written(handler):
        return  # answered; the handler is only tidying up
    handler._hybrid_timed_out = True
    stop = getattr(handler, "stop_for_timeout", None)
    if stop is None:
        _cancel(handler, task)  # answered as the task unwinds (tornado calls send_error)
        return
    stop()
    _answer(handler)  # now: what the handler still does goes nowhere
    asyncio.get_running_loop().call_later(STOP_GRACE, _cancel, handler, task)


def _cancel(handler: Any, task: asyncio.Task[Any]) -> None:
    if not task.done():
        handler._hybrid_cancelled = True
        task.cancel()


def _answer(handler: RequestHandler) -> None:
    """504 when nothing was sent yet; else the connection closed under the response."""
    if tornado_compat.is_finished(handler):
        return
    if not tornado_compat.headers_written(handler):
        RequestHandler.send_error(handler, 504)
        return
    connection: Any = handler.request.connection
    stream = getattr(connection, "stream", None)
    if stream is not None:
        stream.close()  # no last chunk: the client sees the response incomplete
    if connection is not None:
        connection.finish()  # the request is over (nothing more is written)
    tornado_compat.set_finished(handler, True)
    handler.application.log_request(handler)
