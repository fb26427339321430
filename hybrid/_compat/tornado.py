"""tornado internals hybrid relies on (see :mod:`hybrid._compat`)."""

from __future__ import annotations

from hybrid._compat import Internal, Library

VERIFIED = ("6.5", "6.6")
REQUIREMENT = "tornado>=6.5.10,<7"


def library() -> Library | None:
    """What hybrid needs of tornado, or None when it is not installed."""
    internals: list[Internal] = []
    return Library("tornado", "tornado", VERIFIED, REQUIREMENT, internals)
