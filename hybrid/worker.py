"""One worker: one port, one IOLoop, one Django project. Runs only in a forked child.

The worker tells its master how it is doing over a pipe, one line per message:
``ready`` once it serves, ``boot-error <reason>`` when the project cannot load (and then
exits with :data:`BOOT_ERROR_EXIT`). It stops on SIGTERM (or SIGQUIT): stop accepting,
let in-flight requests finish up to ``graceful_timeout``, close the rest, exit 0. It ignores
SIGINT, because a Ctrl-C in a terminal reaches the whole process group and the master
decides, and it stops by itself if the master goes away.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import time

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from hybrid.config import Config
from hybrid.errors import HybridError, describe_exception
from hybrid.log import gen_log
from hybrid.web import make_app

__all__ = ["BOOT_ERROR_EXIT", "Worker"]

#: Exit status of a worker whose project failed to load (gunicorn uses 3 as well).
BOOT_ERROR_EXIT = 3

#: How often a worker checks that its master is still alive.
PARENT_CHECK_INTERVAL = 1.0


class Worker:
    """The serving half of a forked child. ``run()`` returns the process's exit status."""

    def __init__(
        self,
        config: Config,
        port: int,
        sockets: list[socket.socket],
        notify_fd: int,
        master_pid: int,
    ) -> None:
        self.config = config
        self.port = port
        self.sockets = sockets
        self.notify_fd = notify_fd
        self.master_pid = master_pid

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return asyncio.run(self._main())

    def notify(self, message: str) -> None:
        """Send one line to the master; never raises (the master may be gone)."""
        data = (message.replace("\n", " ") + "\n").encode("utf-8", "replace")
        try:
            os.write(self.notify_fd, data[: select.PIPE_BUF])
        except OSError:
            pass

    async def _main(self) -> int:
        try:
            app = make_app(self.config, self.port)
        except HybridError as exc:
            self.notify(f"boot-error {exc}")
            return BOOT_ERROR_EXIT
        except Exception as exc:  # a bug of ours or the project's: still one line
            self.notify(f"boot-error {describe_exception(exc)}")
            return BOOT_ERROR_EXIT
        server = HTTPServer(
            app,
            xheaders=self.config.xheaders,
            max_body_size=self.config.max_body_size,
        )
        server.add_sockets(self.sockets)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(signum, stopping.set)

        def check_parent() -> None:
            if os.getppid() != self.master_pid:
                gen_log.warning("master %d is gone; worker %d stops", self.master_pid, os.getpid())
                stopping.set()

        parent_check = PeriodicCallback(check_parent, PARENT_CHECK_INTERVAL * 1000)
        parent_check.start()
        self.notify("ready")
        await stopping.wait()
        parent_check.stop()
        await self._drain(server, app)
        return 0

    async def _drain(self, server: HTTPServer, app: object) -> None:
        """Stop accepting, wait for in-flight requests up to the graceful timeout, close."""
        server.stop()
        deadline = time.monotonic() + self.config.graceful_timeout
        while getattr(app, "inflight", 0) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = getattr(app, "inflight", 0)
        if left:
            gen_log.warning(
                "worker %d on port %d: %d request(s) still running after the graceful "
                "timeout of %.0fs; closing them",
                os.getpid(),
                self.port,
                left,
                self.config.graceful_timeout,
            )
        await server.close_all_connections()
