"""ALLOWED_HOSTS on every route: plain Tornado handlers are checked as Django checks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.test import override_settings
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.web import RequestHandler

from hybrid import AllowList, CommandSpec, CommandStreamHandler, Config, DjangoHandler
from hybrid.bridge.fallback import DjangoFallbackHandler, make_asgi_handler
from hybrid.web import HybridApplication

#: testproject.settings: ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECURITY_LOGGER = "django.security.DisallowedHost"


class Plain(RequestHandler):
    def get(self) -> None:
        self.write({"host": self.request.host})

    def post(self) -> None:
        self.write({"posted": True})


class Health(RequestHandler):
    check_host = False

    def get(self) -> None:
        self.write("ok")


class ViaDjango(DjangoHandler):
    async def get(self) -> None:
        self.write("django")


@pytest.fixture
def app(http_port: int) -> HybridApplication:
    allow = AllowList([CommandSpec("echo", ["echo"], args=[r"[a-z]+"])])
    routes = [
        (r"/plain", Plain),
        (r"/health", Health),
        (r"/via-django", ViaDjango),
        (r"/run/(?P<name>\w+)", CommandStreamHandler, {"allow": allow}),
        (r".*", DjangoFallbackHandler, {"asgi_app": make_asgi_handler(2)}),
    ]
    return HybridApplication(routes, config=Config(db_threads=2), port=http_port)


async def fetch(
    client: AsyncHTTPClient, url: str, host: str = "127.0.0.1", **kwargs: object
) -> HTTPResponse:
    headers = {"Host": host}
    return await client.fetch(url, headers=headers, raise_error=False, **kwargs)  # type: ignore[arg-type]


def security_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SECURITY_LOGGER]


@pytest.mark.gen_test
async def test_plain_handler_refuses_a_host_not_allowed_as_django_does(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        refused = await fetch(http_client, base_url + "/plain", host="evil.com")
    assert refused.code == 400
    assert refused.reason == "Bad Request"
    assert b"Bad Request (400)" in refused.body  # Django's handler400 page
    [record] = security_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "Invalid HTTP_HOST header: 'evil.com'. You may need to add 'evil.com' to ALLOWED_HOSTS."
    )
    assert getattr(record, "status_code", None) == 400
    assert [r for r in caplog.records if r.name == "django.request"] == []  # as for a view
    allowed = await fetch(http_client, base_url + "/plain", host="localhost:8000")
    assert allowed.code == 200


@pytest.mark.gen_test
async def test_every_method_is_refused_before_the_handler(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        post = await fetch(
            http_client, base_url + "/plain", host="evil.com", method="POST", body="x"
        )
        odd = await fetch(
            http_client,
            base_url + "/plain",
            host="evil.com",
            method="PROPFIND",
            allow_nonstandard_methods=True,
        )
    assert (post.code, odd.code) == (400, 400)
    assert len(security_records(caplog)) == 2


@pytest.mark.gen_test
async def test_command_stream_handler_refuses_a_host_not_allowed(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ok = await fetch(http_client, base_url + "/run/echo?arg=hello")
    assert ok.code == 200
    assert b"hello" in ok.body
    with caplog.at_level(logging.WARNING):
        refused = await fetch(http_client, base_url + "/run/echo?arg=hello", host="evil.com")
    assert refused.code == 400
    assert b"hello" not in refused.body
    assert len(security_records(caplog)) == 1


async def raw_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout=5)
    finally:
        writer.close()


@pytest.mark.gen_test
async def test_absolute_form_request_line_is_checked_with_its_own_host(
    http_port: int, http_server: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        refused = await raw_request(
            http_port,
            b"GET http://evil.com/plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
    assert refused.startswith(b"HTTP/1.1 400 ")
    [record] = security_records(caplog)
    assert "'evil.com'" in record.getMessage()
    # The target's host counts, not the Host header (RFC 9112), and the path is routed.
    allowed = await raw_request(
        http_port,
        b"GET http://127.0.0.1/plain HTTP/1.1\r\nHost: evil.com\r\nConnection: close\r\n\r\n",
    )
    assert allowed.startswith(b"HTTP/1.1 200 ")
    assert b'"host": "127.0.0.1"' in allowed


@pytest.mark.gen_test
async def test_check_host_false_opts_a_route_out(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = await fetch(http_client, base_url + "/health", host="10.1.2.3")
    assert response.code == 200
    assert response.body == b"ok"
    assert security_records(caplog) == []


@pytest.mark.gen_test
async def test_django_routes_are_checked_once_by_django(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        handler = await fetch(http_client, base_url + "/via-django", host="evil.com")
        view = await fetch(http_client, base_url + "/django/pid", host="evil.com")
    assert (handler.code, view.code) == (400, 400)
    assert len(security_records(caplog)) == 2  # one each: Django's own check only


@pytest.mark.gen_test
async def test_debug_allows_localhost_variants_when_allowed_hosts_is_empty(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(DEBUG=True, ALLOWED_HOSTS=[]):
        sub = await fetch(http_client, base_url + "/plain", host="app.localhost:8000")
        ipv6 = await fetch(http_client, base_url + "/plain", host="[::1]")
        with caplog.at_level(logging.WARNING):
            other = await fetch(http_client, base_url + "/plain", host="example.com")
    assert (sub.code, ipv6.code, other.code) == (200, 200, 400)
    assert b"DisallowedHost" in other.body  # Django's technical page, as with DEBUG


@pytest.mark.gen_test
async def test_x_forwarded_host_counts_when_django_is_told_to_use_it(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Host": "127.0.0.1", "X-Forwarded-Host": "evil.com"}
    plain = await http_client.fetch(base_url + "/plain", headers=headers, raise_error=False)
    assert plain.code == 200
    with override_settings(USE_X_FORWARDED_HOST=True), caplog.at_level(logging.WARNING):
        forwarded = await http_client.fetch(base_url + "/plain", headers=headers, raise_error=False)
    assert forwarded.code == 400
