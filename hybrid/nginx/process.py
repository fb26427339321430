"""nginx supervised by the master: :class:`NginxProcess` runs it in the foreground as a
child (``hybrid serve --nginx PORT``) in a private prefix, reloads and stops it gracefully.

When nginx starts as root it runs its worker processes as ``nobody``: the prefix, the
static directories and their parents must then be readable (static) and searchable by
others. :class:`NginxProcess` checks this and names the ``chmod`` to run.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from hybrid.config import Config
from hybrid.errors import NginxError
from hybrid.log import gen_log
from hybrid.nginx.binary import (
    CONF_NAME,
    base_command,
    find_nginx,
    http2_mode,
    require_modules,
    run_check,
    strip_log_line,
)
from hybrid.nginx.render import DEFAULT_LISTEN_PORT, Http2, format_address, render_config
from hybrid.nginx.upstreams import servers as upstream_servers
from hybrid.procutil import parent_death_signal

__all__ = ["NginxProcess"]


class NginxProcess:
    """nginx run in the foreground as a child of the calling process, for ``config``.

    ``start()`` renders the config into the prefix directory (a private temporary one
    unless ``prefix`` is given), checks it with ``nginx -t`` and starts
    ``nginx -p PREFIX -c PREFIX/nginx.conf -g 'daemon off;'``. nginx gets a process group
    of its own, so a Ctrl-C in the terminal reaches only the master, which stops nginx
    gracefully with :meth:`stop`; and it gets SIGTERM if the master dies.

    Errors go to stderr (the master's) and to ``PREFIX/error.log``; access lines to
    ``PREFIX/access.log`` unless ``access_log`` says otherwise. Not thread-safe: use it
    from the master's main thread (the parent-death signal belongs to the thread that
    started nginx).
    """

    def __init__(
        self,
        config: Config,
        *,
        prefix: str | Path | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int | None = None,
        nginx: str | None = None,
        access_log: str | None = None,
    ) -> None:
        self.config = config
        self.listen_host = listen_host
        self.listen_port = (
            listen_port if listen_port is not None else (config.nginx or DEFAULT_LISTEN_PORT)
        )
        self.access_log = access_log
        self._nginx = nginx
        self._given_prefix = Path(prefix).resolve() if prefix is not None else None
        self.prefix: Path | None = self._given_prefix
        self._proc: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None
        self._stopping = False
        self._http2: Http2 = ""

    # -- state -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The nginx master's pid while it runs (``None`` before start and after exit)."""
        return self._proc.pid if self._proc is not None and self._returncode is None else None

    @property
    def conf_path(self) -> Path | None:
        return self.prefix / CONF_NAME if self.prefix is not None else None

    def poll(self) -> int | None:
        """``None`` while nginx runs, else its exit status (negative: killed by a signal).

        Also ``None`` before :meth:`start`. The master, whose ``waitpid(-1)`` may reap
        nginx first, reports that with :meth:`reaped`.
        """
        if self._proc is None or self._returncode is not None:
            return self._returncode
        code = self._proc.poll()
        if code is not None:
            self._exited(code)
        return code

    def reaped(self, status: int) -> None:
        """Record that the caller reaped nginx with ``os.waitpid`` (raw ``status``)."""
        if self._proc is not None and self._returncode is None:
            self._proc.returncode = os.waitstatus_to_exitcode(status)
            self._exited(self._proc.returncode)

    def _exited(self, code: int) -> None:
        assert self._proc is not None
        self._returncode = code
        # nginx's own process group outlives a master that was SIGKILLed: its workers
        # would keep the port. The group id cannot be reused while any member lives.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # -- lifecycle ---------------------------------------------------------------------------

    def preflight(self) -> None:
        """The checks that need no running workers: nginx installed, the config renders
        (static directories exist), nginx's workers can reach its directories, the listen
        port free. The master runs them before it
        starts any worker, so a typo fails in a second rather than after every boot.
        Raises :class:`NginxError`."""
        find_nginx(self._nginx)
        require_modules(self.config, self._nginx)
        render_config(
            self.config,
            prefix=self.prefix or tempfile.gettempdir(),  # rendered only, nothing written
            listen_host=self.listen_host,
            listen_port=self.listen_port,
        )
        self._check_permissions(None)  # the prefix is made (and checked) by start()
        for port in self._ports():
            self._check_port_free(port, wait=0)

    def start(self) -> None:
        """Render, check and start nginx; returns once it is started (see
        :meth:`wait_ready`). Calling it again after nginx exited starts a new one with the
        same config and prefix. Raises :class:`NginxError`."""
        if self._proc is not None and self.poll() is None:
            raise NginxError(f"nginx is already running (pid {self._proc.pid})")
        binary = find_nginx(self._nginx)
        require_modules(self.config, binary)
        self._http2 = http2_mode(binary) if self.config.certfile else ""
        if self.prefix is not None:
            try:
                self.prefix.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NginxError(
                    f"cannot create the nginx prefix directory {self.prefix}: {exc.strerror}"
                ) from None
        else:
            self.prefix = Path(tempfile.mkdtemp(prefix="hybrid-nginx-"))
            # Searchable by nginx's workers, which run as nobody when nginx starts as root.
            os.chmod(self.prefix, 0o711)
        prefix = self.prefix
        try:
            self._check_permissions(prefix)
            text = render_config(
                self.config,
                prefix=prefix,
                listen_host=self.listen_host,
                listen_port=self.listen_port,
                error_log="stderr",
                access_log=self.access_log,
                http2=self._http2,
            )
            conf = prefix / CONF_NAME
            conf.write_text(text, encoding="utf-8")
            run_check(binary, prefix, conf)
            for port in self._ports():
                self._check_port_free(port)
            command = [*base_command(binary, prefix, conf), "-g", "daemon off;"]
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                start_new_session=False,
                process_group=0,
                preexec_fn=parent_death_signal(),
            )
        except BaseException:
            if self._given_prefix is None and self._proc is None:
                self._remove_prefix()
            raise
        self._returncode = None
        self._stopping = False
        others = len(upstream_servers(self.config)) - len(self.config.ports)
        gen_log.info(
            "nginx %d listening on %s://%s in front of %d worker(s)%s%s",
            self._proc.pid,
            "https" if self.config.certfile else "http",
            format_address(self.listen_host, self.listen_port, loopback=False),
            len(self.config.ports),
            f" and {others} on {len(self.config.upstream)} other host(s)" if others else "",
            (
                f", redirecting http on port {self.config.redirect_port}"
                if self.config.certfile and self.config.redirect_port is not None
                else ""
            ),
        )

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until nginx accepts connections on its port; raise :class:`NginxError`
        (with nginx's own complaint) if it exits first or the timeout passes."""
        deadline = time.monotonic() + timeout
        host = _connect_host(self.listen_host)
        while True:
            code = self.poll()
            if code is not None or self._proc is None:
                raise NginxError(
                    f"nginx exited with status {code} before serving"
                    + (f": {reason}" if (reason := self._last_error()) else ""),
                    returncode=code,
                )
            try:
                with socket.create_connection((host, self.listen_port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise NginxError(
                    f"nginx (pid {self._proc.pid}) did not accept connections on port "
                    f"{self.listen_port} within {timeout:g} s"
                )
            time.sleep(0.02)

    def reload(self, config: Config | None = None) -> None:
        """Re-read the config (SIGHUP): new nginx workers start, old ones finish their
        requests. With ``config``, render, write and check it first (raises
        :class:`NginxError` and keeps the running config when nginx rejects it)."""
        if self._proc is None or self.poll() is not None or self.prefix is None:
            raise NginxError("nginx is not running: nothing to reload")
        if config is not None:
            text = render_config(
                config,
                prefix=self.prefix,
                listen_host=self.listen_host,
                listen_port=self.listen_port,
                error_log="stderr",
                access_log=self.access_log,
                http2=self._http2,
            )
            conf = self.prefix / CONF_NAME
            candidate = self.prefix / (CONF_NAME + ".new")
            candidate.write_text(text, encoding="utf-8")
            try:
                run_check(find_nginx(self._nginx), self.prefix, candidate)
            except NginxError:
                candidate.unlink(missing_ok=True)
                raise
            os.replace(candidate, conf)
            self.config = config
        self._proc.send_signal(signal.SIGHUP)

    def begin_stop(self) -> None:
        """Ask nginx to stop gracefully (SIGQUIT: stop accepting, finish in-flight
        requests) without waiting; :meth:`stop` waits."""
        if self._proc is not None and self.poll() is None and not self._stopping:
            self._stopping = True
            self._proc.send_signal(signal.SIGQUIT)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop nginx: SIGQUIT, then SIGTERM after ``timeout`` seconds, then SIGKILL (to its
        workers too). Always reaps it and removes a private prefix directory. Returns the
        exit status (``None`` if it never started). Safe to call more than once."""
        proc = self._proc
        try:
            if proc is not None and self.poll() is None:
                self.begin_stop()
                if not self._wait(timeout):
                    gen_log.warning(
                        "nginx %d did not stop within %g s; terminating it", proc.pid, timeout
                    )
                    proc.send_signal(signal.SIGTERM)
                    if not self._wait(2.0):
                        proc.kill()  # and its workers: see _exited
                        self._wait(None)
        finally:
            if self._given_prefix is None:
                self._remove_prefix()
        return self._returncode

    def _wait(self, timeout: float | None) -> bool:
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.poll()
        return True

    def _remove_prefix(self) -> None:
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    # -- checks ------------------------------------------------------------------------------

    def _ports(self) -> list[int]:
        """The ports nginx listens on: its own, and ``--redirect-port`` with TLS."""
        redirect = self.config.redirect_port
        return [self.listen_port] + ([redirect] if self.config.certfile and redirect else [])

    def _check_port_free(self, port: int, wait: float = 1.0) -> None:
        """A clear error for the commonest start failure, before nginx reports it on stderr.

        Waits up to ``wait`` seconds: the workers of an nginx that just died may still be
        releasing the port."""
        host = self.listen_host.strip().strip("[]") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        deadline = time.monotonic() + wait
        while True:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                    return
                except OSError as exc:
                    error = exc
            if error.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                where = format_address(host, port, loopback=False)
                option = "--nginx" if port == self.listen_port else "--redirect-port"
                raise NginxError(
                    f"nginx cannot listen on {where}: {error.strerror or error}: stop the "
                    f"process that holds the port or choose another {option} port"
                )
            time.sleep(0.05)

    def _check_permissions(self, prefix: Path | None) -> None:
        """As root, nginx's workers run as ``nobody``: they must reach the prefix (temporary
        files) and read the static directories, or requests fail with 500/403 later, and
        reach the access log's directory, or reopening it on SIGUSR1 (logrotate) fails."""
        if os.geteuid() != 0:
            return
        try:
            nobody = pwd.getpwnam("nobody").pw_uid
        except KeyError:
            nobody = -1
        # (directory, what it is, whether the workers list and read it or only pass through)
        checked = [(Path(d), f"static directory for {u}", True) for u, d in self.config.static]
        if prefix is not None:
            checked.insert(0, (prefix, "prefix directory", False))
        if self.access_log not in (None, "off"):
            checked.append((Path(str(self.access_log)).parent, "access log's directory", False))
        for path, what, read in checked:
            blocked = _blocked_for_others(path, read=read, owner=nobody)
            if blocked is not None:
                mode = "o+rx" if read and blocked == path.resolve() else "o+x"
                raise NginxError(
                    f"nginx's worker processes (user nobody, since nginx starts as root) "
                    f"cannot reach the {what} {path}: run chmod {mode} {blocked}"
                    + (" and make its files readable (o+r)" if read else "")
                )

    def _last_error(self) -> str:
        if self.prefix is None:
            return ""
        try:
            text = (self.prefix / "error.log").read_text(errors="replace")
        except OSError:
            return ""
        serious = [line for line in text.splitlines() if "[emerg]" in line or "[alert]" in line]
        return strip_log_line(serious[-1]) if serious else ""


def _blocked_for_others(path: Path, *, read: bool, owner: int) -> Path | None:
    """The first of ``path`` and its parents that a user other than root cannot search
    (or, for ``path`` itself when ``read``, list), judged by the "other" mode bits."""
    try:
        path = path.resolve(strict=True)
    except OSError:
        return None  # a missing directory is reported by render_config
    for directory in [path, *path.parents]:
        info = directory.stat()
        bits = (info.st_mode >> 6) & 7 if info.st_uid == owner else info.st_mode & 7
        need = stat.S_IXOTH | (stat.S_IROTH if read and directory == path else 0)
        if bits & need != need:
            return directory
    return None


def _connect_host(host: str) -> str:
    host = host.strip().strip("[]")
    if host in ("", "*", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
