"""The Tornado application of one worker: the project's routes, then Django.

``settings.HYBRID_ROUTES`` names (as a dotted path) a list of Tornado URL specs; every URL
they do not match goes to the project's own Django URLconf through
:class:`hybrid.bridge.DjangoFallbackHandler`.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import time
import weakref
from collections.abc import Callable
from typing import Any

import tornado.web
from tornado import httputil
from tornado.http1connection import HTTP1ServerConnection
from tornado.websocket import WebSocketHandler

from hybrid._compat import tornado as tornado_compat
from hybrid.accesslog import REQUEST_ID_HEADER, AccessLog, count_streamed, ensure_request_id
from hybrid.bridge.fallback import DjangoFallbackHandler, make_asgi_handler
from hybrid.bridge.handler import DjangoHandler
from hybrid.bridge.hosts import DisallowedHostHandler, refused_host
from hybrid.bridge.websocket import DjangoWebSocketHandler
from hybrid.config import Config
from hybrid.errors import AppLoadError, describe_exception
from hybrid.log import access_log
from hybrid.metrics import WorkerMetrics
from hybrid.timeouts import route_timeout, timed_class

__all__ = ["HybridApplication", "load_routes", "make_app"]


def load_routes(path: str) -> list[Any]:
    """Import the list of URL specs that ``HYBRID_ROUTES`` names (``"shop.routes.routes"``)."""
    if not isinstance(path, str) or "." not in path:
        raise AppLoadError(
            f"HYBRID_ROUTES must be a dotted path like 'myproject.routes.routes', not {path!r}",
            target=str(path),
        )
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(
                f"HYBRID_ROUTES = {path!r}: no module named {module_name!r}; "
                "fix the setting or create the module",
                target=path,
            ) from None
        raise AppLoadError(
            f"HYBRID_ROUTES = {path!r}: importing {module_name!r} failed: "
            f"{describe_exception(exc)}; fix that import",
            target=path,
        ) from None
    except Exception as exc:
        raise AppLoadError(
            f"HYBRID_ROUTES = {path!r}: importing {module_name!r} failed: "
            f"{describe_exception(exc)}",
            target=path,
        ) from None
    try:
        routes = getattr(module, attribute)
    except AttributeError:
        raise AppLoadError(
            f"HYBRID_ROUTES = {path!r}: module {module_name!r} has no attribute "
            f"{attribute!r}; define it there or fix the setting",
            target=path,
        ) from None
    if not isinstance(routes, (list, tuple)):
        raise AppLoadError(
            f"HYBRID_ROUTES = {path!r} is a {type(routes).__name__}, "
            "not a list of Tornado URL specs",
            target=path,
        )
    return list(routes)


class HybridApplication(tornado.web.Application):
    """A Tornado ``Application`` that knows its connections and requests in flight.

    The worker uses it to drain before it stops (:meth:`start_draining`, :attr:`inflight`),
    to count requests for ``--max-requests`` (:attr:`served`, :attr:`on_request_done`), and
    to honour ``X-Real-IP``/``X-Forwarded-*`` only from loopback peers (``Config.xheaders``),
    which is where the nginx in front connects from, and from ``--forwarded-allow-ips`` (the
    nginx of another host). Tornado's own ``xheaders`` would trust any peer.

    Where it routes a request to a handler class (:meth:`get_handler_delegate`) it applies
    what every route gets, worked out once per class:

    * ``ALLOWED_HOSTS``, as Django checks it (:mod:`hybrid.bridge.hosts`), for routes that
      Django's own middleware does not check (plain Tornado handlers; not
      ``DjangoHandler``, ``DjangoWebSocketHandler`` or the Django fallback); a class with
      ``check_host = False`` is served whatever the host (health checks);
    * ``--request-timeout``, or the class's ``request_timeout`` (:mod:`hybrid.timeouts`).

    A request line in absolute form (``GET http://example.com/path``) is served as its
    origin form with that host as ``Host`` (RFC 9112: the target's host wins).

    hybrid's own options are the typed :attr:`config` (``--xheaders``,
    ``--max-header-size``, ``--db-threads``, ``--request-signals``, ``--host``,
    ``--request-timeout``) and :attr:`port`, which the bridge reads too
    (:mod:`hybrid.bridge.lifecycle`); the keyword arguments left are Tornado's settings
    (``cookie_secret``, ``websocket_ping_interval``...).
    """

    def __init__(
        self,
        handlers: Any = None,
        default_host: str | None = None,
        transforms: Any = None,
        *,
        config: Config | None = None,
        port: int | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(handlers, default_host, transforms, **settings)
        #: The worker's options (defaults when none was given).
        self.config = config if config is not None else Config()
        #: The port this application serves (None outside a worker).
        self.port = port
        #: Peers besides loopback whose proxy headers count (``--forwarded-allow-ips``).
        self.forwarded_allow: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(text) for text in self.config.forwarded_allow_ips
        )
        self.inflight = 0
        self.served = 0
        #: Open WebSockets (any tornado ``WebSocketHandler``), closed when the worker drains.
        self.websockets: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Set by the worker when ``--metrics-port`` is on.
        self.metrics: WorkerMetrics | None = None
        self.draining = False
        self.on_request_done: Callable[[], None] | None = None
        #: Where access lines go and what they say (``--access-log``, ``--access-log-format``).
        self.access = AccessLog(self.config.access_log, self.config.access_log_format)
        #: Every live connection, with the time it was first seen.
        self._connections: weakref.WeakKeyDictionary[HTTP1ServerConnection, float] = (
            weakref.WeakKeyDictionary()
        )
        #: Connections that have sent at least one request, with when they last went idle.
        self._used: weakref.WeakKeyDictionary[HTTP1ServerConnection, float] = (
            weakref.WeakKeyDictionary()
        )
        self._drain_started = 0.0
        self._busy: dict[httputil.HTTPConnection, HTTP1ServerConnection] = {}
        #: Per handler class: what every request to it gets (:class:`_Route`).
        self._routes: dict[type, _Route] = {}

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        if isinstance(server_conn, HTTP1ServerConnection):
            self._connections.setdefault(server_conn, time.monotonic())
        delegate = super().start_request(server_conn, request_conn)
        return _TrackedRequest(self, delegate, request_conn, server_conn)

    def get_handler_delegate(
        self,
        request: httputil.HTTPServerRequest,
        target_class: type[tornado.web.RequestHandler],
        target_kwargs: dict[str, Any] | None = None,
        path_args: list[bytes] | None = None,
        path_kwargs: dict[str, bytes] | None = None,
    ) -> Any:
        """Tornado's delegate for the routed class, with the host checked and the request
        timed as the class's :class:`_Route` says."""
        route = self._routes.get(target_class)
        if route is None:
            route = self._routes[target_class] = _Route(target_class, self.config)
        if route.check_host:
            host = refused_host(request, self)
            if host is not None:
                return super().get_handler_delegate(request, DisallowedHostHandler, {"host": host})
        if route.timed is not None:
            target_class = route.timed
        return super().get_handler_delegate(
            request, target_class, target_kwargs, path_args, path_kwargs
        )

    def start_draining(self) -> None:
        """From now on every response says ``Connection: close`` and closes its connection.

        Idle keep-alive connections are not closed at once: the proxy in front may be
        sending a request on one right now, and closing it would fail that request (nginx
        does not retry a POST). Under load the proxy reuses them and each closes after its
        response; one that stayed quiet for a while is closed by :meth:`drained`.
        """
        self.draining = True
        self._drain_started = time.monotonic()
        for websocket in list(self.websockets):
            # 1001 "going away": the client reconnects, and reaches a serving worker.
            websocket.close(1001, "worker stopping")  # a reload or a stop
        for request_conn in self._busy:
            tornado_compat.close_after_response(request_conn)

    def drained(self, grace: float = 1.0, quiet: float = 2.0) -> bool:
        """Close keep-alive connections idle for ``quiet`` seconds of the drain; True when
        nothing is left: no request in flight, no response being written, no open
        keep-alive connection, and no connection accepted in the last ``grace`` seconds
        still to send its request (closing one would reset a request on its way)."""
        now = time.monotonic()
        if self.inflight or now - self._drain_started < grace:
            # A connection accepted just before the server stopped is known to us only
            # once tornado's task for it first runs: give every such one time to show up.
            return False
        done = True
        for conn, seen in list(self._connections.items()):
            if conn.stream.closed():
                continue
            if conn.stream.writing():
                done = False
            elif conn in self._used:
                idle_since = max(self._used[conn], self._drain_started)
                if now - idle_since >= quiet:
                    conn.stream.close()
                else:
                    done = False
            elif now - seen < grace:
                done = False
        return done

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """One access line per request; by default a ``hybrid.access`` line with method,
        path, status, duration and port, else as ``--access-log(-format)`` say."""
        if self.metrics is not None:
            self.metrics.observe(handler)
        if not self.access.plain:
            self.access.write(handler, self.port)
            return
        status = handler.get_status()
        log = access_log.info if status < 400 else access_log.warning
        if status >= 500:
            log = access_log.error
        log(
            "%s %s %d %.1fms port=%s%s",
            handler.request.method,
            handler.request.uri,
            status,
            1000.0 * handler.request.request_time(),
            self.port,
            " timeout" if handler.__dict__.get("_hybrid_timed_out") else "",
        )


#: Routes whose host Django's middleware checks (the request becomes a Django request).
_CHECKED_BY_DJANGO = (DjangoHandler, DjangoFallbackHandler, DjangoWebSocketHandler)


class _Route:
    """What every request to one handler class gets: a host check, a timeout."""

    __slots__ = ("check_host", "timed")

    def __init__(self, handler_class: type[tornado.web.RequestHandler], config: Config) -> None:
        #: Whether ALLOWED_HOSTS is checked here (Django checks its own routes).
        self.check_host = bool(getattr(handler_class, "check_host", True)) and not issubclass(
            handler_class, _CHECKED_BY_DJANGO
        )
        seconds = route_timeout(handler_class, config.request_timeout)
        #: The class that serves it with its timeout (None: the class itself, no timer).
        self.timed = timed_class(handler_class, seconds) if seconds is not None else None


#: The HTTP server reads request heads up to this many times ``--max-header-size``, so
#: that a head over the limit can be answered with 431 instead of a dropped connection.
HEAD_READ_FACTOR = 4


def _head_size(
    start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
    headers: httputil.HTTPHeaders,
) -> int:
    """Bytes of the request head as sent (request line and header lines, CRLFs included)."""
    line = sum(len(str(part)) + 1 for part in start_line) + 1
    return line + sum(len(name) + len(value) + 4 for name, value in headers.get_all()) + 2


#: The headers tornado's ``_apply_xheaders`` reads (it validates the IP with getaddrinfo,
#: so it is worth skipping when a request carries none of them).
_PROXY_HEADERS = ("X-Real-Ip", "X-Forwarded-For", "X-Scheme", "X-Forwarded-Proto")


def _has_proxy_headers(headers: httputil.HTTPHeaders) -> bool:
    return any(name in headers for name in _PROXY_HEADERS)


def _is_loopback(context: object) -> bool:
    address = getattr(context, "address", None)
    if not isinstance(address, tuple) or not address:
        return False
    return _loopback_ip(address[0])


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_allowed(context: object, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether the peer is in ``--forwarded-allow-ips`` (the nginx of another host)."""
    if not networks:
        return False
    address = getattr(context, "address", None)
    if not isinstance(address, tuple) or not address:
        return False
    return _allowed_ip(address[0], networks)


@functools.lru_cache(maxsize=256)
def _allowed_ip(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


@functools.lru_cache(maxsize=64)
def _loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin_form(
    start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders
) -> httputil.RequestStartLine:
    """An absolute-form request line (``GET http://host/path``) as its origin form, its
    host made the ``Host`` header (RFC 9112, 3.2.2); other forms as they are."""
    target = start_line.path
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return start_line
    authority, _, path = rest.partition("/")
    if "?" in authority:  # http://host?q
        authority, _, query = authority.partition("?")
        path = "?" + query
    headers["Host"] = authority.rpartition("@")[2]  # without userinfo
    return httputil.RequestStartLine(start_line.method, "/" + path, start_line.version)


class _TrackedRequest(httputil.HTTPMessageDelegate):
    """Counts a request as in flight from its headers until its response is finished,
    and applies proxy headers for loopback peers."""

    def __init__(
        self,
        app: HybridApplication,
        inner: httputil.HTTPMessageDelegate,
        request_conn: httputil.HTTPConnection,
        server_conn: object,
    ) -> None:
        self._app = app
        self._inner = inner
        self._conn = request_conn
        self._server_conn = server_conn
        self._active = False
        self._xheaders_applied = False
        self._refused = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        limit = self._app.config.max_header_size
        if limit and _head_size(start_line, headers) > limit:
            self._refuse_head(start_line, limit)
            return None
        if isinstance(start_line, httputil.RequestStartLine) and start_line.path[:1] != "/":
            start_line = _origin_form(start_line, headers)
        self._active = True
        self._app.inflight += 1
        if isinstance(self._server_conn, HTTP1ServerConnection):
            self._app._busy[self._conn] = self._server_conn
            self._app._used[self._server_conn] = float("inf")  # busy, not idle
        if self._app.draining:
            tornado_compat.close_after_response(self._conn)
        if self._app.config.xheaders and _has_proxy_headers(headers):
            context = getattr(self._conn, "context", None)
            if _is_loopback(context) or _is_allowed(context, self._app.forwarded_allow):
                tornado_compat.apply_xheaders(context, headers)
                self._xheaders_applied = True
        request_id = ensure_request_id(headers)
        finish = self._conn.finish
        write_headers = self._conn.write_headers

        def finish_and_count() -> None:
            try:
                finish()
            finally:
                self._done(completed=True)
                self._unwrap("finish", "write_headers", "write")

        def write_headers_with_id(
            start_line: httputil.ResponseStartLine | httputil.RequestStartLine,
            headers: httputil.HTTPHeaders,
            chunk: bytes | None = None,
        ) -> Any:
            # The request's id goes back to the client unless the handler set one itself.
            if REQUEST_ID_HEADER not in headers:
                headers[REQUEST_ID_HEADER] = request_id
            self._unwrap("write_headers")
            if (
                self._app.access.counts_body
                and isinstance(start_line, httputil.ResponseStartLine)
                and "Content-Length" not in headers
            ):
                self._count_streamed_body(chunk)
            return write_headers(start_line, headers, chunk)

        tornado_compat.wrap_connection(self._conn, "finish", finish_and_count)
        tornado_compat.wrap_connection(self._conn, "write_headers", write_headers_with_id)
        result = self._inner.headers_received(start_line, headers)
        handler_class = tornado_compat.routed_handler_class(self._inner)
        detach = getattr(self._conn, "detach", None)
        if (
            detach is not None
            and isinstance(handler_class, type)
            and issubclass(handler_class, WebSocketHandler)
        ):

            def detach_and_count() -> Any:
                # A WebSocket takes the stream over: the HTTP request is over (it must not
                # count as in flight for ever) and the socket is closed when we drain.
                stream = detach()
                handler = tornado_compat.routed_handler(self._inner)
                if isinstance(handler, WebSocketHandler):
                    self._app.websockets.add(handler)
                self._done(completed=True)
                self._unwrap("finish", "detach", "write_headers", "write")
                return stream

            tornado_compat.wrap_connection(self._conn, "detach", detach_and_count)
        return result

    def data_received(self, chunk: bytes) -> Any:
        if self._refused:
            return None
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        if self._refused:
            return
        self._inner.finish()
        self._restore_peer()

    def _refuse_head(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, limit: int
    ) -> None:
        """431 for a request head over ``--max-header-size``, then close the connection.

        The worker's HTTP server reads heads up to 4x the limit (beyond that Tornado can only
        drop the connection), so a client that sends one too large gets a status, not a
        reset."""
        self._refused = True
        body = b"Request header fields too large\n"
        tornado_compat.close_after_response(self._conn)
        self._conn.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", 431, "Request Header Fields Too Large"),
            httputil.HTTPHeaders(
                {
                    "Content-Type": "text/plain; charset=utf-8",
                    "Content-Length": str(len(body)),
                    "Connection": "close",
                }
            ),
            body,
        )
        self._conn.finish()
        method = getattr(start_line, "method", "-")
        path = getattr(start_line, "path", "-")[:200]
        line = (
            f"{method} {path} 431 request head over --max-header-size {limit} port={self._app.port}"
        )
        self._app.access.emit(line, 431)

    def on_connection_close(self) -> None:
        self._done(completed=False)
        self._unwrap("finish", "detach", "write_headers")
        self._inner.on_connection_close()
        self._restore_peer()

    def _count_streamed_body(self, first: bytes | None) -> None:
        """A response without Content-Length: count its body bytes for the access log's
        size atoms, from the chunk sent with the headers to the last ``write``."""
        conn = self._conn
        count_streamed(conn, len(first) if first else 0)
        write = conn.write

        def write_and_count(chunk: bytes) -> Any:
            count_streamed(conn, len(chunk))
            return write(chunk)

        tornado_compat.wrap_connection(conn, "write", write_and_count)

    def _unwrap(self, *names: str) -> None:
        # The wrappers close a reference cycle (connection -> wrapper -> this delegate ->
        # connection). Left in place, every request's objects would wait for the cyclic
        # garbage collector, which then runs its slow full collections under load (tens
        # of milliseconds each, the p99 of every endpoint); removed, plain reference
        # counting frees them as soon as the request is over. (A WebSocket handshake
        # finishes before it detaches: "detach" stays until then.)
        tornado_compat.unwrap_connection(self._conn, *names)

    def _restore_peer(self) -> None:
        # The request object has copied remote_ip and protocol by now; the next request
        # on this connection must start from the real peer again (as tornado does).
        if self._xheaders_applied:
            self._xheaders_applied = False
            tornado_compat.unapply_xheaders(getattr(self._conn, "context", None))

    def _done(self, *, completed: bool) -> None:
        if self._active:
            self._active = False
            self._app.inflight -= 1
            server_conn = self._app._busy.pop(self._conn, None)
            if server_conn is not None:
                self._app._used[server_conn] = time.monotonic()
            if completed:
                self._app.served += 1
                if self._app.on_request_done is not None:
                    self._app.on_request_done()


def make_app(config: Config, port: int) -> HybridApplication:
    """Set up Django and build one worker's application. Call only after fork.

    Raises :class:`AppLoadError` with a one-line reason when the project cannot load.
    """
    import django
    from django.conf import settings

    try:
        django.setup()
        asgi_app = make_asgi_handler(config.db_thread_count)
    except Exception as exc:
        raise AppLoadError(
            f"Django setup failed: {describe_exception(exc)}", target="INSTALLED_APPS"
        ) from None
    routes_path = getattr(settings, "HYBRID_ROUTES", None)
    routes = load_routes(routes_path) if routes_path is not None else []
    fallback = (r".*", DjangoFallbackHandler, {"asgi_app": asgi_app})
    try:
        return HybridApplication([*routes, fallback], config=config, port=port)
    except Exception as exc:
        raise AppLoadError(
            f"HYBRID_ROUTES = {routes_path!r} holds an invalid URL spec: {describe_exception(exc)}",
            target=str(routes_path),
        ) from None
