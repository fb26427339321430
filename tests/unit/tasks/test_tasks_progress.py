"""Progress and the end of a task reach the sockets in the task's group, from a real
Celery worker through Redis pub/sub (hybrid.groups)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery_workers import CeleryWorker, on_loop
from conftest import RedisServer
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

import hybrid
import hybrid.tasks
from hybrid.groups import layer as groups_layer
from hybrid.groups.redis_layer import RedisLayer


class TaskSocket(hybrid.GroupsMixin, WebSocketHandler):
    """Joins the group of the task named in the URL and relays what it gets."""

    async def open(self, task_id: str) -> None:
        await self.group_add(hybrid.tasks.task_group(task_id))
        self.write_message({"type": "ready"})

    def task_progress(self, message: dict[str, Any]) -> None:
        self.write_message(message)

    def task_done(self, message: dict[str, Any]) -> None:
        self.write_message(message)

    def task_failed(self, message: dict[str, Any]) -> None:
        self.write_message(message)


@pytest.fixture
def app() -> Application:
    return Application([(r"/task/([\w-]+)", TaskSocket)])


@pytest.fixture
def layer(redis: RedisServer) -> Iterator[RedisLayer]:
    previous = groups_layer.reset()
    try:
        yield groups_layer.install(RedisLayer(redis.url))  # type: ignore[misc]
    finally:
        groups_layer.reset()
        if previous is not None:
            groups_layer.install(previous)


async def messages(port: int, task_id: str, count: int) -> tuple[Any, list[dict[str, Any]]]:
    conn = await websocket_connect(f"ws://127.0.0.1:{port}/task/{task_id}")
    got = [json.loads(await asyncio.wait_for(conn.read_message(), 5) or "null")]
    assert got[0] == {"type": "ready"}
    return conn, got


@pytest.mark.gen_test(timeout=60)
async def test_progress_and_done_reach_a_socket_in_the_task_group(
    http_server: object,
    http_port: int,
    redis: RedisServer,
    layer: RedisLayer,
    celery_worker: Callable[..., CeleryWorker],
) -> None:
    worker = celery_worker(redis)
    task_id = str(uuid.uuid4())
    conn, _ = await messages(http_port, task_id, 0)
    try:
        async with on_loop():
            result = await hybrid.tasks.apply_async(worker.task("report"), (3,), task_id=task_id)
            got = [json.loads(await asyncio.wait_for(conn.read_message(), 10)) for _ in range(4)]
            assert await hybrid.tasks.wait(result, timeout=10) == 3
    finally:
        conn.close()
        await layer.close()
    assert got == [
        *(
            {
                "type": "task.progress",
                "task_id": task_id,
                "current": step,
                "total": 3,
                "stage": f"step {step}",
            }
            for step in (1, 2, 3)
        ),
        {"type": "task.done", "task_id": task_id, "result": 3},
    ]
    assert worker.app.AsyncResult(task_id).state == "SUCCESS"


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_task_sends_task_failed(
    http_server: object,
    http_port: int,
    redis: RedisServer,
    layer: RedisLayer,
    celery_worker: Callable[..., CeleryWorker],
) -> None:
    worker = celery_worker(redis)
    task_id = str(uuid.uuid4())
    conn, _ = await messages(http_port, task_id, 0)
    try:
        async with on_loop():
            await hybrid.tasks.apply_async(worker.task("fail"), ("closed",), task_id=task_id)
            got = json.loads(await asyncio.wait_for(conn.read_message(), 10))
    finally:
        conn.close()
        await layer.close()
    assert got == {"type": "task.failed", "task_id": task_id, "error": "ShopClosed: closed"}


def test_progress_without_a_groups_backend_never_fails_the_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(group: str, message: dict[str, Any]) -> None:
        raise hybrid.GroupsUnavailable("down", group=group, backend="redis://x", reason="down")

    monkeypatch.setattr("hybrid.groups.group_send_sync", down)
    stored: list[tuple[str, dict[str, Any]]] = []

    class Task:
        class request:  # noqa: N801
            id = "abc"

        def update_state(self, state: str, meta: dict[str, Any]) -> None:
            stored.append((state, meta))

    hybrid.tasks.progress(Task(), 1, 2, stage="x")
    assert stored == [("PROGRESS", {"current": 1, "total": 2, "stage": "x"})]
    assert "task.progress for task abc not sent to its group" in caplog.text
