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
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from hybrid._compat import tornado as tornado_compat
from hybrid.bridge.hygiene import untangle_request
from hybrid.bridge.middleware import loop_safe_middleware
from hybrid.lanes import lane_context

__all__ = [
    "ASGIApp",
    "DjangoFallbackHandler",
    "build_scope",
    "make_asgi_handler",
    "make_async_streaming",
]

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


def build_scope(
    request: HTTPServerRequest, server: tuple[str, int] | None = None
) -> dict[str, Any]:
    """The ASGI HTTP connection scope for a Tornado request (ASGI spec 2.3).

    Tornado hands over the request line decoded as latin-1; the bytes are recovered from
    it. Bytes that are not UTF-8 never reach Django as such (whose ``ASGIRequest`` would
    fail on them with a 500 or a 400 with a traceback): in ``path`` they stay
    percent-encoded, as Django's WSGI handler keeps them (``repercent_broken_unicode``), so
    such a URL resolves like any unknown one (404); in ``query_string`` every non-ASCII
    byte is percent-encoded (what browsers send anyway), which Django decodes to the same
    text when it is UTF-8 and to U+FFFD where it is not.
    """
    raw_path = request.path.encode("latin-1")
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.get_all()
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.version.removeprefix("HTTP/"),
        "method": request.method or "GET",
        "scheme": request.protocol,
        "path": _decode_path(raw_path),
        "raw_path": raw_path,
        "query_string": _NON_ASCII.sub(_percent, request.query.encode("latin-1")),
        "root_path": "",
        "headers": headers,
        "client": (request.remote_ip, 0) if request.remote_ip else None,
        "server": server,
        "state": {},
    }


_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def _decode_path(raw_path: bytes) -> str:
    """The percent-decoded path; bytes that are not UTF-8 stay percent-encoded."""
    path = unquote_to_bytes(raw_path)
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        from django.utils.encoding import repercent_broken_unicode

        return bytes(repercent_broken_unicode(path)).decode("utf-8")


def make_async_streaming(response: Any) -> None:
    """Give a ``StreamingHttpResponse`` over a sync iterator an async one, in place.

    Each chunk is pulled on the request's database thread, one at a time, so the response
    streams chunk by chunk (Django's own ``__aiter__`` would read the whole sync iterator
    first, with a warning). Other responses are left alone.
    """
    if not getattr(response, "streaming", False) or response.is_async:
        return
    from asgiref.sync import sync_to_async

    parts = iter(response.streaming_content)
    done = object()

    def pull_one() -> Any:
        return next(parts, done)

    pull = sync_to_async(pull_one, thread_sensitive=True)

    async def chunk_by_chunk() -> Any:
        while (part := await pull()) is not done:
            yield part

    response.streaming_content = chunk_by_chunk()


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
# decides what its responses carry (tests/test_parity.py).
@tornado_compat.keep_representation_headers
class DjangoFallbackHandler(RequestHandler):
    """Hands the request to Django's ASGI application and relays its response.

    Installed by :func:`hybrid.web.make_app` as the last rule, after ``HYBRID_ROUTES``.
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

    async def get(self, *args: str, **kwargs: str) -> None:
        await self._asgi_app(build_scope(self.request, self._server), self._receive, self._send)
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
