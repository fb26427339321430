"""Pytest plugin (tests/conftest.py loads it): real Celery workers for the hybrid.tasks
tests (tests/unit/tasks). ``celery -A testproject worker`` runs in a session of its own, on
a private Redis (broker, result backend and groups), and is killed at teardown.

Each test talks to the worker through an app of its own (:func:`make_app`) pointed at the
same Redis, and closes the loop's result connections (:func:`on_loop`) before its loop
closes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_DIR, RedisServer, hybrid_env, session_pids

import hybrid.tasks.results


def make_app(url: str) -> Any:
    """A Celery app of the test's own, with the test project's tasks, on ``url``."""
    import testproject.tasks  # noqa: F401  # the shared tasks every app gets
    from celery import Celery

    app = Celery("hybrid-tests", broker=url, backend=url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = False
    app.finalize()
    return app


@asynccontextmanager
async def on_loop() -> AsyncIterator[None]:
    """Close the running loop's result connections on the way out."""
    try:
        yield
    finally:
        await hybrid.tasks.results.close()


@dataclass
class CeleryWorker:
    """A running ``celery worker`` subprocess."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    app: Any

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def task(self, name: str) -> Any:
        """The test app's task ``testproject.tasks.NAME``."""
        return self.app.tasks[f"testproject.tasks.{name}"]

    def kill(self) -> None:
        """SIGKILL the worker's main process (its pool children stay until teardown)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def celery_worker(tmp_path: Path) -> Iterator[Callable[..., CeleryWorker]]:
    """``celery_worker(redis, pool="solo", concurrency=1, **env)``: start a worker and
    wait until it has run a task."""
    started: list[CeleryWorker] = []

    def start(
        redis: RedisServer, pool: str = "solo", concurrency: int = 1, **env: str
    ) -> CeleryWorker:
        log_path = tmp_path / f"celery-{len(started)}.log"
        argv = [sys.executable, "-m", "celery", "-A", "testproject", "worker"]
        argv += [
            "--pool",
            pool,
            "-c",
            str(concurrency),
            "--loglevel",
            os.environ.get("HYBRID_TEST_CELERY_LOGLEVEL", "warning"),
        ]
        argv += ["-n", f"w{len(started)}@%h"]
        worker_env = hybrid_env(
            CELERY_BROKER_URL=redis.url,
            CELERY_RESULT_BACKEND=redis.url,
            HYBRID_GROUPS=redis.url,
            **env,
        )
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                env=worker_env,
                cwd=REPO_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        worker = CeleryWorker(proc, log_path, make_app(redis.url))
        started.append(worker)
        try:
            worker.task("add").delay(1, 1).get(timeout=30)
        except Exception as exc:
            message = f"the celery worker did not answer ({exc}):\n{worker.log}"
            raise AssertionError(message) from None
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
        for pid in session_pids(worker.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.app.close()
