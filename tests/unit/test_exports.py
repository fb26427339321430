"""``hybrid.__all__`` is the public API: sorted, complete, and importable without Django."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator

import hybrid
from hybrid import errors


def test_all_is_sorted_and_names_every_public_attribute() -> None:
    public = {
        name
        for name, value in vars(hybrid).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("hybrid")
    }
    public |= {"__version__"}
    assert hybrid.__all__ == sorted(hybrid.__all__)
    assert set(hybrid.__all__) == public


def test_every_export_is_documented() -> None:
    for name in hybrid.__all__:
        if name != "__version__":
            assert getattr(hybrid, name).__doc__, f"hybrid.{name} has no docstring"


def test_importing_hybrid_does_not_import_django() -> None:
    code = "import sys, hybrid; print('django' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_is_exported_and_drawn_in_the_one_tree() -> None:
    """Every ``HybridError`` subclass defined anywhere in hybrid is exported from ``hybrid``
    and has its line in the tree drawn in :mod:`hybrid.errors`'s docstring."""
    for module in pkgutil.walk_packages(hybrid.__path__, "hybrid."):
        importlib.import_module(module.name)  # so that every subclass is defined
    tree = errors.__doc__ or ""
    found = [errors.HybridError, *_subclasses(errors.HybridError)]
    assert len(found) > 10
    for cls in found:
        assert cls.__module__.startswith("hybrid."), cls
        name = cls.__name__
        assert name in hybrid.__all__ and getattr(hybrid, name) is cls, f"{name} not exported"
        line = rf"^ *(?:[│ ]*[├└]── )?{name} "
        assert re.search(line, tree, re.MULTILINE), f"{name} is not drawn in hybrid/errors.py"
    drawn = re.findall(
        r"^[ │├└─]*(\w+Error|Command\w+|\w+Unavailable|\w+Timeout) ", tree, re.MULTILINE
    )
    assert sorted(drawn) == sorted(c.__name__ for c in found), "the tree names a class that is gone"
