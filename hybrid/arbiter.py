"""The master process: bind every port, fork one worker per port, keep them alive, stop.

Shaped like gunicorn's arbiter: signal handlers only queue the signal and wake the main
loop through a pipe; each turn of the loop handles queued signals, reads what workers
report, kills stuck workers, reaps the dead, advances a rolling replacement and starts a
worker for every port that has none. No IOLoop, pool or database connection ever exists
in the master, so nothing unsafe crosses a fork.

=========  ==========================================================================
signal     what the master does
=========  ==========================================================================
SIGTERM    graceful stop: workers drain for ``graceful_timeout``, then are killed
SIGINT     the same (Ctrl-C); a second SIGINT or SIGQUIT kills the workers at once
SIGQUIT    the same as SIGINT
SIGHUP     rolling reload: one port at a time, a new worker (new code) starts and
           serves, then the old one drains; the listening sockets stay open throughout.
           nginx (``--nginx``) re-reads its config and certificates once ``nginx -t``
           accepts them
SIGCHLD    wakes the loop so a dead worker is reaped and replaced at once
SIGUSR1    passed on to every worker, which reopens its ``--access-log`` file, and to
           nginx, which reopens its log files (logrotate)
=========  ==========================================================================

A worker is replaced when it dies, when its IOLoop stops sending heartbeats for
``timeout`` seconds (it is killed first), when it has served ``max_requests`` requests,
and when its memory passes ``max_rss``. A worker that cannot boot stops the master, except
during a reload, which is then abandoned while the old workers keep serving.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from hybrid.config import Config
from hybrid.control import remove_pidfile, write_pidfile, write_status
from hybrid.errors import WorkerBootError, describe_exception
from hybrid.log import gen_log
from hybrid.nginx import NginxError, NginxProcess
from hybrid.proctitle import master_title, set_title
from hybrid.procutil import (
    become_subreaper,
    children_of,
    describe_exit,
    kill_quietly,
    raise_open_files_limit,
    rss_mb,
)
from hybrid.protocol import Blocked, BootError, Heartbeat, Ready, Recycle, parse, split_lines
from hybrid.reloader import Reloader
from hybrid.sidecars import STOP_SLACK, Sidecars
from hybrid.sockets import bind_metrics_ports, bind_ports, close_sockets
from hybrid.worker import BOOT_ERROR_EXIT, Worker

__all__ = ["Arbiter", "serve"]

#: A worker that dies this many times in a row before it is ready makes the master halt.
MAX_BOOT_FAILURES = 5
#: Seconds a stopping worker gets beyond ``graceful_timeout`` (to kill its commands and
#: close) before the master kills it.
DRAIN_SLACK = 5.0
#: How often the master rewrites its status file (``hybrid status``).
STATUS_INTERVAL = 1.0
#: How often the master looks at its workers' memory (``max_rss``).
RSS_CHECK_INTERVAL = 1.0

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_HANDLED_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1)


def serve(config: Config) -> int:
    """Run the master for ``config`` in the foreground until it is told to stop.

    Returns the exit status (0 after a clean stop). Raises :class:`BindError` when a port
    cannot be bound (before any worker starts) and :class:`WorkerBootError` when the
    project cannot boot in a worker (after every other worker is stopped).
    """
    return Arbiter(config).run()


@dataclass
class WorkerProcess:
    """What the master knows of one forked worker."""

    pid: int
    port: int
    notify_fd: int
    started_at: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)
    ready: bool = False
    boot_error: str | None = None
    #: Set once the worker was told to stop: it drains and is no longer counted.
    retiring_since: float | None = None
    buffer: bytes = b""
    #: Requests served, as of the last heartbeat; wall-clock start, for ``hybrid status``.
    served: int = 0
    started_wall: float = field(default_factory=time.time)
    #: The event loop it runs on, as its ``ready`` message said (``uvloop 0.23.0``).
    loop: str = ""
    #: What its watchdog said blocks its loop, and when that came (cleared by a heartbeat).
    blocked: Blocked | None = None
    blocked_at: float = 0.0

    @property
    def state(self) -> str:
        if self.retiring_since is not None:
            return "draining"
        return "serving" if self.ready else "booting"


class Arbiter:
    """Keeps one worker per port alive. Build one per ``serve()``; call :meth:`run` once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.sockets: dict[int, list[socket.socket]] = {}
        self.metrics_sockets: dict[int, list[socket.socket]] = {}
        self.workers: dict[int, WorkerProcess] = {}
        self.restarts: dict[int, int] = {}
        self.started_wall = time.time()
        self._next_status_write = 0.0
        self._signal_queue: list[int] = []
        self._wake_r = -1
        self._wake_w = -1
        self._stopping = False
        self._boot_failures: dict[int, int] = {}
        self._old_handlers: dict[int, object] = {}
        #: Ports waiting for a rolling replacement, and the one being replaced now.
        self._replace_queue: list[int] = []
        self._replacing: tuple[int, WorkerProcess] | None = None
        #: Reloads asked for so far, and why the latest one was abandoned (for
        #: ``hybrid reload --wait``, through the status file).
        self._reloads = 0
        self._reload_abandoned: str | None = None
        self._next_rss_check = 0.0
        #: The supervised nginx (``--nginx PORT``), started once every port serves.
        self.nginx: NginxProcess | None = None
        #: Celery workers and beat (``--celery``, ``--celery-beat``).
        self.sidecars = Sidecars(config)
        #: The source watcher (``--reload``), polled once per turn of the loop.
        self.reloader: Reloader | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        if self.config.nginx is not None:
            self._new_nginx().preflight()  # NginxError before any port or worker
        else:
            for name in ("nginx_host", "nginx_access_log"):
                if (value := getattr(self.config, name)) is not None:
                    gen_log.warning(
                        "%s %s has no effect without --nginx PORT",
                        self.config.sources.get(name, name),
                        value,
                    )
        self.sockets = bind_ports(self.config)
        try:
            self.metrics_sockets = bind_metrics_ports(self.config)
        except BaseException:
            close_sockets(self.sockets)
            raise
        try:
            self._install_signals()
            become_subreaper()
            raise_open_files_limit()
            _close_inherited_db_connections()
            self._write_pidfile()
            set_title(master_title(self.config))
            self._start_reloader()
            gen_log.info(
                "master %d starting %d worker(s) on %s (Ctrl-C to stop)",
                self.pid,
                len(self.config.ports),
                self.config.host,
            )
            for port in self.config.ports:
                self._spawn(port)
            while not self._stopping:
                self._wait(0.25)
                self._handle_signals()
                if self._stopping:
                    break
                self._check_sources()
                self._murder_stuck_workers()
                self._reap()
                self._check_memory()
                self._advance_replacement()
                self._manage_workers()
                self._manage_nginx()
                self.sidecars.manage()
                self.sidecars.kill_overdue()
                self._write_status()
        finally:
            self._stopping = True
            if self.nginx is not None and self.nginx.pid is not None:
                self.nginx.begin_stop()  # stop accepting first; in-flight requests finish
            self.sidecars.begin_stop()  # Celery's warm shutdown, alongside the drain
            self._stop_workers()
            self._stop_sidecars()
            self._stop_nginx()
            self._kill_orphans()
            self._close()
        gen_log.info("master %d stopped", self.pid)
        return 0

    def _start_reloader(self) -> None:
        if not self.config.reload:
            return
        gen_log.warning("--reload is for development: do not use it in production")
        if "django.apps" in sys.modules and _apps_ready():
            gen_log.warning(
                "--reload has no effect under runhybrid: Django was set up before the "
                "workers fork, so they keep the code loaded at start; use hybrid serve --reload"
            )
            return
        self.reloader = Reloader.for_config(self.config)
        gen_log.info(
            "watching %s for changes (%s)",
            ", ".join(map(str, self.reloader.roots)),
            self.reloader.backend,
        )

    def _check_sources(self) -> None:
        """``--reload``: a rolling reload once a burst of saves has settled."""
        changed = self.reloader.changed() if self.reloader is not None else None
        if changed:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            gen_log.info("%s changed%s", changed[0], more)
            self.reload()

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for signum in _HANDLED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only queue and wake: the main loop does the work (gunicorn's rule).
        if signum != signal.SIGCHLD and len(self._signal_queue) < 5:
            self._signal_queue.append(signum)
        try:
            os.write(self._wake_w, b".")
        except OSError:
            pass

    def _write_pidfile(self) -> None:
        if self.config.pidfile:
            write_pidfile(self.config.pidfile, self.pid)

    def status(self) -> dict[str, object]:
        """What ``hybrid status`` shows: the master, nginx and every worker."""
        workers = sorted(self.workers.values(), key=lambda w: (w.port, w.started_at))
        return {
            "master": self.pid,
            "started": self.started_wall,
            "host": self.config.host,
            "reload": {"count": self._reloads, "abandoned": self._reload_abandoned},
            "nginx": (
                {"pid": self.nginx.pid, "port": self.nginx.listen_port}
                if self.nginx is not None and self.nginx.pid is not None
                else None
            ),
            "celery": self.sidecars.status(),
            "workers": [
                {
                    "port": w.port,
                    "pid": w.pid,
                    "state": w.state,
                    "started": w.started_wall,
                    "requests": w.served,
                    "rss_mb": round(rss, 1) if (rss := rss_mb(w.pid)) is not None else None,
                    "restarts": self.restarts.get(w.port, 0),
                    "metrics": self._metrics_url(w.port),
                    "loop": w.loop or None,
                }
                for w in workers
            ],
        }

    def _metrics_url(self, port: int) -> str | None:
        sockets = self.metrics_sockets.get(port)
        if not sockets:
            return None
        return f"http://127.0.0.1:{sockets[0].getsockname()[1]}/metrics"

    def _status_changed(self) -> None:
        """Rewrite the status file at the next turn of the loop, not a second later: a
        reload's progress is what ``hybrid reload --wait`` reads there."""
        self._next_status_write = 0.0

    def _write_status(self) -> None:
        """Every second, next to the pidfile: ``F.json`` (atomically replaced)."""
        if not self.config.pidfile or time.monotonic() < self._next_status_write:
            return
        self._next_status_write = time.monotonic() + STATUS_INTERVAL
        write_status(self.config.pidfile, self.pid, self.status())

    def _close(self) -> None:
        if self.reloader is not None:
            self.reloader.close()
            self.reloader = None
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        close_sockets(self.sockets)
        close_sockets(self.metrics_sockets)
        self.sockets.clear()
        self.metrics_sockets.clear()
        if self.config.pidfile:
            remove_pidfile(self.config.pidfile, self.pid)

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
                return
            if signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGUSR1:
                # logrotate: every worker reopens its access log file (--access-log FILE),
                # and nginx its log files (--nginx-access-log FILE).
                for worker in self.workers.values():
                    kill_quietly(worker.pid, signal.SIGUSR1)
                if self.nginx is not None and self.nginx.pid is not None:
                    kill_quietly(self.nginx.pid, signal.SIGUSR1)

    def reload(self) -> None:
        """Queue a rolling replacement of every port (SIGHUP). A reload asked for during
        a reload starts over, so every port ends up running the newest code."""
        gen_log.info("master %d reloading: replacing workers one port at a time", self.pid)
        self._reload_nginx()
        self.sidecars.reload()
        self._replace_queue = list(self.config.ports)
        self._reloads += 1
        self._reload_abandoned = None
        self._status_changed()

    def _read_notifications(self, worker: WorkerProcess) -> None:
        try:
            while chunk := os.read(worker.notify_fd, 4096):
                worker.buffer += chunk
        except OSError:
            pass
        lines, worker.buffer = split_lines(worker.buffer)
        for line in lines:
            message = parse(line)
            if isinstance(message, Blocked):  # the one line that is no sign of life
                worker.blocked, worker.blocked_at = message, time.monotonic()
                continue
            worker.last_beat = time.monotonic()  # any other line is a sign of life
            worker.blocked = None
            if isinstance(message, Ready):
                worker.ready = True
                worker.loop = message.loop
                self._boot_failures.pop(worker.port, None)
                gen_log.info(
                    "worker %d serving %s://%s:%d%s",
                    worker.pid,
                    "https" if self.config.certfile and self.config.nginx is None else "http",
                    _url_host(self.config.host),
                    worker.port,
                    f" on {message.loop}" if message.loop else "",
                )
            elif isinstance(message, Heartbeat):
                worker.served = message.served
            elif isinstance(message, BootError):
                worker.boot_error = message.reason
            elif isinstance(message, Recycle) and worker.retiring_since is None:
                gen_log.info(
                    "worker %d on port %d %s; replacing it", worker.pid, worker.port, message.reason
                )
                self._queue_replacement(worker.port)

    def _queue_replacement(self, port: int) -> None:
        if port not in self._replace_queue:
            self._replace_queue.append(port)

    def _murder_stuck_workers(self) -> None:
        """Kill workers whose IOLoop went silent (or that never finished booting), and
        retiring workers that outlived their graceful timeout."""
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.retiring_since is not None:
                if now - worker.retiring_since > self.config.graceful_timeout + DRAIN_SLACK:
                    gen_log.warning(
                        "worker %d on port %d did not drain in time; killing it",
                        worker.pid,
                        worker.port,
                    )
                    kill_quietly(worker.pid, signal.SIGKILL)
            elif now - worker.last_beat > self.config.timeout:
                what = "sent no heartbeat" if worker.ready else "did not finish booting"
                gen_log.error(
                    "worker %d on port %d %s for %.0fs (%s); killing it",
                    worker.pid,
                    worker.port,
                    what,
                    self.config.timeout,
                    _describe_block(worker.blocked, now - worker.blocked_at),
                )
                kill_quietly(worker.pid, signal.SIGKILL)
                worker.last_beat = now  # one kill is enough; the reaper does the rest

    def _check_memory(self) -> None:
        if not self.config.max_rss or time.monotonic() < self._next_rss_check:
            return
        self._next_rss_check = time.monotonic() + RSS_CHECK_INTERVAL
        for worker in self.workers.values():
            if worker.retiring_since is not None or not worker.ready:
                continue
            rss = rss_mb(worker.pid)
            if (
                rss is not None
                and rss > self.config.max_rss
                and worker.port not in (self._replace_queue)
            ):
                gen_log.info(
                    "worker %d on port %d uses %.0f MB (--max-rss %d); replacing it",
                    worker.pid,
                    worker.port,
                    rss,
                    self.config.max_rss,
                )
                self._queue_replacement(worker.port)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.sidecars.reaped(pid, status, stopping_all=self._stopping):
                self._status_changed()
                continue
            if self.nginx is not None and pid == self.nginx.pid:
                self.nginx.reaped(status)
                if not self._stopping:
                    gen_log.warning("nginx %d %s; starting it again", pid, describe_exit(status))
                continue
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # an orphan we adopted as subreaper
            self._read_notifications(worker)
            os.close(worker.notify_fd)
            self._on_worker_exit(worker, status)

    def _on_worker_exit(self, worker: WorkerProcess, status: int) -> None:
        how = describe_exit(status)
        self._status_changed()
        self._kill_orphans()
        if self._stopping or worker.retiring_since is not None:
            gen_log.debug("worker %d on port %d %s", worker.pid, worker.port, how)
            return
        replacing = self._replacing is not None and self._replacing[1] is worker
        failed_boot = worker.boot_error is not None or (
            not worker.ready and os.WIFEXITED(status) and os.WEXITSTATUS(status) == BOOT_ERROR_EXIT
        )
        if replacing and not worker.ready:
            reason = worker.boot_error or how
            gen_log.error(
                "reload abandoned: the new worker for port %d failed to boot (%s); "
                "the old workers keep serving",
                worker.port,
                reason,
            )
            self._replacing = None
            self._replace_queue.clear()
            self._reload_abandoned = (
                f"the new worker for port {worker.port} failed to boot ({reason})"
            )
            self._status_changed()
            return
        if failed_boot:
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
        self.restarts[worker.port] = self.restarts.get(worker.port, 0) + 1
        gen_log.warning("worker %d on port %d %s; starting a new one", worker.pid, worker.port, how)

    def _advance_replacement(self) -> None:
        """One port at a time: start the new worker; once it serves, retire the old ones."""
        if self._replacing is not None:
            port, new = self._replacing
            if new.pid not in self.workers:  # died before ready: handled in _on_worker_exit
                self._replacing = None
            elif new.ready:
                for old in self.workers.values():
                    if old.port == port and old is not new and old.retiring_since is None:
                        gen_log.info(
                            "worker %d on port %d replaced by worker %d; draining it",
                            old.pid,
                            port,
                            new.pid,
                        )
                        self._retire(old)
                self._replacing = None
                self._status_changed()
            else:
                return
        while self._replace_queue and self._replacing is None:
            port = self._replace_queue.pop(0)
            if port in self.sockets:
                self._replacing = (port, self._spawn(port))

    def _retire(self, worker: WorkerProcess) -> None:
        worker.retiring_since = time.monotonic()
        kill_quietly(worker.pid, signal.SIGTERM)

    def _manage_nginx(self) -> None:
        """Start nginx once every port has a ready worker, and again whenever it died."""
        if self.config.nginx is None:
            return
        if self.nginx is None:
            ready = {w.port for w in self.workers.values() if w.ready}
            if ready != set(self.config.ports):
                return
            self.nginx = self._new_nginx()
        if self.nginx.pid is None:
            self.nginx.start()  # raises NginxError (one line) when nginx is missing or -t fails
            self.nginx.wait_ready(10)
            gen_log.info(
                "nginx %s serving %s://%s:%d in front of %d worker(s)",
                self.nginx.pid,
                "https" if self.config.certfile else "http",
                _url_host(self.nginx.listen_host),
                self.nginx.listen_port,
                len(self.config.ports),
            )

    def _new_nginx(self) -> NginxProcess:
        """nginx on ``--nginx-host`` (default ``--host``): ``--nginx-host 0.0.0.0`` faces
        the network while the workers stay on loopback."""
        return NginxProcess(
            self.config,
            listen_host=self.config.nginx_host or self.config.host,
            access_log=self.config.nginx_access_log or "off",
        )

    def _reload_nginx(self) -> None:
        """nginx re-reads its config and certificate files (a renewed certificate), after
        ``nginx -t`` accepts them: files nginx would reject leave the running ones serving."""
        if self.nginx is None or self.nginx.pid is None:
            return
        pid = self.nginx.pid
        try:
            self.nginx.reload(self.nginx.config)
        except NginxError as exc:
            gen_log.error("nginx %d keeps its running config and certificates: %s", pid, exc)
        else:
            gen_log.info("nginx %d re-reading its config and certificates", pid)

    def _stop_nginx(self) -> None:
        if self.nginx is not None:
            self.nginx.stop(timeout=self.config.graceful_timeout + DRAIN_SLACK)

    def _manage_workers(self) -> None:
        serving = {w.port for w in self.workers.values() if w.retiring_since is None}
        for port in self.config.ports:
            if port not in serving:
                self._spawn(port)

    # -- forking -------------------------------------------------------------------------

    def _spawn(self, port: int) -> WorkerProcess:
        notify_r, notify_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals stay blocked across the fork: one sent to the new worker before it has
        # dropped the master's handlers would run them in the child and be lost there (a
        # SIGTERM right after a reload's fork left a worker the master then waited 35 s for).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # pragma: no cover - runs in the child; covered by process tests
            os.close(notify_r)
            self._run_child(port, notify_w, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(notify_w)
        os.set_blocking(notify_r, False)
        worker = WorkerProcess(pid=pid, port=port, notify_fd=notify_r)
        self.workers[pid] = worker
        return worker

    def _run_child(
        self, port: int, notify_w: int, mask: set[int | signal.Signals]
    ) -> None:  # pragma: no cover - child
        """Become the worker for ``port``; never returns. ``mask``: the signal mask to
        restore once the master's handlers are gone (a signal pending since the fork is
        then delivered to the worker's own dispositions)."""
        code = 1
        try:
            for signum in self._old_handlers:
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers leave Ctrl-C to the master
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for other in self.workers.values():
                os.close(other.notify_fd)
            for bound in (self.sockets, self.metrics_sockets):
                close_sockets({p: socks for p, socks in bound.items() if p != port})
            _forget_project_modules(self.config)
            worker = Worker(
                self.config,
                port,
                self.sockets[port],
                notify_w,
                self.pid,
                metrics_sockets=self.metrics_sockets.get(port, []),
            )
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
            kill_quietly(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.graceful_timeout + DRAIN_SLACK
        interrupted = False
        while self.workers and time.monotonic() < deadline:
            if self._wake_r >= 0:
                self._wait(0.1)
            else:
                time.sleep(0.05)
            if any(s in (signal.SIGINT, signal.SIGQUIT) for s in self._signal_queue):
                gen_log.warning("second interrupt: killing %d worker(s) now", len(self.workers))
                interrupted = True
                break
            self._signal_queue.clear()
            self._reap()
        for worker in self.workers.values():
            if not interrupted:
                gen_log.warning(
                    "worker %d on port %d did not stop in time; killing it",
                    worker.pid,
                    worker.port,
                )
            kill_quietly(worker.pid, signal.SIGKILL)
        for worker in list(self.workers.values()):
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass
            os.close(worker.notify_fd)
        self.workers.clear()

    def _stop_sidecars(self) -> None:
        """Wait for the Celery processes' warm shutdown (begun with the workers' drain), up
        to the graceful timeout; kill their process groups after that."""
        deadline = time.monotonic() + self.config.graceful_timeout + STOP_SLACK
        while self.sidecars.pids() and time.monotonic() < deadline:
            if any(s in (signal.SIGINT, signal.SIGQUIT) for s in self._signal_queue):
                break
            if self._wake_r >= 0:
                self._wait(0.1)
            else:
                time.sleep(0.05)
            self._reap()
        for pid in self.sidecars.pids():
            gen_log.warning("celery process %d did not stop in time; killing it", pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                kill_quietly(pid, signal.SIGKILL)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            self.sidecars.reaped(pid, status, stopping_all=True)

    def _kill_orphans(self) -> None:
        """Kill and reap what dead workers left behind (commands in their own process
        groups, adopted by the master as subreaper): nothing of the session survives."""
        ours = set(self.workers) | self.sidecars.pids()
        if self.nginx is not None and self.nginx.pid is not None:
            ours.add(self.nginx.pid)
        for pid in children_of(self.pid):
            if pid in ours:
                continue
            gen_log.warning("killing process %d left behind by a worker", pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                kill_quietly(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _describe_block(blocked: Blocked | None, since: float) -> str:
    """What blocked a killed worker's loop, as its watchdog said: ``blocked IOLoop: GET
    /stuck running for 5.2s, at app/views.py:12 in get``."""
    if blocked is None:
        return "blocked IOLoop?"
    if blocked.method:
        what = f"{blocked.method} {blocked.path}"
        if blocked.age is not None:
            what += f" running for {blocked.age + since:.1f}s"
    else:
        what = "no request found on its stack"
    return f"blocked IOLoop: {what}" + (f", at {blocked.where}" if blocked.where else "")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _close_inherited_db_connections() -> None:
    """Close any Django DB connection the master opened (``runhybrid`` runs after
    ``django.setup()``), so no connection is shared by forked workers."""
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def _forget_project_modules(config: Config) -> None:
    """In a new worker, drop the settings module the master imported (to read
    ``settings.HYBRID``), so the worker loads the project's code as it is on disk now:
    that is what makes SIGHUP deploy new code."""
    module = config.settings_module
    if not module or "django.apps" in sys.modules and _apps_ready():
        return  # runhybrid: Django was set up before the fork; nothing to refresh
    package = module.split(".")[0]
    for name in list(sys.modules):
        if name == package or name.startswith(package + "."):
            del sys.modules[name]
    from django.conf import settings
    from django.utils.functional import empty

    settings._wrapped = empty  # the next access imports the settings module afresh


def _apps_ready() -> bool:
    from django.apps import apps

    return bool(apps.ready)
