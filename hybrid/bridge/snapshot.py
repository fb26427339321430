"""The Django settings the request path reads on every request, read once.

A ``settings.X`` read goes through Django's lazy settings object, and the bridge would do a
dozen per request (the loop-safe middleware rules, the request signals, the script
prefix). Django settings do not change while a project runs; ``override_settings`` (tests)
sends ``setting_changed``, after which the next request reads them again.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SettingsSnapshot", "settings_snapshot"]


class SettingsSnapshot:
    """The settings of one moment, as the bridge uses them."""

    def __init__(self) -> None:
        from django.conf import settings
        from django.core.cache.backends.base import BaseCache
        from django.utils.module_loading import import_string

        self.builtin_sessions = str(settings.SESSION_ENGINE).startswith(
            "django.contrib.sessions.backends."
        )
        self.save_every_request = bool(settings.SESSION_SAVE_EVERY_REQUEST)
        self.csrf_use_sessions = bool(settings.CSRF_USE_SESSIONS)
        self.max_memory_size = int(settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        self.builtin_messages = str(settings.MESSAGE_STORAGE).startswith(
            "django.contrib.messages.storage."
        )
        self.force_script_name: str | None = settings.FORCE_SCRIPT_NAME
        #: True when closing the cache connections at the end of a request does nothing:
        #: every configured backend keeps ``BaseCache.close`` (local memory, database,
        #: files, dummy, Redis); memcached's closes its client.
        self.caches_close_nothing = all(
            getattr(import_string(alias["BACKEND"]), "close", None) is BaseCache.close
            for alias in settings.CACHES.values()
        )
        #: The hosts a request may name, as ``HttpRequest.get_host()`` reads them: with
        #: ``DEBUG`` and no ``ALLOWED_HOSTS``, Django's localhost allowances.
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]
        self.allowed_hosts: tuple[str, ...] = tuple(allowed)
        self.use_x_forwarded_host = bool(settings.USE_X_FORWARDED_HOST)
        #: Hosts already checked against :attr:`allowed_hosts` (a bounded memo, dropped
        #: with the snapshot when a setting changes).
        self.checked_hosts: dict[str, bool] = {}


_read: list[SettingsSnapshot] = []


def settings_snapshot() -> SettingsSnapshot:
    """The settings as read at the first request since the last ``setting_changed``."""
    if not _read:
        from django.core.signals import setting_changed

        setting_changed.connect(_forget, dispatch_uid="hybrid.bridge.snapshot")
        _read.append(SettingsSnapshot())
    return _read[0]


def _forget(**kwargs: Any) -> None:
    _read.clear()
