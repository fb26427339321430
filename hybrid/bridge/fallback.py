"""Serve unmatched URLs with the project's own Django application, on the IOLoop.

Django's ``ASGIHandler`` is driven directly from a Tornado handler: async Django views run
on the worker's loop, sync views on the request's database thread (a lane of the worker's
:class:`~hybrid.lanes.LanePool`, not a new thread per request as under Django's own
ASGI entry point), so a slow sync view never blocks the hybrid routes on the same worker.
Django itself sends ``request_started`` / ``request_finished``; their receivers run on the
lane, which owns the connection they close. Streaming responses, with sync or async
iterators, reach the client chunk by chunk, and a client that disconnects cancels the
Django view (Django's own ``listen_for_disconnect`` sees ``http.disconnect``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from hybrid._compat import django as dj
from hybrid._compat import tornado as tornado_compat
from hybrid.bridge.hygiene import untangle_request
from hybrid.bridge.lifecycle import build_scope, make_async_streaming, server_address
from hybrid.bridge.middleware import loop_safe_middleware
from hybrid.bridge.unavailable import database_unavailable
from hybrid.lanes import lane_context

__all__ = ["ASGIApp", "DjangoFallbackHandler", "make_asgi_handler"]

ASGIMessage = dict[str, Any]
ASGIApp = Callable[
    [
        dict[str, Any],
        Callable[[], Awaitable[ASGIMessage]],
        Callable[[ASGIMessage], Awaitable[None]],
    ],
    Awaitable[None],
]

#: The Django requests of the ASGI call in progress, untangled when it returns.
_requests: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("hybrid_asgi_requests")


def make_asgi_handler(db_threads: int | None = None) -> ASGIApp:
    """Django's ASGI application, each request pinned to a lane of the loop's pool of
    ``db_threads`` (see :func:`hybrid.lanes.lane_pool`).

    Imports Django: call after ``django.setup()`` (the class is built here so that
    importing hybrid does not import Django).
    """
    from django.core.handlers.asgi import ASGIHandler

    class HybridASGIHandler(ASGIHandler):  # type: ignore[misc]  # Django is untyped
        """``ASGIHandler`` whose requests run on leased lanes and stream sync iterators.

        ``__call__`` replaces Django's ``async with ThreadSensitiveContext()`` (a new
        thread, and a new database connection, per request) with a lane of the worker's
        pool. Django consumes a sync ``StreamingHttpResponse`` iterator all at once when
        served asynchronously (with a warning); :meth:`send_response` pulls it chunk by
        chunk on the lane instead.
        """

        def __init__(self) -> None:
            self.db_threads = db_threads
            super().__init__()

        def load_middleware(self, is_async: bool = False) -> None:
            with loop_safe_middleware():
                super().load_middleware(is_async)
            # After the project's process_exception: an unreachable database is a 503.
            dj.add_exception_middleware(self, database_unavailable)

        async def __call__(
            self,
            scope: dict[str, Any],
            receive: Callable[[], Awaitable[ASGIMessage]],
            send: Callable[[ASGIMessage], Awaitable[None]],
        ) -> None:
            if scope["type"] != "http":
                raise ValueError(f"Django can only handle HTTP, not {scope['type']!r}")
            async with lane_context(self.db_threads):
                token = _requests.set([])
                try:
                    await self.handle(scope, receive, send)
                finally:
                    for request in _requests.get():
                        untangle_request(request)
                    _requests.reset(token)

        def create_request(self, scope: dict[str, Any], body_file: Any) -> Any:
            request, error_response = super().create_request(scope, body_file)
            if request is not None:
                _requests.get([]).append(request)
            return request, error_response

        async def send_response(
            self, response: Any, send: Callable[[ASGIMessage], Awaitable[None]]
        ) -> None:
            make_async_streaming(response)
            await super().send_response(response, send)

    return HybridASGIHandler()


# Tornado drops Content-Type/-Language/-Encoding from 204 and 304 responses; Django
# decides what its responses carry (tests/unit/bridge/test_parity.py).
@tornado_compat.keep_representation_headers
class DjangoFallbackHandler(RequestHandler):
    """Hands the request to Django's ASGI application and relays its response.

    Installed by :func:`hybrid.web.make_app` as the last rule, after ``HYBRID_ROUTES``.
    The scope's ``server`` is ``server`` when given, else the address of the worker
    serving the application (:func:`hybrid.bridge.lifecycle.server_address`).
    """

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, asgi_app: ASGIApp, server: tuple[str, int] | None = None) -> None:
        self._asgi_app = asgi_app
        self._server = server
        self._disconnected = asyncio.Event()
        self._body_given = False

    def compute_etag(self) -> None:
        # Django decides about ETags (ConditionalGetMiddleware); Tornado must not add one.
        return None

    def on_connection_close(self) -> None:
        self._disconnected.set()

    def stop_for_timeout(self) -> None:
        """``--request-timeout`` ran out (:mod:`hybrid.timeouts`, which answers the client
        itself): Django is told that the client went away, so that it cancels the view
        (its own disconnect handling) and returns; what it still sends goes nowhere."""
        self._disconnected.set()

    async def get(self, *args: str, **kwargs: str) -> None:
        server = self._server or server_address(self.application)
        await self._asgi_app(build_scope(self.request, server), self._receive, self._send)
        if not tornado_compat.is_finished(self) and not self._disconnected.is_set():
            raise RuntimeError("the Django application returned without sending a response")

    head = post = delete = patch = put = options = get

    async def _receive(self) -> ASGIMessage:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: ASGIMessage) -> None:
        if self._disconnected.is_set():
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.clear()
            self.clear_header("Content-Type")
            self.set_status(message["status"])
            for name, value in message.get("headers", ()):
                self.add_header(name.decode("latin-1"), value.decode("latin-1"))
        elif kind == "http.response.body":
            body = message.get("body", b"")
            try:
                if body:
                    self.write(body)
                if message.get("more_body", False):
                    if body:
                        await self.flush()
                else:
                    await self.finish()
            except StreamClosedError:
                self._disconnected.set()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} from Django")
