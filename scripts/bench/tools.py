"""What the run needs installed (installed here when it lacks: wrk, and the bench virtualenv
of the peers), and the machine it runs on."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
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


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in ("Django", "tornado", "PyMySQL", "aiomysql"):
        try:
            versions[package.lower()] = version(package)
        except PackageNotFoundError:
            versions[package.lower()] = None
    # The peers' versions, from the bench virtualenv.
    script = (
        "import sys\nfrom importlib.metadata import version\nfor p in sys.argv[1:]:\n"
        "    try: print(p.lower(), version(p))\n    except Exception: print(p.lower(), '-')\n"
    )
    peers = ("gunicorn", "gevent", "uvicorn", "Django", "PyMySQL")
    try:
        done = subprocess.run(
            [str(BENCH_PYTHON), "-c", script, *peers], capture_output=True, text=True, timeout=30
        )
        for line in done.stdout.splitlines():
            name, _, found = line.partition(" ")
            key = name if name in ("gunicorn", "gevent", "uvicorn") else f"{name} (peers)"
            versions[key] = None if found == "-" else found
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "nproc": CORES,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }
