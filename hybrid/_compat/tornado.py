"""tornado internals hybrid relies on (see :mod:`hybrid._compat`).

Tornado has no public way to close a keep-alive connection after the current response,
to honour proxy headers from some peers only, to learn when a response is finished or a
WebSocket takes the stream over, or to read back what a ``RequestHandler`` has buffered
(body, headers, reason, cookies). :mod:`hybrid.web` needs the first three to drain and
count requests, :class:`hybrid.bridge.DjangoHandler` the last to turn a handler's output
into a Django response. Each function below is the one place hybrid touches the private
name it wraps; :func:`library` declares them all for the startup check.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any, TypeVar

from tornado import httputil
from tornado.concurrent import Future
from tornado.http1connection import HTTP1Connection
from tornado.web import RequestHandler

from hybrid._compat import Internal, Library, has_attrs

__all__ = [
    "apply_xheaders",
    "close_after_response",
    "finish_final",
    "forget_new_cookies",
    "headers_written",
    "is_finished",
    "keep_representation_headers",
    "library",
    "new_cookies",
    "reason",
    "replace_output",
    "reset_headers",
    "response_headers",
    "routed_handler",
    "routed_handler_class",
    "set_finished",
    "should_not_send_content",
    "take_output",
    "unapply_xheaders",
    "unwrap_connection",
    "wrap_connection",
]

VERIFIED = ("6.5", "6.6")
REQUIREMENT = "tornado>=6.5.10,<7"

_H = TypeVar("_H", bound=type[RequestHandler])


# -- HTTP/1 connections (hybrid.web) ---------------------------------------------------


def close_after_response(request_conn: httputil.HTTPConnection) -> None:
    """Make Tornado add ``Connection: close`` to this response and close after it."""
    # A draining worker must close keep-alive connections; tornado has no public switch.
    if isinstance(request_conn, HTTP1Connection):
        request_conn._disconnect_on_finish = True


def apply_xheaders(context: Any, headers: httputil.HTTPHeaders) -> None:
    """Take the client's address and scheme from ``X-Real-Ip``/``X-Forwarded-*``."""
    # tornado's own parsing; its public switch (xheaders=True) trusts every peer, not loopback only.
    context._apply_xheaders(headers)


def unapply_xheaders(context: Any) -> None:
    """Back to the real peer, as Tornado does after each request of a keep-alive connection."""
    # The next request on the connection may come without proxy headers.
    context._unapply_xheaders()


def wrap_connection(request_conn: httputil.HTTPConnection, name: str, wrapper: Any) -> None:
    """Replace the connection's ``finish``, ``detach``, ``write_headers`` or ``write`` on
    this instance only."""
    # No hook tells when a response is finished or a WebSocket takes the stream over, nor
    # adds a header to every response (the request id, whatever handler writes it), nor
    # counts a streamed response's bytes (the access log's %(B)s).
    setattr(request_conn, name, wrapper)


def unwrap_connection(request_conn: httputil.HTTPConnection, *names: str) -> None:
    """Undo :func:`wrap_connection` (a no-op for names not wrapped)."""
    # The wrappers close a reference cycle; dropping them lets refcounting free the request.
    for name in names:
        vars(request_conn).pop(name, None)


def routed_handler_class(delegate: object) -> Any:
    """The handler class Tornado's router picked for a request (None when unknown)."""
    # A WebSocket's request ends when it detaches, not at finish(): hybrid must know which.
    return getattr(getattr(delegate, "delegate", None), "handler_class", None)


def routed_handler(delegate: object) -> Any:
    """The handler instance serving a request (None before it is made)."""
    # The WebSocket handler is registered so that a draining worker can close it.
    return getattr(getattr(delegate, "delegate", None), "handler", None)


# -- RequestHandler output (hybrid.bridge) ---------------------------------------------


def take_output(handler: RequestHandler) -> bytes:
    """What ``write()`` buffered since the last flush, removed from the handler."""
    # DjangoHandler makes a handler's writes the Django response's content.
    chunk = b"".join(handler._write_buffer)
    handler._write_buffer = []
    return chunk


def replace_output(handler: RequestHandler, chunks: list[bytes]) -> list[bytes]:
    """Make ``chunks`` the buffered output; returns what was buffered before."""
    # The final, post-middleware body goes out through tornado's own flush()/finish().
    pending = handler._write_buffer
    handler._write_buffer = chunks
    return pending


def is_finished(handler: RequestHandler) -> bool:
    """Whether ``finish()`` was called (Tornado has no public getter)."""
    # A captured finish() must be visible to the handler's own checks.
    return handler._finished


def headers_written(handler: RequestHandler) -> bool:
    """Whether the status line and headers went out (Tornado has no public getter)."""
    # A request that runs out of time gets 504 before them, a closed stream after them.
    return handler._headers_written


def set_finished(handler: RequestHandler, finished: bool) -> None:
    """Mark the handler finished or not, without writing anything."""
    # A captured finish() must make tornado refuse later writes, and the real one then run.
    handler._finished = finished


def reason(handler: RequestHandler) -> str:
    """The reason phrase ``set_status()`` recorded (``get_status()`` has no twin for it)."""
    # The status line goes into the Django response (and into refusal messages) whole.
    return handler._reason


def response_headers(handler: RequestHandler) -> httputil.HTTPHeaders:
    """The response headers set so far (the object itself, not a copy)."""
    # DjangoHandler copies them into the Django response.
    return handler._headers


def reset_headers(handler: RequestHandler, headers: httputil.HTTPHeaders | None = None) -> None:
    """Drop every response header, Tornado's defaults included (``clear()`` restores
    those); ``headers`` (already checked, e.g. by Django) become the response's."""
    # After middleware the Django response's headers are the only ones to send.
    handler._headers = headers if headers is not None else httputil.HTTPHeaders()


def new_cookies(handler: RequestHandler) -> SimpleCookie | None:
    """The cookies ``set_cookie()`` recorded, or None when there are none."""
    # Tornado keeps them apart from the headers; they go into the Django response too.
    cookies: SimpleCookie | None = getattr(handler, "_new_cookie", None)
    return cookies


def forget_new_cookies(handler: RequestHandler) -> None:
    """Drop the cookies ``set_cookie()`` recorded."""
    # Copied into the Django response already: tornado must not send them a second time.
    vars(handler).pop("_new_cookie", None)


def should_not_send_content(status_code: int) -> bool:
    """Whether a response with this status carries no body (1xx, 204, 304).

    Tornado's own rule, copied rather than reached: 6.6 has it as the private
    ``RequestHandler._should_not_send_content``, 6.5 inline in ``finish()``.
    """
    return status_code in (204, 304) or 100 <= status_code < 200


def finish_final(handler: RequestHandler, body: bytes) -> Future[None] | None:
    """Tornado's ``finish()`` for a response whose status and headers are final (a Django
    response after its middleware), sending ``body``; None, having done nothing, when the
    application transforms responses (``compress_response``): call ``finish()`` then.

    ``finish()`` and ``flush()`` do the same, plus work that cannot apply here: an ETag
    (DjangoHandler computes none), the body check of 1xx/204/304 (Django's rule already
    emptied it), a pass over transforms, and joining a list of chunks.
    """
    # One DjangoHandler response per request: these steps are a fifth of its CPU time.
    transforms = getattr(handler, "_transforms", None)  # set by _execute()
    if transforms is None or transforms or handler._headers_written or handler._finished:
        return None
    request = handler.request
    connection = request.connection
    assert connection is not None
    headers = handler._headers
    if not should_not_send_content(handler._status_code) and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    cookies = getattr(handler, "_new_cookie", None)
    if cookies:
        for cookie in cookies.values():
            headers.add("Set-Cookie", cookie.OutputString(None))
    connection.set_close_callback(None)  # type: ignore[attr-defined]
    handler._headers_written = True
    handler._write_buffer = []
    start_line = httputil.ResponseStartLine("", handler._status_code, handler._reason)
    chunk = b"" if request.method == "HEAD" else body  # HEAD: the headers of a GET only
    future = connection.write_headers(start_line, headers, chunk)
    connection.finish()
    handler._log()
    handler._finished = True
    handler.on_finish()
    handler._break_cycles()
    return future


def _keep_headers(handler: RequestHandler) -> None:
    return None


def keep_representation_headers(cls: _H) -> _H:
    """Class decorator: Tornado keeps ``Content-Type``/``-Language``/``-Encoding`` on 204
    and 304 responses of ``cls`` (it drops them by default); the Django response decides."""
    # tornado removes them in this hook, called from finish(); Django's responses keep theirs.
    setattr(cls, "_clear_representation_headers", _keep_headers)  # noqa: B010
    return cls


# -- probes ----------------------------------------------------------------------------


class _Unconnected:
    """Just enough of a stream, or of a connection, for Tornado to build its objects on."""

    context = None
    max_buffer_size = 1 << 20

    def set_close_callback(self, callback: object) -> None:
        return None


def _handler() -> RequestHandler:
    from tornado.web import Application

    request = httputil.HTTPServerRequest(
        connection=_Unconnected(),  # type: ignore[arg-type]
        start_line=httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "localhost"}),
    )
    return RequestHandler(Application(), request)


def _handler_has(*names: str) -> Callable[[], bool]:
    return lambda: has_attrs(_handler(), *names)()


def _has_new_cookie() -> bool:
    handler = _handler()
    handler.set_cookie("probe", "1")
    return isinstance(getattr(handler, "_new_cookie", None), SimpleCookie)


def _uses(function: Callable[..., Any], *names: str) -> bool:
    """Whether ``function``'s own code still names every one of ``names``.

    For attributes set on instances that cannot be built outside an event loop (an
    ``HTTP1Connection`` makes a ``Future``): the attribute is assigned in ``__init__`` and
    acted on where it matters."""
    return set(names) <= set(function.__code__.co_names)


def _finish_steps() -> bool:
    return (
        _uses(
            RequestHandler.finish,
            "_headers_written",
            "_finished",
            "set_close_callback",
            "flush",
            "finish",
            "_log",
            "on_finish",
            "_break_cycles",
        )
        and _uses(
            RequestHandler.flush,
            "_transforms",
            "_headers_written",
            "_status_code",
            "_reason",
            "write_headers",
        )
        and _uses(RequestHandler._execute, "_transforms")
        and has_attrs(_handler(), "_status_code", "_headers_written")()
    )


def _disconnect_on_finish() -> bool:
    return _uses(HTTP1Connection.__init__, "_disconnect_on_finish") and _uses(
        HTTP1Connection.finish, "_disconnect_on_finish"
    )


def _connection_wrappable() -> bool:
    # Instances need a __dict__ for a per-instance method to shadow the class's.
    return (
        HTTP1Connection.__dictoffset__ != 0
        and has_attrs(HTTP1Connection, "finish", "detach", "write_headers")()
    )


def _routing_delegate_exposes_handler() -> bool:
    from tornado import routing, web

    return (
        has_attrs(routing._RoutingDelegate(None, None, None), "delegate")()  # type: ignore[arg-type]
        and _uses(web._HandlerDelegate.__init__, "handler_class")
        and _uses(web._HandlerDelegate.execute, "handler")
    )


def _xheaders_context() -> bool:
    from tornado import httpserver

    return has_attrs(httpserver._HTTPRequestContext, "_apply_xheaders", "_unapply_xheaders")()


def _representation_hook() -> bool:
    return has_attrs(RequestHandler, "_clear_representation_headers")() and _uses(
        RequestHandler.finish, "_clear_representation_headers"
    )


def _execute_runs_the_request() -> bool:
    import inspect

    return inspect.iscoroutinefunction(RequestHandler._execute) and _uses(
        RequestHandler._execute, "prepare", "_finished", "_transforms"
    )


def library() -> Library | None:
    """What hybrid needs of tornado (a requirement of hybrid: never None)."""
    internals: list[Internal] = [
        Internal(
            "tornado.http1connection.HTTP1Connection._disconnect_on_finish",
            "a draining worker closes keep-alive connections after their response",
            _disconnect_on_finish,
        ),
        Internal(
            "tornado.http1connection.HTTP1Connection.finish/detach/write_headers, replaced"
            " per instance",
            "counts a request done when its response is finished or a WebSocket takes over;"
            " echoes the request id",
            _connection_wrappable,
        ),
        Internal(
            "tornado.httpserver._HTTPRequestContext._apply_xheaders/_unapply_xheaders",
            "honours X-Real-Ip/X-Forwarded-* from loopback peers only (Config.xheaders)",
            _xheaders_context,
        ),
        Internal(
            "tornado.routing._RoutingDelegate.delegate, tornado.web._HandlerDelegate"
            ".handler_class/.handler",
            "tells WebSocket requests apart so that a drain closes their sockets",
            _routing_delegate_exposes_handler,
        ),
        Internal(
            "tornado.web.RequestHandler._write_buffer",
            "DjangoHandler makes what a handler writes the Django response's body",
            _handler_has("_write_buffer"),
        ),
        Internal(
            "tornado.web.RequestHandler._finished",
            "a finish() captured by DjangoHandler refuses later writes as tornado's own does",
            _handler_has("_finished"),
        ),
        Internal(
            "tornado.web.RequestHandler._headers",
            "DjangoHandler copies a handler's headers into the Django response",
            _handler_has("_headers"),
        ),
        Internal(
            "tornado.web.RequestHandler._reason",
            "the reason phrase goes with the status into the Django response",
            _handler_has("_reason"),
        ),
        Internal(
            "tornado.web.RequestHandler._new_cookie",
            "cookies from set_cookie() go into the Django response, and only once",
            _has_new_cookie,
        ),
        Internal(
            "tornado.web.RequestHandler.finish/flush: _transforms, _headers_written,"
            " _status_code, _log(), _break_cycles()",
            "DjangoHandler sends a final Django response with finish()'s own steps",
            _finish_steps,
        ),
        Internal(
            "tornado.web.RequestHandler._execute, overridden in a subclass",
            "--request-timeout: a request's handler runs in one task, cancelled at the deadline",
            _execute_runs_the_request,
        ),
        Internal(
            "tornado.web.RequestHandler._clear_representation_headers",
            "Django, not tornado, decides the headers of 204 and 304 responses",
            _representation_hook,
        ),
    ]
    return Library("tornado", "tornado", VERIFIED, REQUIREMENT, internals)
