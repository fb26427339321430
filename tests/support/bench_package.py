"""``scripts/bench`` loaded for the tests of its pure parts, from its folder under a private
package name: no ``sys.path`` change, so those tests do not depend on the folder pytest runs
from."""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
PACKAGE = "_hybrid_bench"


def load(module: str) -> ModuleType:
    """``scripts/bench/<module>.py``, imported as a submodule of the package."""
    if PACKAGE not in sys.modules:
        # paths.py imports nothing of the package: run on its own, it imports the package.
        runpy.run_path(str(BENCH / "paths.py"))["import_package"](PACKAGE, BENCH)
    return importlib.import_module(f"{PACKAGE}.{module}")
