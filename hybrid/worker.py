"""One worker: one port, one IOLoop, one Django project. Runs only in a forked child.

The worker tells its master how it is doing over a pipe, one line per message
(:mod:`hybrid.protocol`): ready, a boot error, heartbeats with the requests served, a wish
to be recycled, and, from its watchdog thread, the request that blocks its loop
(:mod:`hybrid.watchdog`).

It stops on SIGTERM (or SIGQUIT): stop accepting, close idle keep-alive connections, let
in-flight requests finish up to ``graceful_timeout``, close the rest, exit 0. It ignores
SIGINT, because a Ctrl-C in a terminal reaches the whole process group and the master
decides, and it stops by itself if the master goes away.

Its event loop is made here, after the fork, with the factory ``--loop`` names
(:mod:`hybrid.eventloop`: uvloop's or asyncio's); the master never has one.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import socket
import time
from collections.abc import Callable

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.web import Application

from hybrid.config import Config
from hybrid.db import close_native_pools
from hybrid.db import setup as setup_native_db
from hybrid.errors import HybridError, describe_exception
from hybrid.eventloop import choose as choose_loop
from hybrid.eventloop import describe as describe_loop
from hybrid.groups.layer import Layer as GroupsLayer
from hybrid.groups.layer import install as install_groups
from hybrid.groups.layer import make_layer as make_groups_layer
from hybrid.lanes import LanePool, close_lane_pools, install_lane_pool
from hybrid.log import gen_log
from hybrid.metrics import MetricsHandler, WorkerMetrics
from hybrid.process import command_timeouts, running_commands, terminate_all
from hybrid.process.gate import Gate, install_command_gate
from hybrid.proctitle import set_title, worker_title
from hybrid.protocol import (
    BootError,
    Heartbeat,
    Message,
    Ready,
    Recycle,
    encode,
    heartbeat_interval,
)
from hybrid.tls import worker_context
from hybrid.watchdog import Watchdog
from hybrid.web import HEAD_READ_FACTOR, HybridApplication, make_app

__all__ = ["BOOT_ERROR_EXIT", "Worker", "heartbeat_interval"]

#: Exit status of a worker whose project failed to load (gunicorn uses 3 as well).
BOOT_ERROR_EXIT = 3

#: How often a worker checks that its master is still alive.
PARENT_CHECK_INTERVAL = 1.0


def tune_gc(threshold: int) -> None:
    """Make the cyclic garbage collector cheap for a loop serving many requests at once.

    ``gc.freeze()`` moves everything loaded at boot (Django, the project: tens of
    thousands of objects) out of the collector's sight, so that full collections no
    longer walk it; and the young generation is collected every ``threshold``
    allocations instead of Python's 700. With hundreds of requests in flight, most young
    objects are alive at any collection: frequent collections walk them again and again
    and promote them, which makes the old generations' collections bigger. Requests
    themselves leave no cycles behind (``untangle_request``, ``_TrackedRequest``), so
    reference counting frees them and the collector has little to find. Measured on the
    benchmark project (one worker, 64 connections, with the cycles gone too): hello 1,749
    to 2,595 req/s, p99 from 144 to 38 ms.
    ``threshold`` 0 leaves both alone.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


class Worker:
    """The serving half of a forked child. ``run()`` returns the process's exit status."""

    def __init__(
        self,
        config: Config,
        port: int,
        sockets: list[socket.socket],
        notify_fd: int,
        master_pid: int,
        *,
        metrics_sockets: list[socket.socket] | None = None,
    ) -> None:
        self.config = config
        self.metrics_sockets = metrics_sockets or []
        self.port = port
        self.sockets = sockets
        self.notify_fd = notify_fd
        self.master_pid = master_pid
        self.max_requests = 0
        if config.max_requests:
            self.max_requests = config.max_requests + random.randint(0, config.max_requests_jitter)
        self._recycle_asked = False

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # SIGUSR1 reopens the access log (logrotate): never the default, which would kill.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        set_title(worker_title(self.config, self.port))
        os.set_blocking(self.notify_fd, False)  # a busy master must never block us
        try:
            # The master checked this before forking; a Config built by hand was not.
            loop = choose_loop(self.config.loop, option=self.config.sources.get("loop", "--loop"))
        except HybridError as exc:
            self.notify(BootError(str(exc)))
            return BOOT_ERROR_EXIT
        with asyncio.Runner(loop_factory=loop.factory) as runner:
            return runner.run(self._main())

    def notify(self, message: Message) -> None:
        """Send one line to the master; never raises nor blocks (the master may be gone)."""
        try:
            os.write(self.notify_fd, encode(message))
        except OSError:
            pass

    async def _main(self) -> int:
        try:
            app = make_app(self.config, self.port)
        except HybridError as exc:
            self.notify(BootError(str(exc)))
            return BOOT_ERROR_EXIT
        except Exception as exc:  # a bug of ours or the project's: still one line
            self.notify(BootError(describe_exception(exc)))
            return BOOT_ERROR_EXIT
        try:
            app.access.open()  # --access-log FILE: opened here, after the fork
        except OSError as exc:
            self.notify(BootError(f"--access-log {self.config.access_log}: {exc}"))
            return BOOT_ERROR_EXIT
        setup_native_db(self.config)  # patches the async ORM; pools open on first use
        # This loop's database threads and command slots, sized by the Config; handlers
        # find them through the running loop (hybrid.lanes, hybrid.process.gate).
        lanes = install_lane_pool(LanePool(self.config.db_thread_count))
        install_command_gate(Gate(self.config.max_commands))
        # Groups: with Redis, the subscriber connects in the background (an unreachable
        # Redis is logged and retried; the worker serves meanwhile).
        try:
            groups = install_groups(make_groups_layer(self.config))
        except ImportError as exc:  # the master checks this; a Config built by hand not
            self.notify(BootError(f"--groups {self.config.groups}: {exc}"))
            return BOOT_ERROR_EXIT
        await groups.start()
        try:
            # --certfile without --nginx: the worker serves TLS itself (the master checks
            # the files first; a Config built by hand is reported here, in one line)
            ssl_options = worker_context(self.config)
        except HybridError as exc:
            self.notify(BootError(str(exc)))
            return BOOT_ERROR_EXIT
        tune_gc(self.config.gc_threshold)
        server = HTTPServer(
            app,
            max_body_size=self.config.max_body_size,
            # heads up to 4x are read so that one over the limit gets a 431 (hybrid.web)
            max_header_size=self.config.max_header_size * HEAD_READ_FACTOR,
            idle_connection_timeout=self.config.keepalive_timeout,
            body_timeout=self.config.body_timeout,
            ssl_options=ssl_options,
        )
        server.add_sockets(self.sockets)
        lag_probe = self._serve_metrics(app, lanes, groups)
        app.on_request_done = self._check_max_requests(app)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(signum, stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, app.access.reopen)

        def check_parent() -> None:
            if os.getppid() != self.master_pid:
                gen_log.warning("master %d is gone; worker %d stops", self.master_pid, os.getpid())
                stopping.set()

        interval = heartbeat_interval(self.config.timeout)
        watchdog = Watchdog(interval, self.notify)

        titled = -1

        def heartbeat() -> None:
            nonlocal titled
            watchdog.beat()
            self.notify(Heartbeat(app.served))
            if app.served != titled:
                titled = app.served
                set_title(worker_title(self.config, self.port, app.served))

        periodic = [
            PeriodicCallback(check_parent, PARENT_CHECK_INTERVAL * 1000),
            PeriodicCallback(heartbeat, interval * 1000),
        ]
        for callback in periodic:
            callback.start()
        watchdog.start()
        self.notify(Ready(describe_loop(loop)))
        await stopping.wait()
        watchdog.stop()
        for callback in periodic:
            callback.stop()
        if lag_probe is not None:
            lag_probe.cancel()
        await self._drain(server, app)
        await groups.close()
        app.access.close()
        return 0

    def _serve_metrics(
        self, app: HybridApplication, lanes: LanePool, groups: GroupsLayer
    ) -> asyncio.Task[None] | None:
        """With ``--metrics-port``: serve ``/metrics`` on this worker's private listener
        and start the event-loop lag probe. Returns the probe's task."""
        if not self.metrics_sockets:
            return None
        metrics = WorkerMetrics(
            inflight=lambda: app.inflight,
            commands_running=lambda: len(running_commands()),
            command_timeouts=command_timeouts,
            db_in_use=lambda: lanes.busy,
            db_waiting=lambda: lanes.waiting,
            groups=groups,
        )
        app.metrics = metrics
        server = HTTPServer(Application([(r"/metrics", MetricsHandler, {"metrics": metrics})]))
        server.add_sockets(self.metrics_sockets)
        return asyncio.ensure_future(metrics.probe_loop_lag())

    def _check_max_requests(self, app: HybridApplication) -> Callable[[], None]:
        def check() -> None:
            if self.max_requests and app.served >= self.max_requests and not self._recycle_asked:
                self._recycle_asked = True
                self.notify(Recycle(f"served {app.served} requests (--max-requests)"))

        return check

    async def _drain(self, server: HTTPServer, app: HybridApplication) -> None:
        """Stop accepting, wait for in-flight requests up to the graceful timeout, close."""
        server.stop()
        app.start_draining()
        deadline = time.monotonic() + self.config.graceful_timeout
        quiet = min(2.0, self.config.graceful_timeout / 2)
        while not app.drained(quiet=quiet) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if app.inflight:
            gen_log.warning(
                "worker %d on port %d: %d request(s) still running after the graceful "
                "timeout of %.0fs; closing them",
                os.getpid(),
                self.port,
                app.inflight,
                self.config.graceful_timeout,
            )
        # Commands still running belong to requests about to be cut off, or to
        # fire-and-forget Subprocess callbacks: give them what is left of the graceful
        # timeout, then kill their process groups, so no child outlives the worker.
        await terminate_all(timeout=max(0.0, deadline - time.monotonic()), kill_grace=1.0)
        await server.close_all_connections()
        await close_lane_pools()
        await close_native_pools()
