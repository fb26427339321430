"""Errors in DjangoHandler methods get Django's treatment (and Tornado's for HTTPError)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from hybrid import Config, make_app
from hybrid.web import HybridApplication

ROUTES = "testproject.bridge_routes.routes"


@pytest.fixture
def app(http_port: int) -> Iterator[HybridApplication]:
    with override_settings(HYBRID_ROUTES=ROUTES):
        yield make_app(Config(db_threads=2), http_port)


async def fetch(client: AsyncHTTPClient, url: str, **kwargs: Any) -> HTTPResponse:
    kwargs.setdefault("raise_error", False)
    return await client.fetch(url, **kwargs)


@pytest.mark.gen_test
async def test_an_exception_gives_the_plain_500_page_signal_and_traceback(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from django.core.signals import got_request_exception

    sent: list[Any] = []

    def receiver(sender: Any, request: Any, **kwargs: Any) -> None:
        sent.append(request.path)

    got_request_exception.connect(receiver)
    try:
        with caplog.at_level(logging.ERROR, logger="django.request"):
            response = await fetch(http_client, base_url + "/bridge/errors/boom")
    finally:
        got_request_exception.disconnect(receiver)
    assert response.code == 500
    assert b"Server Error (500)" in response.body
    assert b"boom" not in response.body and b"Traceback" not in response.body
    assert sent == ["/bridge/errors/boom"]
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"
    assert response.headers["X-Frame-Options"] == "DENY"  # response middleware still ran


@pytest.mark.gen_test
async def test_debug_gives_the_technical_500_page(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(DEBUG=True), caplog.at_level(logging.ERROR, logger="django.request"):
        response = await fetch(
            http_client, base_url + "/bridge/errors/boom", headers={"Accept": "text/html"}
        )
    assert response.code == 500
    assert response.headers["Content-Type"].startswith("text/html")
    body = response.body.decode()
    assert "RuntimeError" in body and "boom" in body and "Traceback" in body
    assert "bridge_routes.py" in body  # the frame that raised


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("kind", "status", "logger"),
    [
        ("django404", 404, "django.request"),
        ("denied", 403, "django.request"),
        ("suspicious", 400, "django.security.SuspiciousOperation"),
        ("tornado", 418, "tornado.access"),
        ("tornado400", 400, "tornado.general"),
    ],
)
async def test_exceptions_map_to_their_statuses_without_500(
    http_client: AsyncHTTPClient,
    base_url: str,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    status: int,
    logger: str,
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = await fetch(http_client, base_url + f"/bridge/errors/{kind}")
    assert response.code == status
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # 4xx: no error logged, bar Django's own security log of SuspiciousOperation
    assert [r.name for r in errors] == ([logger] if kind == "suspicious" else [])
    if logger != "tornado.access":
        assert any(r.name == logger for r in caplog.records), caplog.records


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_forgotten_await_is_an_error_that_names_the_fix(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    body = "" if method == "POST" else None
    with caplog.at_level(logging.ERROR, logger="django.request"):
        url = base_url + "/bridge/unawaited"
        response = await fetch(http_client, url, method=method, body=body)
    assert response.code == 500
    [record] = [r for r in caplog.records if r.exc_info]
    message = str(record.exc_info[1])  # type: ignore[index]
    assert f"Unawaited.{method.lower()}() returned an unawaited coroutine" in message
    assert "_save_something" in message and "add await" in message
