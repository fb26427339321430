"""aiomysql internals hybrid relies on (see :mod:`hybrid._compat`).

aiomysql has no public way to read a packet that already sits whole in the reader's
buffer without two awaits, nor to open a connection object that was built separately.
:mod:`hybrid.db.connection` subclasses ``aiomysql.Connection`` for both: it replaces
``_read_packet`` with a fast path that keeps aiomysql's packet numbering and error handling
(and calls aiomysql's own method otherwise), and opens its instances with ``_connect()``
as ``aiomysql.connect()`` does. :mod:`hybrid.db.pool` reads the connection's reader to
tell a dead connection from a live one. Each function below is the one place hybrid
touches the private name it wraps; :func:`library` declares them all for the startup
check. Nothing here imports aiomysql at import time (it is the ``mysql`` extra).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

from hybrid._compat import Internal, Library

__all__ = [
    "READ_PACKET",
    "connection_class",
    "current_result",
    "encoding",
    "library",
    "next_seq_id",
    "open_connection",
    "packet_reader",
    "read_packet",
    "set_next_seq_id",
]

VERIFIED = ("0.2", "0.3")
REQUIREMENT = "aiomysql>=0.2,<0.4"

#: The method of ``aiomysql.Connection`` that reads one MySQL packet: hybrid's subclass
#: overrides it with a read straight from the buffer when the whole packet is there.
READ_PACKET = "_read_packet"


def connection_class() -> type[Any]:
    """``aiomysql.Connection``, the class hybrid's fast connection subclasses."""
    import aiomysql  # type: ignore[import-untyped]

    cls: type[Any] = aiomysql.Connection
    return cls


def packet_reader(conn: Any) -> Any:
    """``conn._reader``: the ``StreamReader`` aiomysql reads packets from (None when
    closed); its buffer holds the packets the fast path takes, its state tells the pool
    whether the server hung up."""
    return conn._reader


def next_seq_id(conn: Any) -> int:
    """``conn._next_seq_id``: the sequence number the next packet must carry."""
    seq: int = conn._next_seq_id
    return seq


def set_next_seq_id(conn: Any, seq: int) -> None:
    """Set ``conn._next_seq_id`` after a packet the fast path read, as aiomysql does."""
    conn._next_seq_id = seq


def encoding(conn: Any) -> str:
    """``conn._encoding``: the Python codec a packet is built with."""
    codec: str = conn._encoding
    return codec


def current_result(conn: Any) -> Any:
    """``conn._result``: the result being read, which an error packet ends (as aiomysql's
    own read marks an unbuffered result inactive)."""
    return conn._result


async def read_packet(conn: Any, packet_type: Any) -> Any:
    """aiomysql's own ``Connection._read_packet``: partial and continuation packets, waits
    and errors exactly as aiomysql reads them."""
    method: Callable[..., Any] = getattr(connection_class(), READ_PACKET)
    return await method(conn, packet_type)


async def open_connection(conn: Any) -> None:
    """``await conn._connect()``: what ``aiomysql.connect()`` does to the connection it
    builds; hybrid builds an instance of its own subclass instead."""
    await conn._connect()


# --- the startup check -------------------------------------------------------------------


def _sets_attributes(*names: str) -> Callable[[], bool]:
    """A probe: ``aiomysql.Connection``'s source assigns every ``self.<name>``."""

    def probe() -> bool:
        source = inspect.getsource(connection_class())
        return all(f"self.{name} =" in source for name in names)

    return probe


def _read_packet_takes_packet_type() -> bool:
    method = getattr(connection_class(), READ_PACKET)
    return inspect.iscoroutinefunction(method) and "packet_type" in set(
        inspect.signature(method).parameters
    )


def _connect_is_coroutine() -> bool:
    return inspect.iscoroutinefunction(connection_class()._connect)


def _result_has_unbuffered_active() -> bool:
    from aiomysql.connection import MySQLResult  # type: ignore[import-untyped]

    return "self.unbuffered_active =" in inspect.getsource(MySQLResult)


def library() -> Library | None:
    """What hybrid needs of aiomysql, or None when it is not installed."""
    if importlib.util.find_spec("aiomysql") is None:
        return None
    internals = [
        Internal(
            "aiomysql.Connection._read_packet(packet_type), overridden",
            "native reads take whole packets from the buffer without two awaits",
            _read_packet_takes_packet_type,
        ),
        Internal(
            "aiomysql.Connection._reader/_next_seq_id/_encoding/_result",
            "the fast packet read keeps aiomysql's numbering, codec and error handling",
            _sets_attributes("_reader", "_next_seq_id", "_encoding", "_result"),
        ),
        Internal(
            "aiomysql.connection.MySQLResult.unbuffered_active",
            "an error packet ends an unbuffered result as aiomysql's own read does",
            _result_has_unbuffered_active,
        ),
        Internal(
            "aiomysql.Connection._connect",
            "the native pool opens connections of hybrid's subclass",
            _connect_is_coroutine,
        ),
    ]
    return Library("aiomysql", "aiomysql", VERIFIED, REQUIREMENT, internals)
