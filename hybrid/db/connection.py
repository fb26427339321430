"""The aiomysql connection the native pools open, with a cheaper packet read.

aiomysql reads every MySQL packet with two awaited ``StreamReader.readexactly()`` calls
(header, then body). A 100-row result is ~110 packets and almost always already sits
whole in the reader's buffer, so those awaits are pure overhead: measured, they made a
100-row read cost ~20 % more CPU than PyMySQL's sync read. :class:`Connection` takes a
packet straight from the buffer when the whole packet is there, and otherwise (a partial
packet, a 16 MiB continuation packet, a reader in error or at EOF) calls aiomysql's own
``_read_packet``, so errors and waits are exactly aiomysql's.

The buffer is asyncio's ``StreamReader._buffer`` (a ``bytearray``, consumed with
``_maybe_resume_transport()`` after, as ``readexactly`` does); if a Python version changes
those, :func:`connection_class` returns aiomysql's class unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["connection_class", "connect"]

_class: type[Any] | None = None


def connection_class() -> type[Any]:
    """aiomysql's ``Connection`` with the fast path, or without it where asyncio's
    ``StreamReader`` lacks the internals it reads."""
    global _class
    if _class is not None:
        return _class
    import aiomysql  # type: ignore[import-untyped]
    from pymysql.connections import MysqlPacket  # type: ignore[import-untyped]

    base: type[Any] = aiomysql.Connection
    reader = asyncio.StreamReader()
    if not (
        isinstance(getattr(reader, "_buffer", None), bytearray)
        and callable(getattr(reader, "_maybe_resume_transport", None))
        and hasattr(reader, "_exception")
    ):
        _class = base
        return _class

    class Connection(base):  # type: ignore[misc]
        async def _read_packet(self: Any, packet_type: Any = MysqlPacket) -> Any:
            reader = self._reader
            if reader is not None and reader._exception is None:
                buffer = reader._buffer
                if len(buffer) >= 4:
                    length = buffer[0] | buffer[1] << 8 | buffer[2] << 16
                    if (
                        length < 0xFFFFFF
                        and len(buffer) >= 4 + length
                        and buffer[3] == self._next_seq_id
                    ):
                        data = bytes(buffer[4 : 4 + length])
                        del buffer[: 4 + length]
                        reader._maybe_resume_transport()
                        self._next_seq_id = (self._next_seq_id + 1) % 256
                        packet = packet_type(data, self._encoding)
                        if packet.is_error_packet():
                            result = self._result
                            if result is not None and result.unbuffered_active is True:
                                result.unbuffered_active = False
                            packet.raise_for_error()
                        return packet
            return await super()._read_packet(packet_type)

    _class = Connection
    return _class


async def connect(**kwargs: Any) -> Any:
    """``aiomysql.connect(**kwargs)``, as an instance of :func:`connection_class`."""
    conn = connection_class()(**kwargs)
    await conn._connect()
    return conn
