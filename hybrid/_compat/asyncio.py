"""Python internals hybrid relies on (see :mod:`hybrid._compat`)."""

from __future__ import annotations

from hybrid._compat import Internal, Library

VERIFIED = ("3.11", "3.12", "3.13")
REQUIREMENT = "python>=3.11"


def library() -> Library | None:
    """What hybrid needs of Python, or None when it is not installed."""
    internals: list[Internal] = []
    return Library("Python", "asyncio", VERIFIED, REQUIREMENT, internals)
