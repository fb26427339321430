"""A database that cannot be reached is an outage, not a bug: told apart and logged once.

With the database server down, every request that queries it fails with Django's
``OperationalError``. Answered as any exception is (a 500 page and a traceback per request)
that reads as a bug in the application; load balancers and monitoring should see an outage.
The bridge (:mod:`hybrid.bridge.unavailable`) asks :func:`unreachable` about the exception
and answers 503 with ``Retry-After``; this module keeps the outage's state per process:

* the first such error of a database (its alias read from the frames the error was raised
  through) logs one error line on ``hybrid.application`` (what failed, and that requests
  are answered 503 until it is back);
* the next connection made to that database, on a database thread (Django's
  ``connection_created``, listened to only during an outage) or by a native aiomysql pool
  (:mod:`hybrid.db.pool`), ends its outage with one info line (how long it lasted, how
  many requests were answered 503).

"Cannot be reached" is an ``OperationalError`` with a MySQL/MariaDB code of
:data:`UNREACHABLE_CODES`, or, on another backend, one raised while Django opened the
connection (``get_new_connection``). Both paths raise it so: the database threads (Django's
own backend) and the native aiomysql path (its errors made Django's, with their codes).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from hybrid.errors import describe_exception
from hybrid.log import app_log

__all__ = [
    "RETRY_AFTER",
    "UNREACHABLE_CODES",
    "failed_alias",
    "in_outage",
    "record_reachable",
    "record_unreachable",
    "unreachable",
]

#: MySQL/MariaDB errors meaning "no working connection to the server": too many
#: connections (1040), cannot connect through the socket (2002) or over TCP (2003),
#: unknown host (2005), server gone away (2006), connection lost during a query (2013).
UNREACHABLE_CODES = frozenset({1040, 2002, 2003, 2005, 2006, 2013})

#: Seconds a client is told to wait before it retries (``Retry-After`` of the 503).
RETRY_AFTER = 5


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says that the database cannot be reached (see the module docs)."""
    from django.db import OperationalError

    if not isinstance(exc, OperationalError):
        return False
    code = exc.args[0] if exc.args else None
    if isinstance(code, int):
        return code in UNREACHABLE_CODES
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "get_new_connection":
            return True
        tb = tb.tb_next
    return False


@dataclass
class _Outage:
    started: float
    answered: int = 1


_lock = threading.Lock()  # errors are recorded on database threads and on the loop
#: The outages going on, by database alias (None: an error whose alias is unknown).
_current: dict[str | None, _Outage] = {}


def in_outage() -> bool:
    """Whether an outage is going on (a database error was recorded and no connection to
    that database was made since)."""
    return bool(_current)


def failed_alias(exc: BaseException) -> str | None:
    """The alias of the database ``exc`` came from, read from the frames it was raised
    through (a Django connection's ``self``, or the native path's ``alias``); None when
    none says."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    tb = exc.__traceback__
    while tb is not None:
        frame_locals = tb.tb_frame.f_locals
        owner = frame_locals.get("self")
        if isinstance(owner, BaseDatabaseWrapper):
            return str(owner.alias)
        alias = frame_locals.get("alias")
        if tb.tb_frame.f_code.co_name == "run_statement" and isinstance(alias, str):
            return alias
        tb = tb.tb_next
    return None


def record_unreachable(exc: BaseException) -> None:
    """A request failed because its database cannot be reached: the first of an outage
    logs one error line; the others are counted."""
    alias = failed_alias(exc)
    with _lock:
        outage = _current.get(alias)
        if outage is not None:
            outage.answered += 1
            return
        first = not _current
        _current[alias] = _Outage(time.monotonic())
    if first:
        from django.db.backends.signals import connection_created

        connection_created.connect(_connection_created, dispatch_uid=__name__)
    app_log.error(
        "database %s cannot be reached (%s); answering 503 until a connection succeeds",
        "?" if alias is None else repr(alias),
        describe_exception(exc),
    )


def record_reachable(alias: str) -> None:
    """A connection to ``alias`` was made: its outage (and one of unknown alias) ends,
    with one info line."""
    with _lock:
        ended = [(key, _current.pop(key)) for key in (alias, None) if key in _current]
        last = not _current
    if ended and last:
        from django.db.backends.signals import connection_created

        connection_created.disconnect(dispatch_uid=__name__)
    now = time.monotonic()
    for key, outage in ended:
        app_log.info(
            "database %s is reachable again after %.1fs (%d requests answered 503)",
            "?" if key is None else repr(key),
            now - outage.started,
            outage.answered,
        )


def _connection_created(connection: Any, **kwargs: Any) -> None:
    record_reachable(str(connection.alias))
