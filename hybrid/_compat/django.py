"""Django internals hybrid relies on (see :mod:`hybrid._compat`)."""

from __future__ import annotations

from hybrid._compat import Internal, Library

VERIFIED = ("5.2", "6.0")
REQUIREMENT = "Django>=5.2.18,<6.1"


def library() -> Library | None:
    """What hybrid needs of Django, or None when it is not installed."""
    internals: list[Internal] = []
    return Library("Django", "django", VERIFIED, REQUIREMENT, internals)
