"""``hybrid.tasks.delay`` / ``apply_async``: off the loop, and fast failure with the broker
down."""

from __future__ import annotations

import time

import pytest
from celery_workers import make_app, on_loop
from conftest import free_port

import hybrid
import hybrid.tasks


@pytest.mark.gen_test(timeout=30)
async def test_delay_with_the_broker_down_raises_tasks_unavailable_fast() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    app = make_app(url)
    try:
        async with on_loop():
            started = time.monotonic()
            with pytest.raises(hybrid.TasksUnavailable) as info:
                await hybrid.tasks.delay(app.tasks["testproject.tasks.add"], 1, 2)
            took = time.monotonic() - started
    finally:
        app.close()
    assert took < 2.5
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, hybrid.HybridError)
    assert "s3cret" not in str(info.value) and "s3cret" not in info.value.broker
    assert "127.0.0.1" in info.value.broker and info.value.reason
    assert "try again later" in str(info.value)
