"""Whether a call on an alias may run natively here, and why not.

Below :mod:`hybrid.db.execute` (whose :class:`~hybrid.db.atomic` asks before opening a
native transaction) and :mod:`hybrid.db.dispatch` (which asks before every patched ORM
call), so both import it and it imports neither: the patches' on/off state that
:func:`hybrid.db.install` flips, and the sync connections that connected (tracked by
dispatch's ``connection_created`` receiver), are kept here.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from hybrid.db.pool import is_active
from hybrid.lanes import current_lane

__all__ = [
    "alias_native",
    "forget_aliases",
    "installed",
    "mark_installed",
    "native_alias_reason",
    "sync_transaction_open",
    "track_connection",
]

#: Whether Django's async ORM methods are patched (process-wide, like the patches).
_installed = False
_alias_native: dict[str, bool] = {}
#: Every MySQL ``DatabaseWrapper`` that connected, with the thread that owns it.
_tracked: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def installed() -> bool:
    """Whether :func:`hybrid.db.install` patched Django's async ORM methods."""
    return _installed


def mark_installed(on: bool) -> None:
    """Record that the patches went in (or out): :mod:`hybrid.db.dispatch` only."""
    global _installed
    _installed = on
    if not on:
        forget_aliases()


def forget_aliases() -> None:
    """Look at ``DATABASES`` again at the next call (tests change it)."""
    _alias_native.clear()


def track_connection(connection: Any) -> None:
    """Remember that ``connection`` connected on this thread."""
    _tracked[connection] = threading.get_ident()


def alias_native(alias: str) -> bool:
    """Whether ``alias`` is a MySQL database that native calls may use."""
    known = _alias_native.get(alias)
    if known is None:
        from django.db import connections

        try:
            settings_dict = connections.settings[alias]
            known = connections[alias].vendor == "mysql" and bool(
                settings_dict.get("HYBRID_NATIVE", True)
            )
        except Exception:
            known = False
        _alias_native[alias] = known
    return known


def sync_transaction_open(alias: str) -> bool:
    """Whether a sync connection this context could share is in a transaction."""
    lane = current_lane()
    threads = None
    if lane is not None:
        threads = lane.thread_idents()
        if not threads:
            return False  # the request has no database thread yet: no sync connection
    for wrapper, ident in list(_tracked.items()):
        if wrapper.alias != alias or (threads is not None and ident not in threads):
            continue
        if wrapper.in_atomic_block or (wrapper.connection is not None and not wrapper.autocommit):
            return True
    return False


def native_alias_reason(alias: str) -> str | None:
    """Why a call on ``alias`` cannot run natively here, or None when it can."""
    if not _installed:
        return "hybrid.db is not installed (native_mysql is off, or not in a worker)"
    if not is_active():
        return "this event loop has no native pool (not a hybrid worker's loop)"
    if not alias_native(alias):
        return f"database {alias!r} is not a MySQL database with native calls on"
    if sync_transaction_open(alias):
        return "a transaction.atomic() block is open on the sync connection"
    return None
