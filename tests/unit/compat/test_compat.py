"""The startup check of :mod:`hybrid._compat`: probes, versions, the one-line message.

Fake libraries and fake compat modules only: the real Tornado and Python declarations are
covered by tests/unit/compat/test_compat_tornado.py.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from collections.abc import Callable

import pytest
import tornado

import hybrid
from hybrid._compat import MODULES, Internal, Library, check, has_attrs
from hybrid.errors import UnsupportedVersionError


def _fail() -> bool:
    return False


def _ok() -> bool:
    return True


def _boom() -> bool:
    raise AttributeError("'Thing' object has no attribute '_gone'")


def _library(*internals: Internal, distribution: str = "fakelib") -> Library:
    return Library(distribution, "fakelib", ("1.0", "1.1"), "fakelib>=1.0,<2", internals)


def _module(
    monkeypatch: pytest.MonkeyPatch, name: str, library: Callable[[], Library | None]
) -> str:
    module = types.ModuleType(name)
    module.library = library  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    return name


def test_a_failing_probe_is_missing_and_the_others_are_not() -> None:
    gone = Internal("fakelib.Thing._gone", "hybrid reads it", _fail)
    here = Internal("fakelib.Thing._here", "hybrid reads it too", _ok)
    assert _library(here, gone, here).missing() == [gone]


def test_a_probe_that_raises_counts_as_missing() -> None:
    raising = Internal("fakelib.Thing._gone", "hybrid reads it", _boom)
    assert _library(raising).missing() == [raising]
    with pytest.raises(UnsupportedVersionError) as info:
        _library(raising).check()
    assert info.value.missing == ["fakelib.Thing._gone (hybrid reads it)"]


def test_nothing_missing_checks_quietly() -> None:
    _library(Internal("fakelib.Thing._here", "hybrid reads it", _ok)).check()
    _library().check()


def test_the_message_names_library_version_missing_and_what_to_install() -> None:
    library = _library(
        Internal("fakelib.Thing._gone", "hybrid patches it", _fail),
        Internal("fakelib.Other.x", "hybrid reads it", _ok),
        Internal("fakelib.Other._y", "hybrid calls it", _boom),
        distribution="tornado",  # installed: a real version to report
    )
    with pytest.raises(UnsupportedVersionError) as info:
        library.check()
    error = info.value
    assert str(error) == (
        f"hybrid {hybrid.__version__} does not support tornado {tornado.version}: "
        "missing fakelib.Thing._gone (hybrid patches it); fakelib.Other._y (hybrid calls it)."
        " Verified on tornado 1.0, 1.1: pip install 'fakelib>=1.0,<2'"
    )
    assert "\n" not in str(error)
    assert (error.library, error.version, error.requirement) == (
        "tornado",
        tornado.version,
        "fakelib>=1.0,<2",
    )
    assert error.missing == [
        "fakelib.Thing._gone (hybrid patches it)",
        "fakelib.Other._y (hybrid calls it)",
    ]
    assert isinstance(error, hybrid.HybridError)


def test_a_version_pip_does_not_know_is_unknown() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("hybrid-no-such-distribution")
    library = _library(distribution="hybrid-no-such-distribution")
    assert library.version() == "unknown"
    assert _library(distribution="tornado").version() == tornado.version


def test_check_skips_a_library_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = _module(monkeypatch, "hybrid_test_compat_absent", lambda: None)
    fine = _module(monkeypatch, "hybrid_test_compat_fine", lambda: _library())
    check((absent, fine))  # no error: the absent one is not probed at all

    broken = _module(
        monkeypatch,
        "hybrid_test_compat_broken",
        lambda: _library(Internal("fakelib.Thing._gone", "hybrid reads it", _fail)),
    )
    with pytest.raises(UnsupportedVersionError, match=r"missing fakelib\.Thing\._gone"):
        check((absent, fine, broken))


def test_check_stops_at_the_first_library_missing_something(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probed: list[str] = []

    def probe(name: str, present: bool) -> Callable[[], bool]:
        def run() -> bool:
            probed.append(name)
            return present

        return run

    first = _module(
        monkeypatch,
        "hybrid_test_compat_first",
        lambda: _library(Internal("first._gone", "r", probe("first", False)), distribution="a"),
    )
    second = _module(
        monkeypatch,
        "hybrid_test_compat_second",
        lambda: _library(Internal("second._gone", "r", probe("second", False)), distribution="b"),
    )
    with pytest.raises(UnsupportedVersionError) as info:
        check((first, second))
    assert info.value.library == "a"
    assert probed == ["first"]


def test_the_default_check_covers_every_compat_module() -> None:
    assert set(MODULES) == {
        "hybrid._compat.django",
        "hybrid._compat.tornado",
        "hybrid._compat.aiomysql",
        "hybrid._compat.asyncio",
        "hybrid._compat.asgiref",
        "hybrid._compat.celery",
    }


def test_has_attrs_wants_every_name() -> None:
    thing = types.SimpleNamespace(_a=1, _b=None)
    assert has_attrs(thing, "_a", "_b")() is True
    assert has_attrs(thing, "_a", "_c")() is False
    assert has_attrs(thing)() is True
    probe = has_attrs(thing, "_c")
    thing._c = 2  # probes look when they run, not when they are made
    assert probe() is True


def _declared() -> list[Internal]:
    """Every internal the real compat modules declare, for the libraries installed here."""
    found: list[Internal] = []
    for dotted in MODULES:
        library = importlib.import_module(dotted).library()
        if library is not None:
            found.extend(library.internals)
    return found


@pytest.mark.parametrize("internal", _declared(), ids=lambda internal: internal.name)
def test_every_declared_probe_passes_on_the_installed_versions(internal: Internal) -> None:
    assert internal.present() is True
    assert internal.reason and "\n" not in internal.reason
