"""Where things are (this folder, the repository, the benchmark project, the results, the
two virtualenvs), and how a package in a folder that is not on ``sys.path`` is imported."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROJECT = HERE / "project"
RESULTS = HERE / "results"
MARIADB = REPO / "scripts" / "mariadb"
# hybrid and raw Tornado run in the project's virtualenv (``scripts/bootstrap``: .venv), which
# holds only pinned packages; the peers (gunicorn, gevent, uvicorn) and the tools (matplotlib,
# py-spy) in a separate one that ``tools.ensure_tools`` makes: ``$BENCH_VENV`` or .venv-bench.
PROJECT_VENV = REPO / ".venv"
BENCH_VENV = Path(os.environ.get("BENCH_VENV") or REPO / ".venv-bench")
BENCH_PYTHON = BENCH_VENV / "bin" / "python"


def import_package(name: str, folder: Path) -> ModuleType:
    """Import the package in ``folder`` as ``name``, its submodules importable after it,
    without putting its parent folder on ``sys.path``."""
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
