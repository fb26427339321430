"""aiomysql internals hybrid relies on (see :mod:`hybrid._compat`)."""

from __future__ import annotations

from hybrid._compat import Internal, Library

VERIFIED = ("0.2", "0.3")
REQUIREMENT = "aiomysql>=0.2,<0.4"


def library() -> Library | None:
    """What hybrid needs of aiomysql, or None when it is not installed."""
    internals: list[Internal] = []
    return Library("aiomysql", "aiomysql", VERIFIED, REQUIREMENT, internals)
