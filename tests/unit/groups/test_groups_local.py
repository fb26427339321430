"""Groups on one loop (the in-process backend) with real Tornado sockets: membership,
dispatch by type, order, the bounded queue that closes a slow client with 1013, and
sending from threads."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.web import Application
from tornado.websocket import WebSocketClientConnection, WebSocketHandler, websocket_connect

import hybrid
from hybrid.groups import layer as groups_layer
from hybrid.groups.layer import LocalLayer
from hybrid.groups.members import Mailbox, Membership


class Member(hybrid.GroupsMixin, WebSocketHandler):
    """A plain Tornado socket in groups: joins the groups named in the URL's query."""

    async def open(self) -> None:
        for group in self.get_arguments("group"):
            await self.group_add(group)
        self.write_message({"type": "ready", "groups": sorted(self.groups)})

    async def on_message(self, message: str | bytes) -> None:
        data = json.loads(message)
        if "leave" in data:
            await self.group_discard(data["leave"])
            self.write_message({"type": "left"})

    def chat_message(self, message: dict[str, Any]) -> None:
        self.write_message(message)

    async def slow_echo(self, message: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        await self.write_message(message)


class CatchAll(Member):
    def on_group_message(self, message: dict[str, Any]) -> None:
        self.write_message({"caught": message["type"]})


class Broadcast(Member):
    groups = ("broadcast",)  # joined before open() runs, as a Channels consumer's


@pytest.fixture
def app() -> Application:
    return Application([(r"/member", Member), (r"/catchall", CatchAll), (r"/broadcast", Broadcast)])


@pytest.fixture
def layer() -> Iterator[LocalLayer]:
    previous = groups_layer.reset()
    try:
        yield groups_layer.install(LocalLayer(queue_limit=5))  # type: ignore[return-value]
    finally:
        while _clients:
            _clients.pop().close()
        groups_layer.reset()
        if previous is not None:
            groups_layer.install(previous)


#: Client connections of the running test, closed by the ``layer`` fixture.
_clients: list[WebSocketClientConnection] = []


async def join(port: int, *groups: str, path: str = "/member") -> WebSocketClientConnection:
    query = "&".join(f"group={g}" for g in groups)
    conn = await websocket_connect(f"ws://127.0.0.1:{port}{path}?{query}")
    _clients.append(conn)
    assert (await receive(conn))["type"] == "ready"
    return conn


async def receive(conn: WebSocketClientConnection, timeout: float = 5) -> Any:
    message = await asyncio.wait_for(conn.read_message(), timeout)
    assert message is not None, f"closed: {conn.close_code} {conn.close_reason}"
    return json.loads(message)


async def nothing_for(conn: WebSocketClientConnection, seconds: float = 0.2) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(conn.read_message()), seconds)


@pytest.mark.gen_test
async def test_every_member_gets_the_message_and_others_do_not(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    a, b = await join(http_port, "room-1"), await join(http_port, "room-1", "room-2")
    c = await join(http_port, "room-2")
    await hybrid.group_send("room-1", {"type": "chat.message", "text": "hi"})
    assert await receive(a) == {"type": "chat.message", "text": "hi"}
    assert await receive(b) == {"type": "chat.message", "text": "hi"}
    await nothing_for(c)
    assert layer.membership().members("room-1") == 2


@pytest.mark.gen_test
async def test_discard_and_close_leave_the_group(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    a, b = await join(http_port, "room-1"), await join(http_port, "room-1")
    a.write_message(json.dumps({"leave": "room-1"}))
    assert (await receive(a))["type"] == "left"
    b.close()
    for _ in range(100):
        if "room-1" not in layer.membership():
            break
        await asyncio.sleep(0.01)
    assert "room-1" not in layer.membership()  # empty groups are forgotten
    await hybrid.group_send("room-1", {"type": "chat.message", "text": "nobody"})
    await nothing_for(a)


@pytest.mark.gen_test
async def test_messages_from_one_sender_arrive_in_order_even_through_async_handlers(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    conn = await join(http_port, "room")
    for n in range(5):  # within the queue limit of 5 while the async handler sleeps
        await hybrid.group_send("room", {"type": "slow.echo", "n": n})
    assert [(await receive(conn))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]


@pytest.mark.gen_test
async def test_a_type_without_a_method_or_naming_a_handler_method_is_logged_and_dropped(
    http_server: object, http_port: int, layer: LocalLayer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await join(http_port, "room")
    with caplog.at_level(logging.ERROR, logger="hybrid.application"):
        await hybrid.group_send("room", {"type": "no.such"})
        await hybrid.group_send("room", {"type": "close"})  # not a way to close sockets
        await hybrid.group_send("room", {"type": "write_message"})
        await hybrid.group_send("room", {"type": "chat.message", "text": "still open"})
        assert await receive(conn) == {"type": "chat.message", "text": "still open"}
    logged = [r.getMessage() for r in caplog.records]
    assert any("no method no_such()" in line for line in logged), logged
    assert any("no method close()" in line for line in logged), logged
    assert any("no method write_message()" in line for line in logged), logged


@pytest.mark.gen_test
async def test_on_group_message_takes_every_message_when_overridden(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    conn = await join(http_port, "room", path="/catchall")
    await hybrid.group_send("room", {"type": "anything.at.all"})
    assert await receive(conn) == {"caught": "anything.at.all"}


@pytest.mark.gen_test
async def test_bad_names_and_messages_fail_on_the_sender_side(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    with pytest.raises(hybrid.GroupError, match="invalid group name"):
        await hybrid.group_send("room 1", {"type": "t"})
    with pytest.raises(hybrid.GroupError, match="not JSON-serialisable"):
        await hybrid.group_send("room", {"type": "t", "x": object()})
    big = LocalLayer(message_limit=100)
    with pytest.raises(hybrid.GroupError, match="over the limit of 100"):
        await big.send("room", {"type": "t", "x": "y" * 200})


@pytest.mark.gen_test
async def test_the_in_process_backend_says_once_that_it_stays_in_this_process(
    http_server: object, http_port: int, layer: LocalLayer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hybrid.general"):
        await join(http_port, "room-1")
        await join(http_port, "room-2")
    lines = [r.getMessage() for r in caplog.records if "in-process backend" in r.getMessage()]
    assert len(lines) == 1
    assert "this worker only" in lines[0] and "redis://" in lines[0]


@pytest.mark.gen_test
async def test_group_send_sync_from_a_thread_reaches_the_loop_and_refuses_the_loop_thread(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    conn = await join(http_port, "room")
    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            hybrid.group_send_sync("room", {"type": "chat.message", "text": "from a thread"})
        except BaseException as exc:  # noqa: BLE001  # reported below
            errors.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    assert not errors
    assert await receive(conn) == {"type": "chat.message", "text": "from a thread"}
    with pytest.raises(RuntimeError, match="would block the event loop"):
        hybrid.group_send_sync("room", {"type": "chat.message"})


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_stops_reading_is_closed_with_1013_and_costs_bounded_memory(
    http_server: object, http_port: int, layer: LocalLayer, caplog: pytest.LogCaptureFixture
) -> None:
    """A raw client does the handshake and then reads nothing: the kernel's buffers fill,
    the socket's queue fills (5 here), the next message closes it with 1013, and the other
    member keeps getting everything."""
    fast = await join(http_port, "room")
    stalled = socket.create_connection(("127.0.0.1", http_port))
    stalled.sendall(
        b"GET /member?group=room HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(200):
        if layer.membership().members("room") == 2:
            break
        await asyncio.sleep(0.01)
    assert layer.membership().members("room") == 2
    blob = "x" * 200_000
    with caplog.at_level(logging.WARNING, logger="hybrid.application"):
        for n in range(200):
            await hybrid.group_send("room", {"type": "chat.message", "n": n, "blob": blob})
            assert (await receive(fast))["n"] == n
            if layer.membership().members("room") == 1:
                break
    assert layer.membership().members("room") == 1, "the stalled socket was never dropped"
    assert n < 150, f"{n} messages of 200 KB were buffered for a client that reads nothing"
    assert any("closed with 1013" in r.getMessage() for r in caplog.records)
    assert layer.slow_closes == 1
    # Everything it was sent before, then the close frame: code 1013.
    stalled.setblocking(False)
    data = bytearray()
    loop = asyncio.get_running_loop()
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(stalled, 1 << 20), 10)
        if not chunk:
            break
        data += chunk
        if close_code(bytes(data)) is not None:
            break
    stalled.close()
    assert close_code(bytes(data)) == 1013
    await hybrid.group_send("room", {"type": "chat.message", "n": "after"})
    assert (await receive(fast))["n"] == "after"


def close_code(data: bytes) -> int | None:
    """The code of the close frame in a server's byte stream after the 101 response."""
    view = data[data.index(b"\r\n\r\n") + 4 :]
    while len(view) >= 2:
        opcode, length, at = view[0] & 0x0F, view[1] & 0x7F, 2
        if length == 126:
            length, at = int.from_bytes(view[2:4], "big"), 4
        elif length == 127:
            length, at = int.from_bytes(view[2:10], "big"), 10
        if len(view) < at + length:
            return None  # not all here yet
        payload, view = view[at : at + length], view[at + length :]
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")
    return None


def test_a_mailbox_waits_for_the_flush_and_overflows_once() -> None:
    handled: list[int] = []
    overflowed: list[bool] = []
    loop = asyncio.new_event_loop()
    try:
        pending: asyncio.Future[None] = loop.create_future()
        box = Mailbox(
            lambda m: handled.append(m["n"]),
            lambda: None if pending.done() else pending,
            lambda: overflowed.append(True),
            limit=2,
        )
        box.put({"n": 0})  # handled at once; its write is still pending
        box.put({"n": 1})
        box.put({"n": 2})
        assert handled == [0] and len(box.queue) == 2
        box.put({"n": 3})  # a third waiting message: over the limit
        assert overflowed == [True] and box.closed and not box.queue
        box.put({"n": 4})
        assert overflowed == [True] and handled == [0]
    finally:
        loop.close()


def test_membership_reports_first_and_last_members() -> None:
    membership = Membership()
    a = Mailbox(lambda m: None, lambda: None, lambda: None)
    b = Mailbox(lambda m: None, lambda: None, lambda: None)
    assert membership.add("g", a) is True
    assert membership.add("g", b) is False
    assert membership.discard("g", a) is False
    assert membership.discard("g", a) is False
    assert membership.discard("g", b) is True
    assert "g" not in membership and len(membership) == 0
    assert membership.deliver("g", {"type": "t"}) == 0


@pytest.mark.gen_test
async def test_groups_declared_on_the_class_are_joined_before_open(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    conn = await join(http_port, "room", path="/broadcast")
    plain = await join(http_port, "room")
    await hybrid.group_send("broadcast", {"type": "chat.message", "text": "all"})
    assert await receive(conn) == {"type": "chat.message", "text": "all"}
    await nothing_for(plain)
    with pytest.raises(hybrid.GroupError, match="invalid group name"):
        type("Bad", (Member,), {"groups": ("no spaces allowed",)})


@pytest.mark.gen_test
async def test_a_socket_closing_under_its_handler_is_not_an_error(
    http_server: object, http_port: int, layer: LocalLayer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await join(http_port, "room")
    members = layer.membership()._groups["room"]
    (mailbox,) = members
    handler = mailbox._dispatch.__self__  # type: ignore[attr-defined]
    handler.close()  # closing: write_message now raises WebSocketClosedError
    with caplog.at_level(logging.ERROR):
        mailbox.put({"type": "chat.message", "text": "too late"})  # a racing delivery
        mailbox.put({"type": "slow.echo", "text": "too late"})
        await asyncio.sleep(0.1)
    conn.close()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.gen_test
async def test_the_worker_metrics_count_groups_members_deliveries_and_slow_closes(
    http_server: object, http_port: int, layer: LocalLayer
) -> None:
    from hybrid.metrics import WorkerMetrics

    metrics = WorkerMetrics(
        inflight=lambda: 0, commands_running=lambda: 0, command_timeouts=lambda: 0, groups=layer
    )
    await join(http_port, "room-1", "room-2")
    await join(http_port, "room-1")
    await hybrid.group_send("room-1", {"type": "chat.message"})
    layer.slow_closes += 1  # as an overflowing socket counts itself
    text = metrics.render().decode()
    assert "hybrid_groups 2.0" in text
    assert "hybrid_group_memberships 3.0" in text
    assert "hybrid_group_deliveries_total 2.0" in text
    assert "hybrid_group_slow_closes_total 1.0" in text
    assert "hybrid_group_send_failures_total 0.0" in text


def test_sending_from_a_process_without_sockets_says_once_it_reaches_nobody(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lonely = LocalLayer()
    with caplog.at_level(logging.WARNING, logger="hybrid.general"):
        lonely.send_sync("room", {"type": "t"})
        lonely.send_sync("room", {"type": "t"})
    lines = [r.getMessage() for r in caplog.records if "reach nobody" in r.getMessage()]
    assert len(lines) == 1 and "HYBRID_GROUPS" in lines[0]


def test_outside_a_worker_the_backend_comes_from_settings_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.test import override_settings

    previous = groups_layer.reset()
    try:
        with override_settings(HYBRID={"groups": "redis://127.0.0.1:6399/2", "group_queue": 7}):
            layer = groups_layer.current()
            assert layer.name == "redis://127.0.0.1:6399/2" and layer.queue_limit == 7
        groups_layer.reset()
        monkeypatch.setenv("HYBRID_GROUPS", "memory://")
        assert isinstance(groups_layer.current(), LocalLayer)
    finally:
        groups_layer.reset()
        if previous is not None:
            groups_layer.install(previous)
