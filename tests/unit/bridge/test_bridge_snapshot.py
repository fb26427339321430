"""Settings the request path reads once (hybrid/bridge/snapshot.py), and what depends on
them: read again after ``override_settings``; cache connections closed at the end of a
request only when a configured backend closes something."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import override_settings

from hybrid.bridge.hygiene import request_hygiene
from hybrid.bridge.snapshot import settings_snapshot

CLOSED: list[str] = []


class ClosingCache(LocMemCache):
    """A backend whose close() does something (as memcached's does)."""

    def close(self, **kwargs: Any) -> None:
        CLOSED.append("closed")


CLOSING = {"default": {"BACKEND": f"{__name__}.ClosingCache"}}
LOCAL = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_settings_are_read_again_after_override_settings() -> None:
    before = settings_snapshot()
    assert settings_snapshot() is before  # read once
    with override_settings(CSRF_USE_SESSIONS=True, FORCE_SCRIPT_NAME="/app"):
        assert settings_snapshot().csrf_use_sessions is True
        assert settings_snapshot().force_script_name == "/app"
    assert settings_snapshot().csrf_use_sessions is False
    assert settings_snapshot().force_script_name is None


def test_caches_are_closed_at_the_end_of_a_request_only_when_closing_does_something() -> None:
    hygiene = request_hygiene(object)
    assert hygiene is not None
    with override_settings(CACHES=LOCAL):
        assert settings_snapshot().caches_close_nothing is True
    with override_settings(CACHES=CLOSING):
        assert settings_snapshot().caches_close_nothing is False
        CLOSED.clear()
        caches["default"].set("k", 1)  # initialized in this context
        hygiene.finished_on_loop()
        assert CLOSED == ["closed"]
