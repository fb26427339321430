"""One Django request's life around a Tornado handler, written once.

:class:`~hybrid.DjangoHandler`, :class:`~hybrid.DjangoWebSocketHandler` (its handshake,
and each ``open()`` / ``on_message()``) and the Django fallback all serve a Tornado
request as a Django request. What they share lives here:

* :func:`build_scope`: the ASGI scope of a Tornado request, with the server address of the
  worker that serves it (:func:`server_address`);
* :func:`handler_chain`: the application's ``settings.MIDDLEWARE`` chain around handler
  views (built once per application);
* :func:`request_lifecycle`: the lane (the request's database thread) and the request
  signals around one request, sent as Django sends them or done the cheap way
  (:mod:`hybrid.bridge.hygiene`), and the response closed at the end
  (:meth:`RequestLifecycle.close`);
* :func:`relay_cookies`: the cookies of a Django response as Tornado ``Set-Cookie``
  headers; :func:`make_async_streaming`: a sync streaming response pulled chunk by chunk
  on the lane.

The worker's options come from the application's typed :class:`~hybrid.Config`
(``HybridApplication.config``, :func:`application_config`); a handler mounted on a plain
Tornado ``Application`` gets the defaults (signals sent, the loop's default lane pool, no
server address in the scope).
"""

from __future__ import annotations

import io
import re
import weakref
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_to_bytes

from tornado.httputil import HTTPServerRequest
from tornado.web import Application, RequestHandler

from hybrid._compat import django as dj
from hybrid.bridge.chain import FlatChain, collect_instances
from hybrid.bridge.hygiene import RequestHygiene, close_response, request_hygiene
from hybrid.bridge.middleware import loop_safe_middleware
from hybrid.bridge.snapshot import settings_snapshot
from hybrid.bridge.unavailable import database_unavailable
from hybrid.config import Config
from hybrid.lanes import LazyLane, RequestLanes

if TYPE_CHECKING:
    from django.http import HttpResponseBase

__all__ = [
    "LifecycleScope",
    "RequestLifecycle",
    "application_config",
    "build_scope",
    "handler_chain",
    "make_async_streaming",
    "make_handler_chain",
    "relay_cookies",
    "request_lifecycle",
    "server_address",
]

#: How a request's ``request_started`` / ``request_finished`` are done: sent as Django
#: sends them, their work done without a thread hop (:mod:`hybrid.bridge.hygiene`), or
#: not at all (``--request-signals false``).
Signals = Literal["send", "hygiene", "off"]


# -- the worker's options --------------------------------------------------------------


def application_config(application: Application) -> Config | None:
    """The typed ``Config`` of a :class:`~hybrid.web.HybridApplication` (its ``config``);
    None for a plain Tornado ``Application``."""
    config = getattr(application, "config", None)
    return config if isinstance(config, Config) else None


def server_address(application: Application) -> tuple[str, int] | None:
    """``(host, port)`` of the worker serving ``application``: the scope's ``server``."""
    config = application_config(application)
    port = getattr(application, "port", None)
    if config is None or not isinstance(port, int):
        return None
    return (config.host, port)


# -- the ASGI scope ----------------------------------------------------------------------


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


# -- the middleware chain around handler views --------------------------------------------

_chains: weakref.WeakKeyDictionary[Application, Any] = weakref.WeakKeyDictionary()


def handler_chain(application: Application) -> Any:
    """The application's Django middleware chain around handler views (built once)."""
    chain = _chains.get(application)
    if chain is None:
        chain = _chains[application] = make_handler_chain()
    return chain


def make_handler_chain() -> Any:
    """A new ``settings.MIDDLEWARE`` chain whose "view" is the one the request carries
    (``request._hybrid_view``: the view, its args and kwargs). Imports Django."""
    from django.core.handlers.asgi import ASGIHandler
    from django.urls import ResolverMatch

    class HandlerChain(ASGIHandler):  # type: ignore[misc]  # Django is untyped
        """``settings.MIDDLEWARE`` around whatever view the request carries.

        Django's ``_get_response_async`` runs unchanged (view middleware, the view,
        exception and template-response middleware); only the URL resolution is replaced.
        """

        def resolve_request(self, request: Any) -> Any:
            view, args, kwargs = request.__dict__.pop("_hybrid_view")
            request.resolver_match = ResolverMatch(view, args, kwargs, route=request.path)
            return view, args, kwargs

        def make_view_atomic(self, view: Any) -> Any:
            return view  # ATOMIC_REQUESTS cannot wrap an async view

        def load_middleware(self, is_async: bool = False) -> None:
            from django.conf import settings

            with loop_safe_middleware(), collect_instances() as made:
                super().load_middleware(is_async)
            # After the project's process_exception: an unreachable database is a 503.
            dj.add_exception_middleware(self, database_unavailable)
            # Every layer a loop-safe variant (none left out as MiddlewareNotUsed): flat.
            if is_async and made and len(made) == len(settings.MIDDLEWARE):
                made.reverse()  # Django makes them innermost first
                dj.flatten_middleware_chain(self, lambda inner: FlatChain(made, inner))

    return HandlerChain()


# -- signals, lane and response -------------------------------------------------------------


class RequestLifecycle:
    """One request between ``request_started`` and ``request_finished``, on its lane.

    Made by :func:`request_lifecycle`. :meth:`begin` starts the request (scope, script
    prefix, ``request_started``); it ends with :meth:`close` (a response) or
    :meth:`finish` (no response: a WebSocket call).
    """

    def __init__(
        self,
        handler: RequestHandler,
        chain: Any,
        signals: Signals,
        hygiene: RequestHygiene | None,
        lane: LazyLane,
    ) -> None:
        self.handler = handler
        #: The middleware chain (:func:`handler_chain`); its class sends the signals.
        self.chain = chain
        self.signals: Signals = signals
        self.hygiene = hygiene
        #: The request's database thread (leased at its first thread-sensitive call).
        self.lane = lane
        self._scope: dict[str, Any] | None = None

    def scope(self) -> dict[str, Any]:
        """The request's ASGI scope (built once)."""
        if self._scope is None:
            server = server_address(self.handler.application)
            self._scope = build_scope(self.handler.request, server)
        return self._scope

    async def begin(self) -> dict[str, Any]:
        """Set the script prefix for ``reverse()`` as Django's ``ASGIHandler`` does
        (``FORCE_SCRIPT_NAME`` or the scope's root path) and send ``request_started``;
        returns the scope."""
        from django.urls import set_script_prefix

        scope = self.scope()
        # Django's get_script_prefix(scope), with the setting read once.
        set_script_prefix(settings_snapshot().force_script_name or scope["root_path"] or "/")
        await self.started()
        return scope

    async def started(self) -> None:
        """``request_started``, when sent as Django sends it (its work is otherwise done on
        the lane when it is leased)."""
        if self.signals == "send":
            from django.core import signals

            await signals.request_started.asend(sender=type(self.chain), scope=self.scope())

    def create_request(self, body: bytes) -> tuple[Any, Any]:
        """``(request, None)``: Django's ``ASGIRequest`` for the scope; or ``(None,
        response)``: the error response Django makes instead (a malformed request)."""
        request, response = self.chain.create_request(self.scope(), io.BytesIO(body))
        return request, response

    async def close(self, response: HttpResponseBase) -> None:
        """Close the response: its resources, then ``request_finished`` (which Django sends
        from ``close()``); the lane is given back."""
        if self.signals == "send":
            from asgiref.sync import sync_to_async

            await sync_to_async(response.close)()  # sends request_finished
        elif self.hygiene is not None:
            close_response(response, self.hygiene, self.lane)  # request_finished's work
        else:
            dj.close_resources(response)

    async def finish(self) -> None:
        """``request_finished`` for a request without a response; the lane is given back."""
        if self.hygiene is not None:
            self.hygiene.finished_on_loop()
            self.lane.release(self.hygiene.finished_on_lane)
        elif self.signals == "send":
            from asgiref.sync import sync_to_async
            from django.core import signals

            await sync_to_async(signals.request_finished.send)(sender=type(self.chain))


class _Setup:
    """What every request of one application needs, worked out at its first request."""

    __slots__ = ("chain", "db_threads", "request_signals")

    def __init__(self, application: Application) -> None:
        config = application_config(application)
        self.chain = handler_chain(application)
        self.request_signals = config is None or config.request_signals
        self.db_threads = config.db_thread_count if config is not None else None


def _setup(application: Application) -> _Setup:
    setup: _Setup | None = getattr(application, "_hybrid_setup", None)
    if setup is None:
        setup = _Setup(application)
        application._hybrid_setup = setup  # type: ignore[attr-defined]
    return setup


def request_lifecycle(handler: RequestHandler) -> LifecycleScope:
    """``async with request_lifecycle(handler) as life``: a lane of the worker's pool for
    the block (``--db-threads``), with the request signals done as ``--request-signals``
    says. The block ends the request with ``life.close(response)`` or ``life.finish()``.
    """
    return LifecycleScope(handler)


class LifecycleScope:
    """The ``async with`` block of :func:`request_lifecycle` (a class: it is entered once
    per request, and a generator-based context manager costs several times as much)."""

    __slots__ = ("_handler", "_lanes")

    def __init__(self, handler: RequestHandler) -> None:
        self._handler = handler

    async def __aenter__(self) -> RequestLifecycle:
        setup = _setup(self._handler.application)
        hygiene = None
        signals: Signals = "off"
        if setup.request_signals:
            hygiene = request_hygiene(type(setup.chain))
            signals = "hygiene" if hygiene is not None else "send"
        on_lease = hygiene.started if hygiene is not None else None
        self._lanes = RequestLanes(setup.db_threads, on_lease=on_lease)
        return RequestLifecycle(self._handler, setup.chain, signals, hygiene, self._lanes.lane)

    async def __aexit__(self, *exc_info: object) -> None:
        self._lanes.close()


# -- the response ----------------------------------------------------------------------------


def relay_cookies(handler: RequestHandler, response: HttpResponseBase) -> None:
    """Add the cookies the Django response sets as ``Set-Cookie`` headers of ``handler``."""
    for cookie in response.cookies.values():
        handler.add_header("Set-Cookie", cookie.output(header="").strip())


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
