"""``ALLOWED_HOSTS`` on every route a worker serves, checked as Django checks it.

Django validates the ``Host`` header only where something calls ``request.get_host()``
(``CommonMiddleware`` on every request, CSRF, redirects): Django views, the fallback and
:class:`~hybrid.DjangoHandler` routes get that check from the project's middleware. A plain
Tornado ``RequestHandler`` route (``CommandStreamHandler`` included) has no such middleware,
so :class:`hybrid.web.HybridApplication` asks :func:`refused_host` before such a handler is
made, and serves a refused request with :class:`DisallowedHostHandler` instead:

* the host is the one ``get_host()`` reads (``X-Forwarded-Host`` when
  ``USE_X_FORWARDED_HOST``, else ``Host``, else the server's address), validated with
  Django's own ``split_domain_port`` and ``validate_host`` against ``ALLOWED_HOSTS`` (with
  ``DEBUG`` and no ``ALLOWED_HOSTS``, Django's ``.localhost``, ``127.0.0.1``, ``[::1]``);
* a refused request gets what Django answers a ``DisallowedHost``: the 400 page of
  ``handler400`` (or the technical page with ``DEBUG``), an error on the
  ``django.security.DisallowedHost`` logger and a warning on ``django.request``, both
  from Django's ``response_for_exception``.

A handler class opts out with ``check_host = False`` (a health check that a load balancer
calls by IP address). The settings are read once (:mod:`hybrid.bridge.snapshot`) and each
distinct host is validated once per snapshot, so a request pays a dictionary lookup.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import Application, RequestHandler

from hybrid._compat import tornado as tornado_compat
from hybrid.bridge.chain import response_for_exception
from hybrid.bridge.lifecycle import build_scope, relay_cookies, server_address
from hybrid.bridge.snapshot import settings_snapshot

__all__ = ["DisallowedHostHandler", "disallowed_host_message", "refused_host"]

#: Distinct hosts remembered per settings snapshot; beyond it each is validated each time.
MEMO_SIZE = 512


def _raw_host(request: HTTPServerRequest, application: Application, forwarded: bool) -> str:
    """The host ``HttpRequest._get_raw_host()`` would read for this request."""
    headers = request.headers
    if forwarded:
        value = headers.get("X-Forwarded-Host")
        if value is not None:
            return value
    value = headers.get("Host")
    if value is not None:
        return value
    # No Host header (HTTP/1.0): Django rebuilds it from the scope's server (PEP 333).
    name, port = server_address(application) or ("unknown", 0)
    default_port = "443" if request.protocol == "https" else "80"
    return name if str(port) == default_port else f"{name}:{port}"


def refused_host(request: HTTPServerRequest, application: Application) -> str | None:
    """None when ``ALLOWED_HOSTS`` allows the request's host; else that host."""
    snapshot = settings_snapshot()
    host = _raw_host(request, application, snapshot.use_x_forwarded_host)
    memo = snapshot.checked_hosts
    allowed = memo.get(host)
    if allowed is None:
        from django.http.request import split_domain_port, validate_host

        domain, _port = split_domain_port(host)
        allowed = bool(domain) and validate_host(domain, snapshot.allowed_hosts)
        if len(memo) < MEMO_SIZE:
            memo[host] = allowed
    return None if allowed else host


def disallowed_host_message(host: str) -> str:
    """The message of the ``DisallowedHost`` that ``HttpRequest.get_host()`` raises."""
    from django.http.request import split_domain_port

    domain, _port = split_domain_port(host)
    message = f"Invalid HTTP_HOST header: {host!r}."
    if domain:
        return message + f" You may need to add {domain!r} to ALLOWED_HOSTS."
    return message + " The domain name provided is not valid according to RFC 1034/1035."


class _EveryMethod(tuple[str, ...]):
    """``SUPPORTED_METHODS`` that contains every method: a refused request gets its 400
    whatever its method (Tornado would answer 405 first)."""

    def __contains__(self, method: object) -> bool:
        return True


class DisallowedHostHandler(RequestHandler):
    """Serves a request whose host ``ALLOWED_HOSTS`` refuses, as Django answers it.

    Installed by :class:`hybrid.web.HybridApplication` in place of the route's handler,
    which never runs.
    """

    SUPPORTED_METHODS = _EveryMethod()

    def initialize(self, host: str) -> None:
        self._host = host

    def compute_etag(self) -> None:
        return None

    async def prepare(self) -> None:
        from django.core.exceptions import DisallowedHost
        from django.core.handlers.asgi import ASGIRequest

        message = disallowed_host_message(self._host)
        scope = build_scope(self.request, server_address(self.application))
        try:
            request: Any = ASGIRequest(scope, io.BytesIO())
        except Exception:  # a request Django cannot even build: no page, the same log
            logging.getLogger("django.security.DisallowedHost").error(
                message, extra={"status_code": 400}
            )
            self.send_error(400)
            return
        try:
            raise DisallowedHost(message)
        except DisallowedHost as exc:  # raised so that the DEBUG page shows it
            response = await response_for_exception(request, exc)
        headers = HTTPHeaders()
        for name, value in response.items():
            headers[name] = value
        tornado_compat.reset_headers(self, headers)
        self.set_status(response.status_code, reason=response.reason_phrase)
        if response.cookies:
            relay_cookies(self, response)
        self.finish(response.content)  # for HEAD, tornado sends the headers only
