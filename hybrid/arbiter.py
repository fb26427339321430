"""The master process: bind every port, fork one worker per port, keep them alive, stop.

Shaped like gunicorn's arbiter: signal handlers only queue the signal and wake the main
loop through a pipe; the loop handles queued signals, reads what workers report, reaps the
dead and starts a worker for every port that has none. No IOLoop, pool or database
connection ever exists in the master, so nothing unsafe crosses a fork.

What the master does with each signal:

=========  =================================================================
SIGTERM    graceful stop: workers drain for ``graceful_timeout``, then are killed
SIGINT     the same (Ctrl-C); a second SIGINT kills the workers at once
SIGQUIT    the same as SIGINT
SIGCHLD    wakes the loop so a dead worker is reaped and replaced at once
=========  =================================================================
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from hybrid.config import Config
from hybrid.errors import BindError, WorkerBootError, describe_exception
from hybrid.log import gen_log
from hybrid.worker import BOOT_ERROR_EXIT, Worker

__all__ = ["Arbiter", "bind_ports", "describe_exit", "serve"]

#: A worker that dies this many times in a row before it is ready makes the master halt.
MAX_BOOT_FAILURES = 5

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def serve(config: Config) -> int:
    """Run the master for ``config`` in the foreground until it is told to stop.

    Returns the exit status (0 after a clean stop). Raises :class:`BindError` when a port
    cannot be bound (before any worker starts) and :class:`WorkerBootError` when the
    project cannot boot in a worker (after every other worker is stopped).
    """
    return Arbiter(config).run()


def bind_ports(config: Config) -> dict[int, list[socket.socket]]:
    """Bind every port of ``config`` or none: all sockets are closed on the first failure."""
    bound: dict[int, list[socket.socket]] = {}
    try:
        for port in config.ports:
            try:
                bound[port] = _bind(config.host, port)
            except OSError as exc:
                raise BindError(
                    _bind_error_message(exc, config.host, port),
                    host=config.host,
                    port=port,
                    errno=exc.errno,
                ) from None
    except BaseException:
        for sockets in bound.values():
            for sock in sockets:
                sock.close()
        raise
    return bound


def _bind(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Listening, non-blocking sockets for every address ``host`` resolves to.

    Our own instead of ``tornado.netutil.bind_sockets``, which leaves the socket open when
    ``bind()`` fails (a port in use is an expected failure here, reported and survived).
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_error_message(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use: stop the process that holds it "
            "or choose other --ports"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to bind {where}: use a port above 1023 or run as a privileged user"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {where}: {host} is not an address of this machine; check --host"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve --host {host!r} ({exc.strerror}); use an IP address or a known name"
    return f"cannot bind {where}: {exc.strerror or exc}"


def describe_exit(status: int) -> str:
    """``'exited with status 1'`` or ``'was killed by SIGKILL'`` for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


@dataclass
class WorkerProcess:
    """What the master knows of one forked worker."""

    pid: int
    port: int
    notify_fd: int
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    boot_error: str | None = None
    buffer: bytes = b""


class Arbiter:
    """Keeps one worker per port alive. Build one per ``serve()``; call :meth:`run` once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.sockets: dict[int, list[socket.socket]] = {}
        self.workers: dict[int, WorkerProcess] = {}
        self._signal_queue: list[int] = []
        self._wake_r = -1
        self._wake_w = -1
        self._stopping = False
        self._boot_failures: dict[int, int] = {}
        self._old_handlers: dict[int, object] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        self.sockets = bind_ports(self.config)
        try:
            self._install_signals()
            _close_inherited_db_connections()
            gen_log.info(
                "master %d starting %d worker(s) on %s (Ctrl-C to stop)",
                self.pid,
                len(self.config.ports),
                self.config.host,
            )
            for port in self.config.ports:
                self._spawn(port)
            while not self._stopping:
                self._wait(1.0)
                self._handle_signals()
                self._reap()
                if not self._stopping:
                    self._manage_workers()
        finally:
            self._stopping = True
            self._stop_workers()
            self._close()
        gen_log.info("master %d stopped", self.pid)
        return 0

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for signum in (*_STOP_SIGNALS, signal.SIGCHLD):
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only queue and wake: the main loop does the work (gunicorn's rule).
        if signum != signal.SIGCHLD and len(self._signal_queue) < 5:
            self._signal_queue.append(signum)
        try:
            os.write(self._wake_w, b".")
        except OSError:
            pass

    def _close(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        for sockets in self.sockets.values():
            for sock in sockets:
                sock.close()
        self.sockets.clear()

    # -- the main loop's steps -----------------------------------------------------------

    def _wait(self, timeout: float) -> None:
        fds = [self._wake_r, *(w.notify_fd for w in self.workers.values())]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        for worker in list(self.workers.values()):
            if worker.notify_fd in readable:
                self._read_notifications(worker)

    def _handle_signals(self) -> None:
        while self._signal_queue:
            signum = self._signal_queue.pop(0)
            if signum in _STOP_SIGNALS:
                gen_log.info(
                    "master %d got %s: stopping %d worker(s)",
                    self.pid,
                    signal.Signals(signum).name,
                    len(self.workers),
                )
                self._stopping = True

    def _read_notifications(self, worker: WorkerProcess) -> None:
        try:
            while chunk := os.read(worker.notify_fd, 4096):
                worker.buffer += chunk
        except (BlockingIOError, OSError):
            pass
        while b"\n" in worker.buffer:
            line, _, worker.buffer = worker.buffer.partition(b"\n")
            kind, _, text = line.decode("utf-8", "replace").partition(" ")
            if kind == "ready":
                worker.ready = True
                self._boot_failures.pop(worker.port, None)
                gen_log.info(
                    "worker %d serving http://%s:%d",
                    worker.pid,
                    _url_host(self.config.host),
                    worker.port,
                )
            elif kind == "boot-error":
                worker.boot_error = text

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._read_notifications(worker)
            os.close(worker.notify_fd)
            self._on_worker_exit(worker, status)

    def _on_worker_exit(self, worker: WorkerProcess, status: int) -> None:
        how = describe_exit(status)
        if self._stopping:
            gen_log.debug("worker %d on port %d %s", worker.pid, worker.port, how)
            return
        if worker.boot_error is not None or (
            not worker.ready and os.WIFEXITED(status) and os.WEXITSTATUS(status) == BOOT_ERROR_EXIT
        ):
            reason = worker.boot_error or "no reason given"
            raise WorkerBootError(
                f"worker for port {worker.port} failed to boot: {reason}",
                port=worker.port,
                reason=reason,
            )
        if not worker.ready:
            failures = self._boot_failures.get(worker.port, 0) + 1
            self._boot_failures[worker.port] = failures
            if failures >= MAX_BOOT_FAILURES:
                raise WorkerBootError(
                    f"worker for port {worker.port} died {failures} times while booting "
                    f"(last one {how}); giving up",
                    port=worker.port,
                    reason=how,
                )
        gen_log.warning("worker %d on port %d %s; starting a new one", worker.pid, worker.port, how)

    def _manage_workers(self) -> None:
        serving = {w.port for w in self.workers.values()}
        for port in self.config.ports:
            if port not in serving:
                self._spawn(port)

    # -- forking -------------------------------------------------------------------------

    def _spawn(self, port: int) -> WorkerProcess:
        notify_r, notify_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; covered by process tests
            os.close(notify_r)
            self._run_child(port, notify_w)
        os.close(notify_w)
        os.set_blocking(notify_r, False)
        worker = WorkerProcess(pid=pid, port=port, notify_fd=notify_r)
        self.workers[pid] = worker
        return worker

    def _run_child(self, port: int, notify_w: int) -> None:  # pragma: no cover - child
        """Become the worker for ``port``; never returns."""
        code = 1
        try:
            for signum in self._old_handlers:
                signal.signal(signum, signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for other in self.workers.values():
                os.close(other.notify_fd)
            for other_port, sockets in self.sockets.items():
                if other_port != port:
                    for sock in sockets:
                        sock.close()
            worker = Worker(self.config, port, self.sockets[port], notify_w, self.pid)
            code = worker.run()
        except BaseException as exc:
            gen_log.error(
                "worker %d on port %d crashed: %s",
                os.getpid(),
                port,
                describe_exception(exc),
                exc_info=not isinstance(exc, (KeyboardInterrupt, SystemExit)),
            )
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    # -- stopping ------------------------------------------------------------------------

    def _stop_workers(self) -> None:
        """TERM every worker, wait for them to drain, KILL whatever is left, reap all."""
        if not self.workers:
            return
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.graceful_timeout + 1.0
        while self.workers and time.monotonic() < deadline:
            if self._wake_r >= 0:
                self._wait(0.1)
            else:
                time.sleep(0.05)
            if any(s in (signal.SIGINT, signal.SIGQUIT) for s in self._signal_queue):
                gen_log.warning("second interrupt: killing %d worker(s) now", len(self.workers))
                break
            self._signal_queue.clear()
            self._reap()
        for worker in self.workers.values():
            gen_log.warning(
                "worker %d on port %d did not stop in time; killing it", worker.pid, worker.port
            )
            _kill(worker.pid, signal.SIGKILL)
        for worker in list(self.workers.values()):
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass
            os.close(worker.notify_fd)
        self.workers.clear()


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _close_inherited_db_connections() -> None:
    """Close any Django DB connection the master opened (``runhybrid`` runs after
    ``django.setup()``), so no connection is shared by forked workers."""
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()
