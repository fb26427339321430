"""The process harness: free ports, a server started in its own session and stopped with
everything it started, readiness, the process tree under it, its RSS and CPU time."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def get(url: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body); an HTTP error status is an answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> None:
    """Return once ``url`` answers 200; RuntimeError when ``proc`` exits first or time runs
    out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving")
        try:
            if get(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no 200 from {url} within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5) -> None:
    """SIGTERM to the session ``proc`` leads, ``grace`` seconds, then SIGKILL to whatever is
    left of it (workers, nginx, commands)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# --------------------------------------------------------------------------- /proc


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def tree_pids(root: int) -> list[int]:
    """``root`` and every process under it, ``root`` first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def descendants(root: int) -> dict[int, str]:
    """Every process under ``root`` (pid -> its command name)."""
    names = {}
    for pid in tree_pids(root)[1:]:
        try:
            names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
    return names


def cpu_seconds(pids: dict[int, str]) -> dict[int, float]:
    """User + system CPU seconds of each process that still lives."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for pid in pids:
        fields = stat_fields(pid)
        if fields is None:
            continue
        result[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return result


def pid_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_sample(root: int) -> tuple[float, float, int]:
    """(total MB, largest process MB, processes) of the tree under ``root``; commands that
    a worker runs (``true``, ``sleep``) are counted in the total only while they live."""
    sizes = [pid_rss_mb(pid) for pid in tree_pids(root)]
    sizes = [s for s in sizes if s > 0]
    return sum(sizes), max(sizes, default=0.0), len(sizes)


# --------------------------------------------------------------------------- servers


@dataclass
class Stack:
    """A server to start: its command line, the port(s) and URL prefix to drive, its
    environment on top of the run's, and the folder it starts in."""

    name: str
    processes: int  # server worker processes
    argv: list[str]
    port: int  # the port checks and single-port drivers use (the first of ``ports``)
    prefix: str  # URL prefix of the endpoints
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    django: bool = True  # runs the benchmark project (its hello must show the middleware)
    cwd: Path | None = None
    # Every port it serves on: one (N workers behind it) or one per worker process (hybrid).
    ports: list[int] = field(default_factory=list)
    db: str = ""  # its database concurrency per process, in words

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = [self.port]


class Server:
    """A stack's server process (own session), its log, stopped on exit."""

    def __init__(self, stack: Stack, env: dict[str, str], workdir: str, tag: str = "") -> None:
        self.stack = stack
        self.logpath = os.path.join(workdir, f"{stack.name}-{stack.processes}{tag}.log")
        self.logfile = open(self.logpath, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            stack.argv,
            env={**env, **stack.env},
            cwd=stack.cwd,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{stack.port}{stack.prefix}"

    def ready(self, path: str = "hello") -> str | None:
        """None once ``path`` answers 200, else why not (with the log's tail)."""
        try:
            wait_ready(self.proc, self.base + path)
            return None
        except RuntimeError as error:
            tail = self.log_tail(3)
            return f"{error}" + (f" ({' | '.join(tail)})" if tail else "")

    def log_tail(self, lines: int = 12) -> list[str]:
        """The last lines of the server's output (kept in the JSON when a run had errors)."""
        self.logfile.flush()
        return Path(self.logpath).read_text(errors="replace").strip().splitlines()[-lines:]

    def worker_pid(self) -> int:
        """The serving process: the largest child of the root, or the root itself."""
        pids = tree_pids(self.proc.pid)[1:]
        return max(pids, key=pid_rss_mb) if pids else self.proc.pid

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, grace: float = 5) -> None:
        stop_process(self.proc, grace)
        self.logfile.close()
