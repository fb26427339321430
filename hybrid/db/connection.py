"""The aiomysql connection the native pools open, with a cheaper packet read.

aiomysql reads every MySQL packet with two awaited ``StreamReader.readexactly()`` calls
(header, then body). A 100-row result is ~110 packets and almost always already sits
whole in the reader's buffer, so those awaits are pure overhead: measured, they made a
100-row read cost ~20 % more CPU than PyMySQL's sync read. :class:`Connection` takes a
packet straight from the buffer when the whole packet is there, and otherwise (a partial
packet, a 16 MiB continuation packet, a reader in error or at EOF) calls aiomysql's own
``_read_packet``, so errors and waits are exactly aiomysql's.

The buffer is asyncio's ``StreamReader._buffer``, reached through
:mod:`hybrid._compat.asyncio`; if a Python version changes it, :func:`connection_class`
returns aiomysql's class unchanged.
"""

from __future__ import annotations

from typing import Any

from hybrid._compat import aiomysql as aiomysql_compat
from hybrid._compat import asyncio as asyncio_compat

__all__ = ["connection_class", "connect"]

_class: type[Any] | None = None


def connection_class() -> type[Any]:
    """aiomysql's ``Connection`` with the fast path, or without it where asyncio's
    ``StreamReader`` lacks the internals it reads."""
    global _class
    if _class is not None:
        return _class
    from pymysql.connections import MysqlPacket  # type: ignore[import-untyped]

    base = aiomysql_compat.connection_class()
    if not asyncio_compat.reader_buffer_usable():
        _class = base
        return _class

    async def read_packet(self: Any, packet_type: Any = MysqlPacket) -> Any:
        reader = aiomysql_compat.packet_reader(self)
        buffer = asyncio_compat.reader_buffer(reader) if reader is not None else None
        if buffer is not None:
            if len(buffer) >= 4:
                length = buffer[0] | buffer[1] << 8 | buffer[2] << 16
                seq = aiomysql_compat.next_seq_id(self)
                if length < 0xFFFFFF and len(buffer) >= 4 + length and buffer[3] == seq:
                    data = bytes(buffer[4 : 4 + length])
                    del buffer[: 4 + length]
                    asyncio_compat.reader_buffer_consumed(reader)
                    aiomysql_compat.set_next_seq_id(self, (seq + 1) % 256)
                    packet = packet_type(data, aiomysql_compat.encoding(self))
                    if packet.is_error_packet():
                        result = aiomysql_compat.current_result(self)
                        if result is not None and result.unbuffered_active is True:
                            result.unbuffered_active = False
                        packet.raise_for_error()
                    return packet
        return await aiomysql_compat.read_packet(self, packet_type)

    # The fast path replaces aiomysql's own packet read (hybrid._compat.aiomysql).
    _class = type("Connection", (base,), {aiomysql_compat.READ_PACKET: read_packet})
    return _class


async def connect(**kwargs: Any) -> Any:
    """``aiomysql.connect(**kwargs)``, as an instance of :func:`connection_class`."""
    conn = connection_class()(**kwargs)
    await aiomysql_compat.open_connection(conn)
    return conn
