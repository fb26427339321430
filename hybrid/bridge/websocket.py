"""``DjangoWebSocketHandler``: WebSockets with the Django session, user, ORM and groups.

What Django otherwise needs Channels for, on the worker's own IOLoop. Groups
(``self.group_add``, ``hybrid.group_send``) come from :class:`hybrid.groups.GroupsMixin`;
they reach the sockets of other workers and hosts with a Redis backend
(``HYBRID["groups"]``), and of this worker only without one::

    handshake (GET + Upgrade) ──> a lane (leased at the first query) ──> request_started
      ──> ASGIRequest built from the handshake            -> handler.django_request
      ──> Origin checked with Django's CSRF rules (403 if cross-site)
      ──> settings.MIDDLEWARE around an internal "view": session, user resolved
          (``login_required = True``: anonymous users get 403, no upgrade)
      ──> request_finished, lane released ──> 101 Switching Protocols
    open()            ──> its own lane (leased at its first query), between the signals
    each on_message() ──> its own lane (leased at its first query), between the signals
    on_close()        ──> plain Tornado (sync; no lane)

Choices, and why:

* **Lanes are leased per call, not per connection.** A socket may stay open for hours; holding
  one of the worker's ``--db-threads`` database threads for that long would let a few idle
  sockets starve every HTTP request. ``open()`` and each ``on_message()`` get a lane of
  their own (leased at their first thread-bound call, like a request) and the
  ``request_started`` / ``request_finished`` treatment (:mod:`hybrid.bridge.hygiene`), so
  ``CONN_MAX_AGE`` / ``CONN_HEALTH_CHECKS`` apply per message exactly as per request. A
  consequence: a ``transaction.atomic()`` block cannot span messages (it could not span
  requests either). Messages of one socket are handled one at a time, in order (Tornado
  reads the next frame only when the ``on_message`` coroutine is done).
* **Refusal happens before the upgrade.** With ``login_required = True`` an anonymous
  handshake gets Django's 403 (``PermissionDenied``, logged by ``django.request`` like any
  403) and no socket is opened: nothing of the handler runs, and a browser sees the
  connection fail (close code 1006). A response made by middleware (a redirect, a 400 for a
  disallowed Host) is likewise what the client gets instead of the upgrade.
* **Origin: Django's rules, not Tornado's.** Browsers let any page open a WebSocket to any
  site and send that site's cookies with it (cross-site WebSocket hijacking). A handshake
  whose ``Origin`` header is neither this site (``scheme://host`` where ``host`` passes
  ``ALLOWED_HOSTS``) nor listed in ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com``
  wildcards included) is refused with 403 before the session is read — the check
  ``CsrfViewMiddleware`` applies to unsafe requests. ``Origin: null`` is refused. A
  handshake without ``Origin`` comes from a non-browser client, which cannot hijack a
  browser's cookies, and is let through (as Tornado and Channels do). Override
  :meth:`DjangoWebSocketHandler.check_origin` to change the policy.
* The user is resolved during the handshake (one query), so in ``open()`` and later both
  ``self.django_request.user`` and ``await self.django_request.auser()`` work without
  touching the database; the session is loaded too (``request.session["k"]`` reads work,
  ``await request.session.asave()`` in ``on_message`` saves). Cookies that middleware set
  on the handshake (a refreshed session) go out with the 101 response.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from tornado.websocket import WebSocketHandler

from hybrid._compat import django as dj
from hybrid.bridge.lifecycle import make_async_streaming, relay_cookies, request_lifecycle
from hybrid.groups.socket import GroupsMixin
from hybrid.log import app_log

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

__all__ = ["DjangoWebSocketHandler"]

#: The methods run on a leased lane between request_started and request_finished.
_IN_LANE = ("open", "on_message")


class DjangoWebSocketHandler(GroupsMixin, WebSocketHandler):
    """A Tornado ``WebSocketHandler`` with Django's session, user and ORM.

    ``self.django_request`` is the Django request of the handshake, after
    ``settings.MIDDLEWARE`` ran on it: ``session``, ``user`` (already resolved, so the sync
    attribute works too), ``COOKIES``, ``META``. ``open()`` and ``on_message()`` may be
    ``async def`` and use the async ORM and :func:`hybrid.run_sync`; each call leases one of
    the worker's database threads for its own duration only (see the module docstring).

    Set ``login_required = True`` to refuse anonymous handshakes with 403 before the
    upgrade. Cross-site handshakes are refused with 403 by :meth:`check_origin`.
    An exception in ``open()`` or ``on_message()`` is logged with its traceback on
    ``hybrid.application`` and closes the socket with code 1011 (internal error).
    """

    #: The Django request of the handshake, set before ``open()`` runs.
    django_request: HttpRequest
    #: True to refuse anonymous users (403 before the upgrade).
    login_required: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _IN_LANE:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_hybrid_in_lane", False):
                setattr(cls, name, _in_lane(method))

    async def get(self, *args: Any, **kwargs: Any) -> None:
        refusal = await self._handshake()
        if refusal is not None:
            self._send_refusal(refusal)
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        """True when ``origin`` may open a socket here, by Django's CSRF origin rules.

        Allowed: this site itself (same scheme, and a host that passes ``ALLOWED_HOSTS``)
        and the origins of ``CSRF_TRUSTED_ORIGINS``. Everything else, ``null`` included, is
        refused with 403.
        """
        from django.core.exceptions import DisallowedHost
        from django.middleware.csrf import CsrfViewMiddleware

        request = self.django_request
        request.META["HTTP_ORIGIN"] = origin
        try:
            return dj.csrf_origin_verified(CsrfViewMiddleware(_no_response), request)
        except DisallowedHost:
            return False

    # -- the handshake, through Django --------------------------------------------------

    async def _handshake(self) -> HttpResponseBase | None:
        """Run the handshake through the middleware; the response to send instead of the
        upgrade, or None to upgrade."""
        from django.http import HttpResponse, HttpResponseForbidden

        accepted = HttpResponse()

        async def view(request: Any) -> HttpResponseBase:
            user = await request.auser() if hasattr(request, "auser") else None
            if user is not None:
                request.user = user  # resolved: the sync attribute works on the loop too
            if type(self).login_required and not (user is not None and user.is_authenticated):
                from django.core.exceptions import PermissionDenied

                raise PermissionDenied("this WebSocket needs a logged-in user")
            return accepted

        view.__name__ = view.__qualname__ = type(self).__qualname__
        view.__module__ = type(self).__module__
        view.csrf_exempt = True  # type: ignore[attr-defined]  # a GET; Origin checked above

        async with request_lifecycle(self) as life:
            await life.begin()
            request, response = life.create_request(b"")
            if request is not None:
                self.django_request = request
                origin = self.request.headers.get("Origin")
                if origin is not None and not self.check_origin(origin):
                    app_log.warning(
                        "WebSocket %s refused: Origin %r is not allowed", request.path, origin
                    )
                    response = HttpResponseForbidden(
                        "Cross-origin WebSocket refused", content_type="text/plain"
                    )
                else:
                    request._hybrid_view = (view, (), {})
                    response = await life.chain.run_get_response(request)
            try:
                if response is accepted:
                    relay_cookies(self, response)
                    return None
                if response.streaming:
                    make_async_streaming(response)
                    body = b"".join([part async for part in response])
                    response.close()
                    response = HttpResponse(body, status=response.status_code)
                return response
            finally:
                await life.close(response)

    def _send_refusal(self, response: HttpResponseBase) -> None:
        self.clear()
        self.clear_header("Content-Type")
        self.set_status(response.status_code, reason=response.reason_phrase)
        for name, value in response.items():
            self.set_header(name, value)
        relay_cookies(self, response)
        self.finish(response.content)

    async def _in_django_lane(
        self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Run ``open``/``on_message`` on a leased lane between the request signals."""
        try:
            async with request_lifecycle(self) as life:
                await life.started()
                try:
                    result = method(self, *args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                finally:
                    await life.finish()
        except Exception:
            app_log.error(
                "%s.%s() failed on WebSocket %s",
                type(self).__qualname__,
                method.__name__,
                self.request.path,
                exc_info=True,
            )
            self.close(1011, "internal error")


def _no_response(request: Any) -> None:
    return None


def _in_lane(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(self: DjangoWebSocketHandler, *args: Any, **kwargs: Any) -> None:
        await self._in_django_lane(method, args, kwargs)

    wrapper._hybrid_in_lane = True  # type: ignore[attr-defined]
    return wrapper
