"""Pytest plugin: no event loop is ever created behind the suite's back.

pytest-tornado's ``io_loop`` fixture calls ``IOLoop.make_current()``, which asks
``asyncio.get_event_loop()`` for the loop to restore afterwards. Until someone has called
``asyncio.set_event_loop()``, Python 3.11's policy answers that by *creating* a loop, which
``clear_current()`` then leaves installed and nobody closes. The next ``asyncio.run()``
replaces it, and whichever test runs when the garbage collector reaches it fails with
"ResourceWarning: unclosed event loop" (the suite turns warnings into errors): a failure
that lands on an innocent test, at random. Declaring "no loop" once, before any test, makes
``get_event_loop()`` raise instead of invent one; tornado handles that (it restores None).
"""

from __future__ import annotations

import asyncio

import pytest


def pytest_configure(config: pytest.Config) -> None:
    asyncio.set_event_loop(None)
