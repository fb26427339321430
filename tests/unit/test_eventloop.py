"""hybrid.eventloop: what ``--loop`` resolves to, and what a missing uvloop says.

The test environment has uvloop installed (the ``uvloop`` extra, scripts/bootstrap); its
absence is a real interpreter in which ``import uvloop`` fails.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from hybrid.errors import ConfigError, HybridError
from hybrid.eventloop import UVLOOP_INSTALL, check, choose, describe, is_uvloop


def _run_on(factory: object) -> asyncio.AbstractEventLoop:
    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[arg-type]
        return runner.run(running())


def test_asyncio_is_asyncios_own_loop() -> None:
    chosen = choose("asyncio")
    assert (chosen.name, chosen.factory) == ("asyncio", None)
    loop = _run_on(chosen.factory)
    assert not is_uvloop(loop)
    assert describe(loop) == "asyncio"


@pytest.mark.parametrize("asked", ["auto", "uvloop"])
def test_auto_and_uvloop_run_uvloop_when_it_is_installed(asked: str) -> None:
    chosen = choose(asked)
    assert chosen.name == "uvloop"
    loop = _run_on(chosen.factory)
    assert isinstance(loop, uvloop.Loop) and is_uvloop(loop)
    assert describe(loop) == f"uvloop {uvloop.__version__}"


def test_an_unknown_loop_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--loop: unknown event loop 'trio'") as info:
        choose("trio")
    assert info.value.value == "trio"


def _without_uvloop(tmp_path: Path, code: str, fake_uvloop: str | None = None) -> dict[str, str]:
    """Run ``code`` (which prints JSON) in an interpreter where ``import uvloop`` fails:
    blocked through ``sys.modules`` by a sitecustomize, or ``fake_uvloop`` as its source."""
    if fake_uvloop is None:
        (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['uvloop'] = None\n")
    else:
        (tmp_path / "uvloop").mkdir()
        (tmp_path / "uvloop" / "__init__.py").write_text(fake_uvloop)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


CHOOSE_ALL = """
import json
from hybrid.eventloop import check
out = {}
for asked in ("auto", "asyncio", "uvloop"):
    try:
        out[asked] = check(asked, {"loop": "settings.HYBRID['loop']"}).name
    except Exception as exc:
        out[asked] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_without_uvloop_auto_falls_back_and_uvloop_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    out = _without_uvloop(tmp_path, CHOOSE_ALL)
    assert out["auto"] == out["asyncio"] == "asyncio"
    assert out["uvloop"] == (
        "ConfigError: settings.HYBRID['loop']: uvloop is not installed: "
        f"{UVLOOP_INSTALL} (or use --loop asyncio)"
    )


def test_a_broken_uvloop_is_an_error_even_with_auto(tmp_path: Path) -> None:
    out = _without_uvloop(tmp_path, CHOOSE_ALL, "raise ImportError('undefined symbol: uv_x')\n")
    assert out["asyncio"] == "asyncio"
    for asked in ("auto", "uvloop"):
        assert out[asked].startswith(
            "ConfigError: settings.HYBRID['loop']: uvloop is installed but cannot be imported "
            "(ImportError: undefined symbol: uv_x"
        )
        assert out[asked].endswith(f"reinstall it with {UVLOOP_INSTALL}, or use --loop asyncio")


def test_check_names_the_flag_by_default() -> None:
    assert check("uvloop").name == "uvloop"
    with pytest.raises(HybridError, match="^--loop: unknown"):
        check("nope", {})
