"""What the run needs installed (installed here when it lacks), and the machine it runs on."""

from __future__ import annotations

import importlib.util
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import log, raise_nofile
from .stacks import CORES
from .targets import IDLE_CONNECTIONS

# pip package -> the module it installs
PACKAGES = (
    ("gunicorn", "gunicorn"),
    ("gevent", "gevent"),
    ("uvicorn", "uvicorn"),
    ("uvloop", "uvloop"),  # uvicorn[standard]: its usual deployment
    ("httptools", "httptools"),
    ("matplotlib", "matplotlib"),
    ("aiomysql", "aiomysql"),
    ("PyMySQL", "pymysql"),
)


def ensure_tools() -> None:
    """wrk (apt-get) and the peers' packages (pip, into this interpreter), and open-files
    room for 10,000 idle connections."""
    if shutil.which("wrk") is None:
        log("installing wrk (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    missing = [package for package, module in PACKAGES if importlib.util.find_spec(module) is None]
    if missing:
        log(f"installing {' '.join(missing)} (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
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
    for package in ("Django", "tornado", "gunicorn", "gevent", "uvicorn", "PyMySQL", "aiomysql"):
        try:
            versions[package.lower()] = version(package)
        except PackageNotFoundError:
            versions[package.lower()] = None
    return {
        "nproc": CORES,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }
