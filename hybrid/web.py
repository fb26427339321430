"""The Tornado application of one worker: the project's routes, then Django.

``settings.HYBRID_ROUTES`` names (as a dotted path) a list of Tornado URL specs; every URL
they do not match goes to the project's own Django URLconf through
:class:`hybrid.bridge.DjangoFallbackHandler`.
"""

from __future__ import annotations

import importlib
from typing import Any

import tornado.web
from tornado import httputil

from hybrid.bridge.fallback import DjangoFallbackHandler
from hybrid.config import Config
from hybrid.errors import AppLoadError, describe_exception
from hybrid.log import access_log

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
    """A Tornado ``Application`` that knows how many requests are in flight.

    The worker uses :attr:`inflight` to drain before it stops.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight = 0

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _TrackedRequest(self, super().start_request(server_conn, request_conn), request_conn)

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """One ``hybrid.access`` line per request: method, path, status, duration, port."""
        status = handler.get_status()
        log = access_log.info if status < 400 else access_log.warning
        if status >= 500:
            log = access_log.error
        log(
            "%s %s %d %.1fms port=%s",
            handler.request.method,
            handler.request.uri,
            status,
            1000.0 * handler.request.request_time(),
            self.settings.get("hybrid_port"),
        )


class _TrackedRequest(httputil.HTTPMessageDelegate):
    """Counts a request as in flight from its headers until its response is finished."""

    def __init__(
        self,
        app: HybridApplication,
        inner: httputil.HTTPMessageDelegate,
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self._app = app
        self._inner = inner
        self._conn = request_conn
        self._active = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        self._active = True
        self._app.inflight += 1
        finish = self._conn.finish

        def finish_and_count() -> None:
            try:
                finish()
            finally:
                self._done()

        self._conn.finish = finish_and_count  # type: ignore[method-assign]
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._done()
        self._inner.on_connection_close()

    def _done(self) -> None:
        if self._active:
            self._active = False
            self._app.inflight -= 1


def make_app(config: Config, port: int) -> HybridApplication:
    """Set up Django and build one worker's application. Call only after fork.

    Raises :class:`AppLoadError` with a one-line reason when the project cannot load.
    """
    import django
    from django.conf import settings

    try:
        django.setup()
        from django.core.handlers.asgi import ASGIHandler

        asgi_app = ASGIHandler()
    except Exception as exc:
        raise AppLoadError(
            f"Django setup failed: {describe_exception(exc)}", target="INSTALLED_APPS"
        ) from None
    routes_path = getattr(settings, "HYBRID_ROUTES", None)
    routes = load_routes(routes_path) if routes_path is not None else []
    fallback = (r".*", DjangoFallbackHandler, {"asgi_app": asgi_app, "server": (config.host, port)})
    try:
        return HybridApplication([*routes, fallback], hybrid_port=port)
    except Exception as exc:
        raise AppLoadError(
            f"HYBRID_ROUTES = {routes_path!r} holds an invalid URL spec: {describe_exception(exc)}",
            target=str(routes_path),
        ) from None
