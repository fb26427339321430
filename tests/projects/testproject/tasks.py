"""Celery tasks for the hybrid.tasks tests (tests/unit/tasks), shared by every app that
imports them (the worker's ``testproject.celery.app`` and each test's own app)."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import shared_task

import hybrid.tasks


class ShopClosed(Exception):
    """The exception :func:`fail` raises, re-created on the waiter's side."""


@shared_task(name="testproject.tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="testproject.tasks.sleep")
def sleep(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


@shared_task(name="testproject.tasks.fail")
def fail(reason: str) -> None:
    raise ShopClosed(reason)


@shared_task(name="testproject.tasks.pid")
def pid() -> int:
    return os.getpid()


@shared_task(bind=True, name="testproject.tasks.report")
def report(self: Any, steps: int, pause: float = 0.05) -> int:
    for step in range(1, steps + 1):
        hybrid.tasks.progress(self, step, steps, stage=f"step {step}")
        time.sleep(pause)
    return steps
