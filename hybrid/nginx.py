"""nginx in front of the workers: render its config from ``Config``, check it, supervise it.

The config is rendered from ``nginx/hybrid.conf.template`` (a complete ``nginx.conf``) with
``{{name}}`` placeholders, so nginx's own ``$variables`` never collide with ours. Every path
in it (pid, logs, temporary files) lives in one *prefix* directory: nginx needs neither
root nor ``/etc/nginx``.

Three levels of use:

* :func:`render_config` returns the text (``hybrid nginx`` prints it);
* :func:`check_config` runs ``nginx -t`` on a text and raises :class:`NginxError` with
  nginx's complaint in one line;
* :class:`NginxProcess` runs nginx in the foreground as a child of the master
  (``hybrid serve --nginx PORT``) in a private prefix, and stops it gracefully.

When nginx starts as root it runs its worker processes as ``nobody``: the prefix, the
static directories and their parents must then be readable (static) and searchable by
others. :class:`NginxProcess` checks this and names the ``chmod`` to run.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hybrid.config import Config
from hybrid.errors import ConfigError, ServerError
from hybrid.log import gen_log

__all__ = [
    "DEFAULT_LISTEN_PORT",
    "INSTALLED_TEMPLATE_PATH",
    "TEMPLATE_PATH",
    "NginxError",
    "NginxProcess",
    "check_config",
    "find_nginx",
    "parse_listen",
    "render_config",
]

#: Where nginx listens when ``Config.nginx`` is not set and no ``listen_port`` is given.
DEFAULT_LISTEN_PORT = 8000

#: The template; ``nginx/`` sits next to the ``hybrid`` package in the source tree (and
#: in an editable install).
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "nginx" / "hybrid.conf.template"

#: Where a wheel installs it (setup.cfg ``[options.data_files] share/hybrid/nginx``).
INSTALLED_TEMPLATE_PATH = Path(sys.prefix) / "share" / "hybrid" / "nginx" / "hybrid.conf.template"

#: Debian/Ubuntu's mime types; an inline table is used where it does not exist.
MIME_TYPES_PATH = Path("/etc/nginx/mime.types")

#: Where nginx is looked for besides ``$PATH`` (``/usr/sbin`` is not on a user's PATH).
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

INSTALL_HINT = "install it with: apt-get install nginx-light (or nginx)"

#: The file name of the config inside the prefix directory.
CONF_NAME = "nginx.conf"

_INLINE_MIME_TYPES = """\
types {
    text/html                             html htm;
    text/css                              css;
    text/plain                            txt;
    text/xml                              xml;
    text/csv                              csv;
    application/javascript                js mjs;
    application/json                      json map;
    application/xml                       rss atom;
    application/pdf                       pdf;
    application/zip                       zip;
    application/gzip                      gz;
    application/wasm                      wasm;
    image/png                             png;
    image/jpeg                            jpeg jpg;
    image/gif                             gif;
    image/svg+xml                         svg svgz;
    image/webp                            webp;
    image/avif                            avif;
    image/x-icon                          ico;
    font/woff                             woff;
    font/woff2                            woff2;
    font/ttf                              ttf;
    font/otf                              otf;
    audio/mpeg                            mp3;
    audio/ogg                             ogg;
    video/mp4                             mp4;
    video/webm                            webm;
}"""

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_UNSAFE = re.compile(r"[\s;{}'\"\\#$]")


class NginxError(ServerError):
    """nginx is missing, rejected its config, or could not start or stop.

    ``output`` is what nginx printed (empty when it did not run) and ``returncode`` its exit
    status (``None`` when it did not run or has not exited).
    """

    def __init__(self, message: str, *, output: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.returncode = returncode


def parse_listen(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``8000`` / ``0.0.0.0:80`` / ``[::1]:8000`` as ``(host, port)`` for ``--listen``.

    Raises :class:`ConfigError` (a usage error) naming the accepted forms.
    """
    text = value.strip()
    host, port_text = default_host, text
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            port_text = ""
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535 or not host:
        raise ConfigError(
            f"--listen {value!r}: use PORT, ADDR:PORT or [IPV6]:PORT, e.g. 8000 or 0.0.0.0:80",
            option="--listen",
            value=value,
        )
    return host, int(port_text)


# -- rendering -------------------------------------------------------------------------------


def render_config(
    config: Config,
    *,
    prefix: str | Path,
    listen_host: str = "127.0.0.1",
    listen_port: int | None = None,
    error_log: str | None = None,
    access_log: str | None = None,
) -> str:
    """The complete ``nginx.conf`` for ``config``, with every file under ``prefix``.

    nginx listens on ``listen_host``:``listen_port`` (default ``config.nginx``, else
    :data:`DEFAULT_LISTEN_PORT`) and balances over ``config.host``:each of ``config.ports``
    (``0.0.0.0``/``::`` become loopback). ``error_log`` is ``"stderr"`` or a path (default
    ``PREFIX/error.log``; when it is ``"stderr"`` the file is written too, for
    :class:`NginxProcess` to quote); ``access_log`` a path or ``"off"`` (default
    ``PREFIX/access.log``).

    Raises :class:`NginxError` when the template is missing, a static directory does not
    exist, or a value cannot be written into an nginx config safely. No other I/O.
    """
    prefix_path = Path(os.path.abspath(prefix))
    _check_word(str(prefix_path), "prefix directory")
    port = listen_port if listen_port is not None else (config.nginx or DEFAULT_LISTEN_PORT)
    if not 1 <= port <= 65535:
        raise NginxError(f"nginx listen port {port} is out of range: use 1-65535")
    if not config.ports:
        raise NginxError("no worker ports to balance over: give --ports")
    error_file = prefix_path / "error.log"
    if error_log is None or error_log == str(error_file):
        error_lines = [f"error_log {error_file} error;"]
    elif error_log == "stderr":
        error_lines = ["error_log stderr error;", f"error_log {error_file} error;"]
    else:
        _check_word(error_log, "error log path")
        error_lines = [f"error_log {error_log} error;"]
    access = access_log if access_log is not None else str(prefix_path / "access.log")
    _check_word(access, "access log path")
    values = {
        "prefix": str(prefix_path),
        "error_log": "\n".join(error_lines),
        "access_log": "access_log off;" if access == "off" else f"access_log {access} hybrid;",
        "mime_types": (
            f"include {MIME_TYPES_PATH};" if MIME_TYPES_PATH.is_file() else _INLINE_MIME_TYPES
        ),
        "max_body_size": str(config.max_body_size),
        "servers": "\n".join(
            f"server {_address(config.host, p)} max_fails=0;" for p in config.ports
        ),
        "tries": str(len(config.ports)),
        "listen": _address(listen_host, port, loopback=False),
        "server_name": _server_name(config.server_name),
        "static_locations": _static_locations(config.static),
    }
    return _render(_read_template(), values)


def _read_template() -> str:
    for path in (TEMPLATE_PATH, INSTALLED_TEMPLATE_PATH):
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise NginxError(f"nginx config template {path} cannot be read: {exc}") from None
    raise NginxError(
        f"nginx config template not found ({TEMPLATE_PATH} nor {INSTALLED_TEMPLATE_PATH}): "
        "reinstall hybrid so that its nginx/ directory is present"
    )


def _render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{{name}}`` placeholders. A placeholder alone on its line takes a multi-line
    value, every line indented like the placeholder; an empty value removes the line."""
    out: list[str] = []
    for line in template.splitlines():
        alone = _PLACEHOLDER.fullmatch(line.strip())
        if alone:
            indent = line[: len(line) - len(line.lstrip())]
            value = _value(values, alone.group(1))
            out.extend(indent + v if v.strip() else "" for v in value.splitlines())
            continue

        def inline(match: re.Match[str]) -> str:
            value = _value(values, match.group(1))
            if "\n" in value:
                raise NginxError(f"template placeholder {match.group(0)} must be on its own line")
            return value

        out.append(_PLACEHOLDER.sub(inline, line))
    text = "\n".join(out) + "\n"
    if "{{" in text or "}}" in text:
        raise NginxError(f"{TEMPLATE_PATH} has a malformed placeholder ('{{{{' or '}}}}' left)")
    return text


def _value(values: Mapping[str, str], name: str) -> str:
    try:
        return values[name]
    except KeyError:
        raise NginxError(
            f"{TEMPLATE_PATH} uses unknown placeholder {{{{{name}}}}}; "
            f"known: {', '.join(sorted(values))}"
        ) from None


def _check_word(text: str, what: str) -> None:
    if not text or _UNSAFE.search(text):
        raise NginxError(
            f"{what} {text!r} cannot be written into an nginx config: "
            "spaces, quotes, braces, '#', '$' and ';' are not allowed"
        )


def _address(host: str, port: int, *, loopback: bool = True) -> str:
    """``HOST:PORT`` for nginx; wildcard hosts become loopback for upstream servers."""
    host = host.strip().strip("[]")
    if loopback and host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif loopback and host == "::":
        host = "::1"
    _check_word(host or "?", "address")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server_name(names: str) -> str:
    for name in names.split():
        _check_word(name, "server name")
    if not names.split():
        raise NginxError("server name is empty: use _ for any host name")
    return " ".join(names.split())


def _static_locations(static: tuple[tuple[str, str], ...]) -> str:
    blocks: list[str] = []
    seen: set[str] = set()
    for url, directory in static:
        if url == "/":
            raise NginxError(
                f"--static {url}={directory}: the URL / is the workers'; "
                "serve static files under a prefix such as /static/"
            )
        if url in seen:
            raise NginxError(f"--static {url} is given twice: give each URL once")
        seen.add(url)
        _check_word(url, "static URL")
        _check_word(directory, "static directory")
        if not os.path.isdir(directory):
            what = "is not a directory" if os.path.exists(directory) else "does not exist"
            raise NginxError(
                f"static directory {directory} for {url} {what}: create it "
                "(python manage.py collectstatic) or fix --static"
            )
        blocks.append(
            f"location {url} {{\n"
            f"    alias {directory.rstrip('/')}/;\n"
            "    expires 7d;\n"
            "    access_log off;\n"
            "}"
        )
    return "\n\n".join(blocks)


# -- running nginx ---------------------------------------------------------------------------


def find_nginx(candidate: str | None = None) -> str:
    """The absolute path of the nginx binary: ``candidate`` if given, else ``$PATH``,
    else the usual sbin directories. Raises :class:`NginxError` naming the package."""
    if candidate is not None:
        found = shutil.which(candidate)
        if found is None:
            raise NginxError(f"nginx binary {candidate!r} not found or not executable")
        return os.path.abspath(found)
    found = shutil.which("nginx")
    if found is not None:
        return os.path.abspath(found)
    for path in NGINX_CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise NginxError(f"nginx is not installed (not on PATH nor in /usr/sbin): {INSTALL_HINT}")


_version_cache: dict[str, tuple[int, ...]] = {}


def _nginx_version(nginx: str | None = None) -> tuple[int, ...]:
    """``(1, 22, 1)`` for the nginx binary (cached per path)."""
    binary = find_nginx(nginx)
    if binary not in _version_cache:
        try:
            result = subprocess.run(
                [binary, "-v"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NginxError(f"cannot run {binary} -v: {exc}") from None
        match = re.search(r"nginx/(\d+(?:\.\d+)*)", result.stderr + result.stdout)
        _version_cache[binary] = tuple(int(p) for p in match.group(1).split(".")) if match else ()
    return _version_cache[binary]


def _base_command(binary: str, prefix: Path, conf: Path) -> list[str]:
    command = [binary, "-p", f"{prefix}/", "-c", str(conf)]
    if _nginx_version(binary) >= (1, 19, 5):
        # Startup messages to stderr, not to the error log compiled into the binary
        # (/var/log/nginx/error.log is not writable without root).
        command += ["-e", "stderr"]
    return command


def check_config(text: str, *, prefix: str | Path | None = None, nginx: str | None = None) -> None:
    """Run ``nginx -t`` on ``text``; raise :class:`NginxError` with nginx's complaint.

    The text is written to ``PREFIX/nginx.conf`` (``prefix`` is created if need be; without
    one a temporary directory is used and removed). Paths inside ``text`` are not changed:
    render it for the prefix it will run in, since ``nginx -t`` opens its log files and
    creates its temporary directories.
    """
    binary = find_nginx(nginx)
    own = prefix is None
    directory = Path(tempfile.mkdtemp(prefix="hybrid-nginx-check-") if prefix is None else prefix)
    if not own:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NginxError(
                f"cannot create the nginx prefix directory {directory}: {exc.strerror}"
            ) from None
    try:
        conf = directory / CONF_NAME
        try:
            conf.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise NginxError(f"cannot write {conf}: {exc.strerror}: check --prefix") from None
        _run_check(binary, directory.resolve(), conf.resolve())
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)


def _run_check(binary: str, prefix: Path, conf: Path) -> None:
    command = [*_base_command(binary, prefix, conf), "-t", "-q"]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NginxError(f"nginx -t on {conf} did not finish in 30 s") from None
    except OSError as exc:
        raise NginxError(f"cannot run {binary}: {exc.strerror}: {INSTALL_HINT}") from None
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise NginxError(
            f"nginx rejected {conf}: {_summary(output) or f'exit status {result.returncode}'}",
            output=output,
            returncode=result.returncode,
        )
    for line in output.splitlines():
        if "[warn]" in line:
            gen_log.warning("nginx -t: %s", _strip(line))


def _strip(line: str) -> str:
    line = line.strip()
    line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line)  # error-log timestamps
    line = line.removeprefix("nginx: ").strip()
    return re.sub(r"^(\[\w+\]) \d+#\d+: (?:\*\d+ )?", r"\1 ", line)  # "[emerg] 12#12: "


def _summary(output: str) -> str:
    """nginx's serious messages as one line (``[emerg] ...; [alert] ...``)."""
    serious = [
        _strip(line)
        for line in output.splitlines()
        if any(f"[{level}]" in line for level in ("emerg", "alert", "crit", "error"))
    ]
    lines = serious or [
        _strip(line) for line in output.splitlines() if line.strip() and "test failed" not in line
    ]
    return "; ".join(dict.fromkeys(lines))[:1000]


def _set_parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGTERM when the master dies (Linux), so a
    SIGKILLed master does not leave nginx holding its port."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return preexec


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
        (static directories exist), the listen port free. The master runs them before it
        starts any worker, so a typo fails in a second rather than after every boot.
        Raises :class:`NginxError`."""
        find_nginx(self._nginx)
        render_config(
            self.config,
            prefix=self.prefix or tempfile.gettempdir(),  # rendered only, nothing written
            listen_host=self.listen_host,
            listen_port=self.listen_port,
        )
        self._check_port_free(wait=0)

    def start(self) -> None:
        """Render, check and start nginx; returns once it is started (see
        :meth:`wait_ready`). Calling it again after nginx exited starts a new one with the
        same config and prefix. Raises :class:`NginxError`."""
        if self._proc is not None and self.poll() is None:
            raise NginxError(f"nginx is already running (pid {self._proc.pid})")
        binary = find_nginx(self._nginx)
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
            )
            conf = prefix / CONF_NAME
            conf.write_text(text, encoding="utf-8")
            _run_check(binary, prefix, conf)
            self._check_port_free()
            command = [*_base_command(binary, prefix, conf), "-g", "daemon off;"]
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                start_new_session=False,
                process_group=0,
                preexec_fn=_set_parent_death_signal(),
            )
        except BaseException:
            if self._given_prefix is None and self._proc is None:
                self._remove_prefix()
            raise
        self._returncode = None
        self._stopping = False
        gen_log.info(
            "nginx %d listening on http://%s in front of %d worker(s)",
            self._proc.pid,
            _address(self.listen_host, self.listen_port, loopback=False),
            len(self.config.ports),
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
            )
            conf = self.prefix / CONF_NAME
            candidate = self.prefix / (CONF_NAME + ".new")
            candidate.write_text(text, encoding="utf-8")
            try:
                _run_check(find_nginx(self._nginx), self.prefix, candidate)
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

    def _check_port_free(self, wait: float = 1.0) -> None:
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
                    sock.bind((host, self.listen_port))
                    return
                except OSError as exc:
                    error = exc
            if error.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise NginxError(
                    f"nginx cannot listen on {_address(host, self.listen_port, loopback=False)}"
                    f": {error.strerror or error}: stop the process that holds the port or "
                    "choose another --nginx port"
                )
            time.sleep(0.05)

    def _check_permissions(self, prefix: Path) -> None:
        """As root, nginx's workers run as ``nobody``: they must reach the prefix (temporary
        files) and read the static directories, or requests fail with 500/403 later."""
        if os.geteuid() != 0:
            return
        try:
            nobody = pwd.getpwnam("nobody").pw_uid
        except KeyError:
            nobody = -1
        for path, what in [(prefix, "prefix directory")] + [
            (Path(d), f"static directory for {u}") for u, d in self.config.static
        ]:
            read = what != "prefix directory"
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
        return _strip(serious[-1]) if serious else ""


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
