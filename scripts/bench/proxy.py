"""nginx in front of a stack, with the config ``hybrid nginx`` generates: rendered by
hybrid's own renderer (``hybrid.nginx.render_config``) with the upstream pointed at the
stack's port(s), one for a peer (its N workers share it) and one per process for hybrid.
Every stack behind nginx gets the same text but for those ports. nginx's own CPU time (its
workers', from /proc) is read before and after each run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .harness import cpu_seconds, descendants, free_port, stop_process, wait_ready


def render(ports: list[int], listen_port: int, prefix: str | Path) -> str:
    """What ``hybrid nginx --ports P1,P2 --listen 127.0.0.1:LISTEN --prefix PREFIX``
    prints (hybrid's defaults for everything else)."""
    from hybrid.config import Config
    from hybrid.nginx.render import render_config

    config = Config(ports=tuple(ports), host="127.0.0.1")
    return render_config(config, prefix=prefix, listen_host="127.0.0.1", listen_port=listen_port)


def nginx_binary() -> str:
    from hybrid.nginx.binary import find_nginx

    return os.environ.get("NGINX_BIN") or find_nginx()


class Proxy:
    """nginx (own session, foreground) on a free port in front of ``ports``."""

    def __init__(self, ports: list[int], workdir: str, tag: str) -> None:
        self.port = free_port()
        self.prefix = Path(workdir) / f"nginx-{tag}"
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(render(ports, self.port, self.prefix))
        self.logpath = self.prefix / "stderr.log"
        self.logfile = open(self.logpath, "wb")  # noqa: SIM115
        argv = [nginx_binary(), "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"]
        self.proc = subprocess.Popen(
            argv,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ready(self, url: str) -> str | None:
        """None once ``url`` through nginx answers 200, else why not."""
        try:
            wait_ready(self.proc, url, timeout=20)
            return None
        except RuntimeError as error:
            self.logfile.flush()
            tail = self.logpath.read_text(errors="replace").strip().splitlines()[-3:]
            errors = (self.prefix / "error.log").read_text(errors="replace").splitlines()[-3:]
            return f"nginx: {error} ({' | '.join(tail + errors)})"

    def cpu(self) -> dict[int, float]:
        """CPU seconds of each nginx worker (the master only accepts and reloads)."""
        return cpu_seconds(descendants(self.proc.pid))

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, grace=3)
        self.logfile.close()


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes in both."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)
