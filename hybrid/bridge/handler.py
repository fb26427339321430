"""``DjangoHandler``: a Tornado handler that runs inside the project's Django middleware.

How a request to a ``DjangoHandler`` goes::

    Tornado request ──> lease a database thread (lane), enter its ThreadSensitiveContext
      ──> request_started (its receivers on the lane: stale connections are closed)
      ──> ASGIRequest built from the Tornado request   -> handler.django_request
      ──> settings.MIDDLEWARE (request phase, process_view)
            ──> "view": the handler's get()/post()/... ; what it write()s, its status,
                headers and cookies become an HttpResponse
      ──> settings.MIDDLEWARE (response phase): session cookie, csrftoken, headers
      ──> that HttpResponse is written to the client by Tornado
      ──> response.close() -> request_finished (on the lane), lane released

The middleware chain is Django's own (``BaseHandler.load_middleware(is_async=True)``); its
innermost ``_get_response_async`` is Django's too, with ``resolve_request`` answering with
the handler method instead of consulting the URLconf. This is private Django API, pinned by
hybrid's Django requirement and covered by tests (docs/design.md, "Django middleware
around a handler that is not a Django view").

Consequences worth knowing:

* ``prepare()`` runs before the middleware (``django_request`` is not set yet).
* A response produced by middleware (a login redirect, a CSRF 403) is what the client gets;
  the handler method does not run.
* ``self.write()`` / ``self.finish()`` / ``self.redirect()`` / ``self.send_error()`` are
  captured until the method returns, so response middleware sees the whole response. The
  first ``await self.flush()`` commits the status and headers instead: middleware then sees
  a ``StreamingHttpResponse`` whose chunks are what the handler flushes, sent as it flushes
  them (middleware that consumes the content, such as GZip's, buffers it).
* Exceptions other than Tornado's ``HTTPError`` get Django's treatment
  (``process_exception``, ``Http404`` -> 404, ``PermissionDenied`` -> 403, 500 page,
  ``got_request_exception``); ``HTTPError`` keeps Tornado's (``write_error``).
* ETags are Django's business (``ConditionalGetMiddleware``); Tornado adds none.
* ``ATOMIC_REQUESTS`` does not wrap handlers (they are async); use
  ``await hybrid.run_sync(fn)`` with ``transaction.atomic()`` inside ``fn``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, ClassVar

from tornado.concurrent import Future
from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler

from hybrid._compat import tornado as tornado_compat
from hybrid.bridge.decorators import view_decorators
from hybrid.bridge.hygiene import untangle_request
from hybrid.bridge.lifecycle import make_async_streaming, relay_cookies, request_lifecycle

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

__all__ = ["DjangoHandler"]

_HTTP_METHODS = ("get", "head", "post", "delete", "patch", "put", "options")


class _Stream:
    """Chunks the handler flushed after it committed to streaming."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Future[None]] | None] = asyncio.Queue()

    async def chunks(self) -> Any:
        while (item := await self.queue.get()) is not None:
            chunk, sent = item
            try:
                yield chunk
            finally:
                if not sent.done():
                    sent.set_result(None)


@tornado_compat.keep_representation_headers  # the Django response decides (after middleware)
class DjangoHandler(RequestHandler):
    """A Tornado handler whose methods run inside ``settings.MIDDLEWARE`` like a Django view.

    Write ``async def get(self, ...)`` etc. as with any Tornado handler. Inside them:

    * ``self.django_request`` is the Django ``HttpRequest`` (an ``ASGIRequest``): its
      ``session``, ``COOKIES``, ``META``, ``POST``; ``await self.django_request.auser()`` is
      the user (``request.user`` would query synchronously and raise
      ``SynchronousOnlyOperation`` on the loop);
    * Django's async ORM (``aget``, ``acreate``, ``async for``) runs on this request's
      database thread, and ``await hybrid.run_sync(fn)`` runs sync code there;
    * CSRF is enforced for unsafe methods unless the class or method is
      :func:`~hybrid.csrf_exempt` (or the class sets ``csrf_exempt = True``);
    * :func:`~hybrid.login_required` and :func:`~hybrid.permission_required` guard methods.

    See the module docstring for how responses, streaming and errors are translated.
    """

    #: The Django request of the current request, set before the handler method runs.
    django_request: HttpRequest
    #: True to skip CSRF checks for every method of the class (see :func:`hybrid.csrf_exempt`).
    csrf_exempt: ClassVar[bool] = False

    _capturing = False
    _stream: _Stream | None = None
    _committed: asyncio.Future[None] | None = None
    _method_task: asyncio.Future[None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _HTTP_METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_hybrid_through_django", False):
                setattr(cls, name, _through_django(method))

    def compute_etag(self) -> None:
        return None

    def json_body(self) -> Any:
        """The request body parsed as JSON; Django's 400 (``BadRequest``) when it is not.

        Not UTF-8, not JSON, or nested too deeply to parse: the client gets 400, logged as
        a warning on ``django.request`` without a traceback, never a 500.
        """
        from django.core.exceptions import BadRequest

        try:
            return json.loads(self.request.body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None

    # -- output capture while the handler method runs as the Django view -----------------
    #
    # While ``_capturing``, write()/flush()/finish() called by the handler (directly or via
    # redirect(), send_error(), render()) fill the Django response instead of the wire;
    # ``_finished`` is set by a captured finish() so that Tornado's own checks ("Cannot
    # write() after finish()") still hold. The final response goes out through
    # ``_wire_flush`` / ``_wire_finish``, which use Tornado's real methods.

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        if not self._capturing:
            return super().finish(chunk)
        if tornado_compat.is_finished(self):
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            self.write(chunk)
        tornado_compat.set_finished(self, True)
        if self._stream is not None:
            return self.flush()
        return _done()

    def flush(self, include_footers: bool = False) -> Future[None]:
        if not self._capturing:
            return super().flush(include_footers)
        chunk = tornado_compat.take_output(self)
        if self._stream is None:
            self._stream = _Stream()
            self._headers_at_commit = tornado_compat.response_headers(self).copy()
            self._cookies_at_commit = tornado_compat.new_cookies(self)
            self._status_at_commit = (self.get_status(), tornado_compat.reason(self))
            assert self._committed is not None
            _resolve(self._committed)
        sent: Future[None] = Future()
        if chunk:
            self._stream.queue.put_nowait((chunk, sent))
        else:
            sent.set_result(None)
        return sent

    def _wire_flush(self, chunk: bytes) -> Future[None]:
        pending = tornado_compat.replace_output(self, [chunk] if chunk else [])
        try:
            return super().flush()
        finally:
            tornado_compat.replace_output(self, pending)

    def _wire_finish(self, chunk: bytes = b"") -> None:
        tornado_compat.replace_output(self, [chunk] if chunk else [])
        self._capturing = False
        tornado_compat.set_finished(self, False)
        super().finish()

    # -- the request, through Django ----------------------------------------------------

    async def _through_django(
        self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """One request through the middleware chain, on its lane, between the request
        signals (:mod:`hybrid.bridge.lifecycle`).

        Cancelled (``--request-timeout``), or failing outside Django's error handling,
        the output is no longer captured: Tornado's error handling writes to the wire."""
        try:
            async with request_lifecycle(self) as life:
                await life.begin()
                request, response = life.create_request(self.request.body)
                if request is not None:
                    self.django_request = request
                    request._hybrid_view = (self._make_view(method), args, kwargs)
                    response = await life.chain.run_get_response(request)
                try:
                    await self._relay(response)
                finally:
                    try:
                        await life.close(response)
                    finally:
                        if request is not None:
                            untangle_request(request)
        except BaseException:
            if self._capturing:
                self._capturing = False
                tornado_compat.set_finished(self, False)  # a captured finish() sent nothing
            if self._method_task is not None and not self._method_task.done():
                self._method_task.cancel()
            raise

    def _make_view(self, method: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def view(request: Any, *args: Any, **kwargs: Any) -> Any:
            return await self._run_method(method, args, kwargs)

        view.__name__ = view.__qualname__ = f"{type(self).__qualname__}.{method.__name__}"
        view.__module__ = type(self).__module__
        if getattr(type(self), "csrf_exempt", False) or getattr(method, "csrf_exempt", False):
            view.csrf_exempt = True  # type: ignore[attr-defined]
        wrapped: Any = view
        for decorate in view_decorators(method):
            wrapped = decorate(wrapped)
        return wrapped  # type: ignore[no-any-return]

    async def _run_method(
        self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponseBase:
        """Run the handler method as the Django view; its output becomes the response.

        The method runs as a task so that, once it commits to streaming (first flush),
        the response can go out through the middleware while the method goes on writing.
        ``self._committed`` resolves at whichever comes first: the commit or the end.

        Not started eagerly (its first step run here, as Python 3.12's eager tasks do):
        that step would run with the request's task as ``asyncio.current_task()``, so an
        ``asyncio.timeout()`` or a ``TaskGroup`` entered there would cancel the wrong task
        (tests/unit/bridge/test_bridge_handler.py).
        """
        self._capturing = True
        committed = self._committed = asyncio.get_running_loop().create_future()
        task = self._method_task = asyncio.ensure_future(self._call_method(method, args, kwargs))
        task.add_done_callback(lambda _: _resolve(committed))
        try:
            await committed
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done() and self._stream is None:
            task.result()  # raises the handler's exception into Django's handling
            return self._buffered_response()
        return self._streaming_response(task)

    async def _call_method(
        self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            result = method(self, *args, **kwargs)
            if inspect.iscoroutine(result) and not _is_async(method):
                raise _unawaited(self, method, result)
            if inspect.isawaitable(result):
                result = await result
            if inspect.iscoroutine(result):
                raise _unawaited(self, method, result)
            if result is not None:
                raise TypeError(
                    f"{type(self).__qualname__}.{method.__name__}() returned {result!r}; "
                    "handler methods write their response (self.write) and return None"
                )
        except HTTPError as exc:
            if self._stream is not None:
                raise
            self.log_exception(type(exc), exc, exc.__traceback__)
            self.send_error(exc.status_code, exc_info=(type(exc), exc, exc.__traceback__))
        finally:
            if self._stream is not None:
                if not tornado_compat.is_finished(self):
                    self.flush()
                self._stream.queue.put_nowait(None)

    def _buffered_response(self) -> HttpResponseBase:
        from django.http import HttpResponse

        headers, cookies = _django_headers(
            tornado_compat.response_headers(self), tornado_compat.new_cookies(self)
        )
        response = HttpResponse(
            tornado_compat.take_output(self),
            status=self.get_status(),
            reason=tornado_compat.reason(self),
            headers=headers,
        )
        if "Content-Type" not in headers:  # cleared by the handler: Django adds none either
            del response["Content-Type"]
        if cookies is not None:
            response.cookies = cookies
        return response

    def _streaming_response(self, task: asyncio.Future[None]) -> HttpResponseBase:
        from django.http import StreamingHttpResponse

        assert self._stream is not None
        status, reason = self._status_at_commit
        stream = self._stream

        async def content() -> Any:
            async for chunk in stream.chunks():
                yield chunk
            await task  # the handler's exception, if it raised after committing

        response = StreamingHttpResponse(content(), status=status, reason=reason)
        self._copy_headers(response, self._headers_at_commit, self._cookies_at_commit)
        return response

    @staticmethod
    def _copy_headers(response: HttpResponseBase, headers: Any, cookies: Any) -> None:
        del response["Content-Type"]
        django_headers, django_cookies = _django_headers(headers, cookies)
        for name, value in django_headers.items():
            response[name] = value
        if django_cookies is not None:
            response.cookies = django_cookies

    async def _relay(self, response: HttpResponseBase) -> None:
        """Write the final (post-middleware) Django response with Tornado."""
        # Django checked the names and values (no newlines, encodable): copied as they are.
        headers = HTTPHeaders()
        for name, value in response.items():
            headers[name] = value
        tornado_compat.reset_headers(self, headers)
        tornado_compat.forget_new_cookies(self)  # already part of the Django response
        self.set_status(response.status_code, reason=response.reason_phrase)
        if response.cookies:
            relay_cookies(self, response)
        if not response.streaming:
            send = not tornado_compat.should_not_send_content(response.status_code)
            body = response.content if send else b""
            self._capturing = False
            tornado_compat.set_finished(self, False)
            if tornado_compat.finish_final(self, body) is None:
                self._wire_finish(body)
            return
        make_async_streaming(response)
        try:
            async with aclosing(aiter(response)) as parts:
                async for part in parts:
                    await self._wire_flush(part)
        except StreamClosedError:
            self._capturing = False
            return
        except BaseException:
            self._capturing = False  # Tornado's error handling takes over
            tornado_compat.set_finished(self, False)  # the wire's response is not finished
            raise
        finally:
            if self._method_task is not None and not self._method_task.done():
                self._method_task.cancel()  # the client went away mid-stream
        self._wire_finish()


def _django_headers(headers: HTTPHeaders, cookies: Any) -> tuple[dict[str, str], Any]:
    """Tornado's response headers as the ``headers`` of a Django response (a repeated name
    joined with ", "), and the cookies to give it (those of ``Set-Cookie`` headers and
    ``set_cookie()``), or None when there are none."""
    merged: dict[str, str] = {}
    jar = None
    for name, value in headers.get_all():
        if name == "Set-Cookie":  # HTTPHeaders normalizes names
            if jar is None:
                from http.cookies import SimpleCookie

                jar = SimpleCookie()
            jar.load(value)
        elif name in merged:
            merged[name] = f"{merged[name]}, {value}"
        else:
            merged[name] = value
    if cookies:
        if jar is None:
            from http.cookies import SimpleCookie

            jar = SimpleCookie()
        for key, morsel in cookies.items():
            jar[key] = morsel
    return merged, jar


def _unawaited(handler: DjangoHandler, method: Callable[..., Any], result: Any) -> TypeError:
    """The error for a coroutine a handler method returned instead of awaiting it.

    Like Django's ``adapt_method_mode`` check: a plain ``def`` method that returns a
    coroutine (``return self.save()``), or an ``async def`` method whose result is itself a
    coroutine, forgot an ``await``. The coroutine is closed so Python does not warn too.
    """
    result.close()
    name = f"{type(handler).__qualname__}.{method.__name__}()"
    return TypeError(
        f"{name} returned an unawaited coroutine ({result.__qualname__}); add await "
        "where it is called (and make the method async def)"
    )


def _is_async(method: Callable[..., Any]) -> bool:
    from asgiref.sync import iscoroutinefunction

    return iscoroutinefunction(method) or iscoroutinefunction(inspect.unwrap(method))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


def _through_django(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(self: DjangoHandler, *args: Any, **kwargs: Any) -> None:
        await self._through_django(method, args, kwargs)

    wrapper._hybrid_through_django = True  # type: ignore[attr-defined]
    return wrapper
