"""The Redis backend against a real private Redis: two backends on one loop stand for two
workers (each has its own subscriber and publisher, as a worker does)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import RedisServer, redis_server
from waiting import until

import hybrid
from hybrid.groups.members import Mailbox
from hybrid.groups.redis_layer import RedisLayer, display_url


class Inbox:
    """A member that records what it gets."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.mailbox = Mailbox(self.got.append, lambda: None, lambda: None)


def numsub(redis: RedisServer, layer: RedisLayer, group: str) -> int:
    reply = redis.command("PUBSUB", "NUMSUB", layer.channel(group))
    return int(reply[1])


@asynccontextmanager
async def two_workers(redis: RedisServer) -> AsyncIterator[tuple[RedisLayer, RedisLayer]]:
    a, b = RedisLayer(redis.url), RedisLayer(redis.url)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.mark.gen_test
async def test_a_message_reaches_members_behind_both_backends(redis: RedisServer) -> None:
    async with two_workers(redis) as (a, b):
        here, there, elsewhere = Inbox(), Inbox(), Inbox()
        await a.add("room-1", here.mailbox)
        await b.add("room-1", there.mailbox)
        await b.add("room-2", elsewhere.mailbox)
        await a.send("room-1", {"type": "chat.message", "text": "hi"})
        await until(lambda: here.got and there.got, message="both members")
        assert here.got == there.got == [{"type": "chat.message", "text": "hi"}]
        await asyncio.sleep(0.1)
        assert elsewhere.got == []


@pytest.mark.gen_test
async def test_subscriptions_follow_membership_and_empty_groups_reach_no_worker(
    redis: RedisServer,
) -> None:
    async with two_workers(redis) as (a, b):
        one, two = Inbox(), Inbox()
        await a.add("room-x", one.mailbox)
        await a.add("room-x", two.mailbox)
        assert numsub(redis, a, "room-x") == 1  # one subscription per worker, not per socket
        assert numsub(redis, b, "room-x") == 1
        a.discard("room-x", one.mailbox)
        await asyncio.sleep(0.1)
        assert numsub(redis, a, "room-x") == 1
        a.discard("room-x", two.mailbox)
        await until(lambda: numsub(redis, a, "room-x") == 0, message="the unsubscribe")
        # No worker is subscribed: Redis drops the message at once, no worker reads it.
        assert redis.command("PUBLISH", a.channel("room-x"), b'{"type":"t"}') == 0
        await b.send("room-x", {"type": "t"})
        await asyncio.sleep(0.1)
        assert one.got == two.got == []


@pytest.mark.gen_test
async def test_each_backend_holds_one_subscriber_connection_whatever_the_sockets(
    redis: RedisServer,
) -> None:
    layer = RedisLayer(redis.url)
    before = redis.client_names().count(f"hybrid-sub-{__import__('os').getpid()}")
    inboxes = [Inbox() for _ in range(50)]
    try:
        for n, inbox in enumerate(inboxes):
            await layer.add(f"room-{n % 10}", inbox.mailbox)
        await layer.send("room-3", {"type": "t"})
        await until(lambda: sum(len(i.got) for i in inboxes) == 5, message="5 deliveries")
        names = redis.client_names()
        pid = __import__("os").getpid()
        assert names.count(f"hybrid-sub-{pid}") - before == 1
        assert names.count(f"hybrid-pub-{pid}") >= 1
    finally:
        await layer.close()


@pytest.mark.gen_test
async def test_one_senders_messages_arrive_in_order(redis: RedisServer) -> None:
    async with two_workers(redis) as (a, b):
        inbox = Inbox()
        await b.add("ordered", inbox.mailbox)
        await asyncio.gather(*(a.send("ordered", {"type": "t", "n": n}) for n in range(500)))
        await until(lambda: len(inbox.got) == 500, message="500 messages")
        assert [m["n"] for m in inbox.got] == list(range(500))


@pytest.mark.gen_test
async def test_group_send_sync_from_a_thread_and_from_the_loop(redis: RedisServer) -> None:
    async with two_workers(redis) as (a, b):
        inbox = Inbox()
        await b.add("sync", inbox.mailbox)
        errors: list[BaseException] = []

        def send() -> None:
            try:
                a.send_sync("sync", {"type": "t", "via": "thread"})
            except BaseException as exc:  # noqa: BLE001  # reported below
                errors.append(exc)

        thread = threading.Thread(target=send)
        thread.start()
        thread.join()
        assert not errors
        await until(lambda: inbox.got, message="the message")
        assert inbox.got == [{"type": "t", "via": "thread"}]
        with pytest.raises(RuntimeError, match="would block the event loop"):
            a.send_sync("sync", {"type": "t"})


@pytest.mark.gen_test(timeout=60)
async def test_redis_killed_and_restarted_sends_fail_fast_then_delivery_resumes(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = RedisLayer(private_redis.url), RedisLayer(private_redis.url)
    here, there = Inbox(), Inbox()
    try:
        with caplog.at_level(logging.WARNING, logger="hybrid.general"):
            await a.add("room", here.mailbox)
            await b.add("room", there.mailbox)
            private_redis.kill()
            started = time.monotonic()
            with pytest.raises(hybrid.GroupsUnavailable) as caught:
                await a.send("room", {"type": "t", "n": 1})
            assert time.monotonic() - started < 3
            assert caught.value.group == "room" and caught.value.backend == a.name
            assert "nothing was delivered" in str(caught.value)
            assert a.send_failures == 1
            with pytest.raises(hybrid.GroupsUnavailable):
                await asyncio.get_running_loop().run_in_executor(
                    None, a.send_sync, "room", {"type": "t"}
                )
            await asyncio.sleep(0.5)  # a few reconnect attempts, each refused
            private_redis.restart()
            await until(lambda: numsub(private_redis, a, "room") == 2, 15, message="resubscribed")
            await a.send("room", {"type": "t", "n": 2})
            await until(lambda: here.got and there.got, message="delivery after the restart")
        assert here.got == there.got == [{"type": "t", "n": 2}]  # at most once: n=1 is lost
        gone = [r for r in caplog.records if "unavailable" in r.getMessage()]
        back = [r for r in caplog.records if "is back" in r.getMessage()]
        assert len(gone) == 2 and len(back) == 2, [r.getMessage() for r in caplog.records]
        assert "resubscribed 1 group(s)" in back[0].getMessage()
    finally:
        await a.close()
        await b.close()


@pytest.mark.gen_test(timeout=60)
async def test_unreachable_at_start_serves_on_logs_once_and_connects_when_redis_comes(
    tmp_path: Path, free_ports: Callable[[int], list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    (port,) = free_ports(1)
    directory = tmp_path / "redis"
    directory.mkdir()
    (directory / "env").write_text(f"REDIS_PORT={port}\n")  # scripts/redis reuses it
    url = f"redis://127.0.0.1:{port}/0"
    layer = RedisLayer(url)
    inbox = Inbox()
    try:
        with caplog.at_level(logging.WARNING, logger="hybrid.general"):
            await layer.start()
            started = time.monotonic()
            await layer.add("room", inbox.mailbox)  # recorded; subscribed once Redis is up
            assert time.monotonic() - started < 1
            await asyncio.sleep(1.0)
            lines = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(lines) == 1, lines  # once, however many retries
            with redis_server(directory) as server:
                assert server.port == port
                await until(lambda: numsub(server, layer, "room") == 1, 15, message="subscribed")
                await layer.send("room", {"type": "t"})
                await until(lambda: inbox.got, message="the message")
    finally:
        await layer.close()


def test_urls_are_shown_without_passwords_and_databases_keep_channels_apart() -> None:
    assert display_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert display_url("redis://me:s3cret@h:1/2") == "redis://me:***@h:1/2"
    assert RedisLayer("redis://127.0.0.1:6379/0").channel("r") == b"hybrid.groups:0:r"
    assert RedisLayer("redis://127.0.0.1:6379/3").channel("r") == b"hybrid.groups:3:r"
    layer = RedisLayer("redis://127.0.0.1:6379/0?prefix=shop:&socket_timeout=1")
    assert layer.channel("r") == b"shop:r"
    assert layer.url == "redis://127.0.0.1:6379/0?socket_timeout=1"


@pytest.mark.gen_test
async def test_a_burst_of_messages_lets_the_loop_run_between_them(redis: RedisServer) -> None:
    """Messages that arrive in one read are handed on one loop turn apart, so a burst
    cannot hold the loop for all of them (other callbacks run in between)."""
    layer = RedisLayer(redis.url)
    order: list[object] = []
    loop = asyncio.get_running_loop()

    def dispatch(message: dict[str, Any]) -> None:
        order.append(message["n"])
        if message["n"] == 0:
            loop.call_soon(order.append, "other callback")

    mailbox = Mailbox(dispatch, lambda: None, lambda: None)
    try:
        await layer.add("burst", mailbox)
        import redis as redis_sync

        client = redis_sync.Redis.from_url(redis.url)
        pipe = client.pipeline(transaction=False)
        for n in range(5):
            pipe.publish(layer.channel("burst"), f'{{"type": "t", "n": {n}}}'.encode())
        pipe.execute()  # one write: the five arrive together
        client.close()
        await until(lambda: len(order) == 6, message="five messages")
        assert order.index("other callback") < order.index(4), order
    finally:
        await layer.close()
