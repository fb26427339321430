"""Every reach into another library's internals, one module per library.

hybrid replaces methods of Django's ``QuerySet`` and ``Model``, reads Tornado's and
aiomysql's private attributes and reads what asgiref's
``sync_to_async`` hands to a database thread. Each of those reaches is
made from one of these modules and nowhere else:

* :mod:`hybrid._compat.django`
* :mod:`hybrid._compat.tornado`
* :mod:`hybrid._compat.aiomysql`
* :mod:`hybrid._compat.asyncio`
* :mod:`hybrid._compat.asgiref`
* :mod:`hybrid._compat.celery`

Each module declares what it needs as :class:`Internal` entries (the dotted name, a
one-line reason, a probe) and the versions it is verified on. :func:`check` runs every
probe at startup (the master before it forks, each worker before it serves): a missing
internal raises :class:`~hybrid.errors.UnsupportedVersionError` naming the library, its
version, what is missing and the supported range, instead of an ``AttributeError`` in the
middle of a request. Libraries that are not installed (aiomysql without the ``mysql``
extra, celery without the ``celery`` extra) are not checked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hybrid.errors import UnsupportedVersionError

__all__ = ["Internal", "Library", "check", "has_attrs"]

#: The modules that declare a ``LIBRARY``; :func:`check` probes them in this order.
MODULES = (
    "hybrid._compat.django",
    "hybrid._compat.tornado",
    "hybrid._compat.aiomysql",
    "hybrid._compat.asyncio",
    "hybrid._compat.asgiref",
    "hybrid._compat.celery",
)


@dataclass(frozen=True)
class Internal:
    """One private name hybrid relies on.

    ``name`` is what the message shows (``django.db.models.Model._do_update``), ``reason``
    why hybrid needs it, ``present`` a probe that returns False when it is gone.
    """

    name: str
    reason: str
    present: Callable[[], bool]


@dataclass(frozen=True)
class Library:
    """A library's internals and the versions they are verified on.

    ``distribution`` is the name pip knows (``Django``), ``module`` the import name whose
    absence means "not installed, nothing to check", ``verified`` the release series the
    test suite runs on (``("5.2", "6.0")``), ``requirement`` the range to tell users.
    """

    distribution: str
    module: str
    verified: tuple[str, ...]
    requirement: str
    internals: Sequence[Internal]

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def missing(self) -> list[Internal]:
        """The internals whose probe fails (a probe that raises counts as failed)."""
        gone = []
        for internal in self.internals:
            try:
                ok = internal.present()
            except Exception:
                ok = False
            if not ok:
                gone.append(internal)
        return gone

    def check(self) -> None:
        """Raise :class:`UnsupportedVersionError` when an internal is missing."""
        gone = self.missing()
        if gone:
            raise UnsupportedVersionError.for_library(
                library=self.distribution,
                version=self.version(),
                missing=[f"{i.name} ({i.reason})" for i in gone],
                verified=self.verified,
                requirement=self.requirement,
            )


def has_attrs(obj: object, *names: str) -> Callable[[], bool]:
    """A probe: ``obj`` has every attribute in ``names``."""
    return lambda: all(hasattr(obj, name) for name in names)


def check(modules: Sequence[str] = MODULES) -> None:
    """Probe every installed library's internals; raise on the first library missing one."""
    for dotted in modules:
        module = importlib.import_module(dotted)
        library: Library | None = module.library()
        if library is not None:
            library.check()
