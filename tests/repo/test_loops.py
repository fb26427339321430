"""tests/support/loops.py: pytest-tornado tests followed by ``asyncio.run()`` leave no unclosed
loop for the garbage collector to find in a later test (which would fail that innocent
test at random)."""

from __future__ import annotations

import configparser
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_DIR, SUPPORT_DIR

SCENARIO = textwrap.dedent(
    """
    import asyncio
    import gc

    import pytest


    @pytest.mark.gen_test
    async def test_on_a_tornado_loop():
        await asyncio.sleep(0)


    def test_asyncio_run_then_a_collection():
        async def nothing():
            return None

        asyncio.run(nothing())
        gc.collect()
    """
)


def _run_scenario(tmp_path: Path, *plugins: str) -> subprocess.CompletedProcess[str]:
    """The scenario under the suite's own warning filters, with ``plugins`` loaded."""
    setup = configparser.ConfigParser()
    setup.read(REPO_DIR / "setup.cfg")
    filters = [line for line in setup["tool:pytest"]["filterwarnings"].splitlines() if line]
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings =\n" + "".join(f"    {line}\n" for line in filters)
    )
    (tmp_path / "test_scenario.py").write_text(SCENARIO)
    options = [arg for plugin in plugins for arg in ("-p", plugin)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=tmp_path,
        env={"PYTHONPATH": str(SUPPORT_DIR), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_the_plugin_the_scenario_fails(tmp_path: Path) -> None:
    # Proves the scenario reproduces the failure, so the next test means something.
    # Python 3.11 invents the loop silently and the collector finds it unclosed later;
    # 3.12 and newer warn as they invent it (the suite makes that warning an error too).
    result = _run_scenario(tmp_path)
    assert result.returncode == 1, result.stdout
    if sys.version_info < (3, 12):
        assert "unclosed event loop" in result.stdout
    else:
        assert "DeprecationWarning: There is no current event loop" in result.stdout


def test_with_the_plugin_no_loop_is_left_behind(tmp_path: Path) -> None:
    result = _run_scenario(tmp_path, "loops")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
