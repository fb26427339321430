"""DjangoWebSocketHandler: the Django session and user at open(), the ORM per message."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from hybrid import Config, make_app
from hybrid.web import HybridApplication

ROUTES = "testproject.bridge_routes.routes"


@pytest.fixture
def app(http_port: int) -> Iterator[HybridApplication]:
    # One database thread: a socket that held its lane for its lifetime would starve HTTP.
    with override_settings(HYBRID_ROUTES=ROUTES):
        yield make_app(Config(db_threads=1), http_port)


@pytest.fixture
def port(http_server: object, http_port: int) -> int:
    """The port of the running in-process server."""
    return http_port


@pytest.fixture
def member() -> tuple[str, str]:
    """(username, session key) of a fresh user logged in through Django's test client,
    with ``colour = "blue"`` stored in the session (created in the test database)."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import Client

    name = f"ws{uuid.uuid4().hex[:10]}"
    client = Client()
    client.force_login(User.objects.create_user(name, password="pw"))
    key = client.cookies["sessionid"].value
    session = SessionStore(session_key=key)
    session["colour"] = "blue"
    session.save()
    return name, key


async def connect(
    port: int, path: str, *, cookie: str | None = None, origin: str | None = "same"
) -> WebSocketClientConnection:
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin == "same":
        origin = f"http://127.0.0.1:{port}"
    if origin is not None:
        headers["Origin"] = origin
    url = f"ws://127.0.0.1:{port}{path}"
    return await websocket_connect(HTTPRequest(url, headers=headers))


async def receive(conn: WebSocketClientConnection) -> Any:
    message = await asyncio.wait_for(conn.read_message(), 5)
    assert message is not None, f"closed: {conn.close_code} {conn.close_reason}"
    return json.loads(message)


@pytest.mark.gen_test
async def test_open_sees_the_session_and_user_and_messages_use_the_orm(
    port: int, member: tuple[str, str]
) -> None:
    name, key = member
    conn = await connect(port, "/ws/echo", cookie=f"sessionid={key}")
    hello = await receive(conn)
    assert hello["hello"] == name
    assert hello["session"] == "blue"
    assert hello["thread"].startswith("hybrid-db-")
    tag = uuid.uuid4().hex[:8]
    before = (await receive(conn_send(conn, "count")))["count"]
    after = await receive(conn_send(conn, f"add ws-{tag}"))
    assert after["count"] == before + 1
    assert after["thread"].startswith("hybrid-db-")
    assert after["leased"] is True
    await close(conn)


async def close(conn: WebSocketClientConnection) -> None:
    """Close and wait for the closing handshake (an unfinished one warns at GC)."""
    conn.close()
    while await asyncio.wait_for(conn.read_message(), 5) is not None:
        pass


def conn_send(conn: WebSocketClientConnection, text: str) -> WebSocketClientConnection:
    conn.write_message(text)
    return conn


@pytest.mark.gen_test
async def test_anonymous_users_are_seen_as_anonymous(port: int) -> None:
    conn = await connect(port, "/ws/echo")
    assert (await receive(conn))["hello"] is None
    await close(conn)


@pytest.mark.gen_test
async def test_login_required_refuses_anonymous_handshakes_with_403(
    port: int, caplog: pytest.LogCaptureFixture, member: tuple[str, str]
) -> None:
    with caplog.at_level(logging.WARNING, logger="django.request"):
        with pytest.raises(HTTPClientError) as refused:
            await connect(port, "/ws/members")
    assert refused.value.code == 403
    assert any("Forbidden" in r.getMessage() for r in caplog.records)
    name, key = member
    conn = await connect(port, "/ws/members", cookie=f"sessionid={key}")
    assert (await receive(conn))["hello"] == name
    await close(conn)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "https://127.0.0.1", "http://localhost.evil"]
)
async def test_cross_site_handshakes_are_refused(
    port: int, origin: str, member: tuple[str, str]
) -> None:
    _, key = member
    with pytest.raises(HTTPClientError) as refused:
        await connect(port, "/ws/echo", cookie=f"sessionid={key}", origin=origin)
    assert refused.value.code == 403


@pytest.mark.gen_test
async def test_trusted_origins_and_non_browser_clients_are_let_in(
    port: int, member: tuple[str, str]
) -> None:
    name, key = member
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://*.example.com"]):
        trusted = await connect(
            port, "/ws/echo", cookie=f"sessionid={key}", origin="https://app.example.com"
        )
    assert (await receive(trusted))["hello"] == name
    await close(trusted)
    no_origin = await connect(port, "/ws/echo", cookie=f"sessionid={key}", origin=None)
    assert (await receive(no_origin))["hello"] == name
    await close(no_origin)


@pytest.mark.gen_test
async def test_disallowed_host_is_refused(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/ws/echo"
    request = HTTPRequest(url, headers={"Host": "evil.example", "Origin": "http://evil.example"})
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(request)
    assert refused.value.code == 403


@pytest.mark.gen_test(timeout=15)
async def test_open_sockets_do_not_hold_the_database_thread(
    http_client: Any, base_url: str, port: int
) -> None:
    # The pool has one lane; three idle sockets must leave it free for HTTP requests.
    sockets = [await connect(port, "/ws/echo") for _ in range(3)]
    for conn in sockets:
        await receive(conn)
    response = await asyncio.wait_for(http_client.fetch(base_url + "/bridge/db"), 5)
    assert response.code == 200
    for conn in sockets:
        assert (await receive(conn_send(conn, "count")))["leased"] is True
        await close(conn)


@pytest.mark.gen_test
async def test_messages_without_queries_take_no_database_thread(port: int) -> None:
    conn = await connect(port, "/ws/ping")
    for _ in range(3):
        assert await receive(conn_send(conn, "ping")) == {"pong": True, "leased": False}
    await close(conn)


@pytest.mark.gen_test
async def test_request_signals_fire_per_message_on_the_lane(port: int) -> None:
    from django.core import signals

    seen: list[tuple[str, str]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        conn = await connect(port, "/ws/echo")
        await receive(conn)  # handshake + open(): two started/finished pairs
        await receive(conn_send(conn, "count"))
        await receive(conn_send(conn, "count"))
        await close(conn)
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert [kind for kind, _ in seen] == ["started", "finished"] * 4
    assert all(thread.startswith("hybrid-db-") for _, thread in seen)


@pytest.mark.gen_test
async def test_an_exception_in_on_message_closes_with_1011_and_is_logged(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await connect(port, "/ws/echo")
    await receive(conn)
    with caplog.at_level(logging.ERROR, logger="hybrid.application"):
        conn.write_message("boom")
        assert await asyncio.wait_for(conn.read_message(), 5) is None
    assert conn.close_code == 1011
    conn.close()  # already closed by the server; this releases the client side
    assert any(r.exc_info and "boom from on_message" in str(r.exc_info[1]) for r in caplog.records)
