"""What the run needs installed (installed here when it lacks: wrk, and the bench virtualenv
of the peers), and the machine it runs on."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .harness import log, raise_nofile
from .paths import BENCH_PYTHON, BENCH_VENV, REPO
from .stacks import CORES
from .targets import IDLE_CONNECTIONS

CONSTRAINTS = REPO / "scripts" / "constraints.txt"

# What the bench virtualenv holds: the peers, the plot and the profiler (never the project's
# .venv, which holds only the pins of scripts/constraints.txt). Django and PyMySQL are
# installed at the project's pinned versions, so that every stack runs the same Django.
PACKAGES = (
    "Django",
    "PyMySQL",
    "gunicorn",
    "gevent",
    "uvicorn",
    "uvloop",  # uvicorn[standard]: its usual deployment
    "httptools",
    "matplotlib",
    "py-spy",
)
# The module (or, for py-spy, the command) that shows each one is there.
PROBES = {"PyMySQL": "pymysql", "py-spy": "bin/py-spy"}


def ensure_bench_venv() -> None:
    """Make the bench virtualenv (``paths.BENCH_VENV``) and install what it lacks."""
    if not BENCH_PYTHON.exists():
        log(f"creating the bench virtualenv {BENCH_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:]"
    probe += " if importlib.util.find_spec(m) is None))"
    modules = {
        p: PROBES.get(p, p.lower()) for p in PACKAGES if not PROBES.get(p, "").startswith("bin/")
    }
    done = subprocess.run(
        [str(BENCH_PYTHON), "-c", probe, *modules.values()],
        capture_output=True,
        text=True,
        check=True,
    )
    absent = set(done.stdout.split())
    missing = [p for p, m in modules.items() if m in absent]
    missing += [
        p for p, m in PROBES.items() if m.startswith("bin/") and not (BENCH_VENV / m).exists()
    ]
    if missing:
        log(f"installing {' '.join(missing)} into {BENCH_VENV} (pip)")
        # Without PYTHONPATH: the repository's hybrid.egg-info would look installed there.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run(
            [str(BENCH_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            + ["-c", str(CONSTRAINTS), *missing],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"pip install into {BENCH_VENV} failed:\n{done.stdout}{done.stderr}")


def ensure_tools() -> None:
    """wrk (apt-get), the bench virtualenv, and open-files room for 10,000 idle
    connections."""
    if shutil.which("wrk") is None:
        log("installing wrk (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    ensure_bench_venv()
    # 10,000 idle connections in the client and in the worker (which inherits the limit:
    # hybrid does not raise its own), 1,000 on each side of the io-1000 run.
    raise_nofile(2 * IDLE_CONNECTIONS + 4096)


def bench_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution in the bench virtualenv ("-" if absent)."""
    script = (
        "import sys\nfrom importlib.metadata import version\nfor p in sys.argv[1:]:\n"
        "    try: print(p, version(p))\n    except Exception: print(p, '-')\n"
    )
    done = subprocess.run(
        [str(BENCH_PYTHON), "-c", script, *names], capture_output=True, text=True, timeout=60
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess when that has none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_text() -> str:
    """The machine in one line, for a report's heading."""
    release, python = platform.release(), platform.python_version()
    return f"{os.cpu_count()} cores ({cpu_name()}), Linux {release}, Python {python}"


def machine() -> dict[str, Any]:
    cpu = cpu_name()
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in ("Django", "tornado", "PyMySQL", "aiomysql"):
        try:
            versions[package.lower()] = version(package)
        except PackageNotFoundError:
            versions[package.lower()] = None
    # The peers' versions, from the bench virtualenv.
    try:
        found = bench_versions(("gunicorn", "gevent", "uvicorn", "Django", "PyMySQL"))
    except (OSError, subprocess.TimeoutExpired):
        found = {}
    for name, release in found.items():
        key = name if name in ("gunicorn", "gevent", "uvicorn") else f"{name.lower()} (peers)"
        versions[key] = None if release == "-" else release
    return {
        "nproc": CORES,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }
