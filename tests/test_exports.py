"""``hybrid.__all__`` is the public API: sorted, complete, and importable without Django."""

from __future__ import annotations

import subprocess
import sys

import hybrid


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
