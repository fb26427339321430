"""wrk: its command line, the figures in what it prints, a Lua script that spreads its threads
over several ports, and a run that samples the server's RSS meanwhile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from typing import Any

from .harness import rss_sample

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
QUANTILES = ("50", "75", "90", "99")


def binary() -> str:
    """``$WRK``, else wrk on PATH."""
    return os.environ.get("WRK") or shutil.which("wrk") or "wrk"


def to_ms(text: str) -> float:
    """wrk's ``812.34us``, ``1.20ms``, ``2.00s`` or ``1.00m`` in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def command(
    url: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    latency: bool = True,
    timeout: str | None = None,
    wrk: str = "wrk",
    script: str | None = None,
) -> list[str]:
    """``wrk -tT -cC -dSs [--latency] [--timeout X] [-s SCRIPT] URL``."""
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s"]
    if latency:
        argv.append("--latency")
    if timeout:
        argv += ["--timeout", timeout]
    if script:
        argv += ["-s", script]
    return [*argv, url]


def threads_for(ports: int, wanted: int = 2) -> int:
    """wrk's thread count for ``ports`` ports: the multiple of ``ports`` nearest above
    ``wanted``, so that each port gets as many threads (and connections) as the next."""
    return ports * -(-wanted // ports)


def spread_script(ports: list[int], host: str = "127.0.0.1") -> str:
    """A wrk Lua script whose ``setup(thread)`` points thread i at ``ports[i % len(ports)]``
    (wrk calls it once per thread, in order, before any connects): with a thread count that
    is a multiple of the ports, each port gets the same share of the connections."""
    listed = ", ".join(str(int(p)) for p in ports)
    return (
        "-- Spreads wrk's threads over the ports, one port per thread in turn.\n"
        f"local ports = {{{listed}}}\n"
        "local created = 0\n"
        "function setup(thread)\n"
        "  local port = ports[created % #ports + 1]\n"
        "  created = created + 1\n"
        f'  thread.addr = wrk.lookup("{host}", tostring(port))[1]\n'
        "end\n"
    )


def parse(out: str) -> dict[str, Any]:
    """req/s, requests, the latency quantiles (ms; None when none completed), non-2xx and
    socket errors from what ``wrk --latency`` printed."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec: {out[-300:]!r}")
    latency = dict(re.findall(r"^\s+(50|75|90|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    total = re.search(r"(\d+) requests in", out)
    requests = int(total[1]) if total else 0
    return {
        "rps": float(rps[1]),
        "requests": requests,
        # wrk prints latencies of completed requests only: none completed, none to show.
        **{f"p{q}_ms": to_ms(latency[q]) if q in latency and requests else None for q in QUANTILES},
        "non2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": sum(socket_errors.values()),
        "socket_error_kinds": socket_errors,
        "errors": (int(non2xx[1]) if non2xx else 0) + sum(socket_errors.values()),
    }


def run_sampled(
    url: str,
    connections: int,
    seconds: int,
    root: int,
    threads: int = 2,
    script: str | None = None,
) -> dict[str, Any]:
    """``wrk -tT -cC -dSs --latency --timeout 5s [-s SCRIPT]``: its figures, the peak RSS of
    the tree under ``root`` (sampled every 0.5 s) and wrk's output."""
    argv = command(
        url, connections, seconds, threads=min(threads, connections), timeout="5s", script=script
    )
    peak = {"total": 0.0, "largest": 0.0, "processes": 0}
    done = threading.Event()

    def take() -> None:
        total, largest, count = rss_sample(root)
        peak["total"] = max(peak["total"], total)
        peak["largest"] = max(peak["largest"], largest)
        peak["processes"] = max(peak["processes"], count)

    def sample() -> None:
        while not done.wait(0.5):
            take()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        done.set()
        sampler.join()
    if os.environ.get("BENCH_VERBOSE"):
        print(out, flush=True)
    take()
    return {
        **parse(out),
        "rss_mb": round(peak["total"], 1),
        "rss_process_mb": round(peak["largest"], 1),
        "processes_seen": peak["processes"],
        "wrk": out,
    }
