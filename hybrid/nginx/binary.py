"""The nginx binary: find it, learn its version, and check a config with ``nginx -t``.

:func:`check_config` raises :class:`~hybrid.errors.NginxError` with nginx's complaint in
one line; :func:`run_check` and :func:`base_command` are shared with
:class:`~hybrid.nginx.process.NginxProcess`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from hybrid.config import Config
from hybrid.errors import NginxError
from hybrid.log import gen_log
from hybrid.nginx.render import Http2

__all__ = [
    "CONF_NAME",
    "INSTALL_HINT",
    "NGINX_CANDIDATES",
    "base_command",
    "check_config",
    "find_nginx",
    "http2_mode",
    "require_modules",
    "run_check",
    "strip_log_line",
]

#: Where nginx is looked for besides ``$PATH`` (``/usr/sbin`` is not on a user's PATH).
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

INSTALL_HINT = "install it with: apt-get install nginx-light (or nginx)"

#: The file name of the config inside the prefix directory.
CONF_NAME = "nginx.conf"


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


_configure_cache: dict[str, str] = {}


def _configure_arguments(binary: str) -> str:
    """What ``nginx -V`` says it was built with (cached per path)."""
    if binary not in _configure_cache:
        try:
            result = subprocess.run(
                [binary, "-V"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NginxError(f"cannot run {binary} -V: {exc}") from None
        _configure_cache[binary] = result.stderr + result.stdout
    return _configure_cache[binary]


def require_modules(config: Config, nginx: str | None = None) -> None:
    """Raise :class:`NginxError` when ``config`` needs a module the nginx binary was built
    without: ``--trusted-proxies`` needs the realip module, ``--certfile`` the ssl module
    (Debian's nginx-light and nginx have both; a minimal build from source does not)."""
    needs = [
        (name, module, what)
        for name, module, what in (
            ("trusted_proxies", "http_realip_module", "realip"),
            ("certfile", "http_ssl_module", "ssl"),
        )
        if getattr(config, name)
    ]
    if not needs:
        return
    binary = find_nginx(nginx)
    for name, module, what in needs:
        if f"--with-{module}" not in _configure_arguments(binary):
            option = config.sources.get(name, "--" + name.replace("_", "-"))
            raise NginxError(
                f"{option} needs nginx's {what} module, and {binary} was built without it "
                f"(nginx -V lists no --with-{module}): install nginx-light or nginx "
                "from the distribution, or drop the option"
            )


def http2_mode(nginx: str | None = None) -> Http2:
    """How the nginx binary takes HTTP/2 with TLS: ``"on"`` (the ``http2`` directive, nginx
    1.25.1 and later), ``"listen"`` (``listen ... ssl http2``) or ``""`` (built without the
    http_v2 module: plain TLS, HTTP/1.1)."""
    binary = find_nginx(nginx)
    if "--with-http_v2_module" not in _configure_arguments(binary):
        return ""
    return "on" if _nginx_version(binary) >= (1, 25, 1) else "listen"


def base_command(binary: str, prefix: Path, conf: Path) -> list[str]:
    """``nginx -p PREFIX/ -c CONF`` (and ``-e stderr`` where nginx has it)."""
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
        run_check(binary, directory.resolve(), conf.resolve())
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)


def run_check(binary: str, prefix: Path, conf: Path) -> None:
    """``nginx -t`` on ``conf``; raise :class:`NginxError` with its complaint in one line,
    log its warnings."""
    command = [*base_command(binary, prefix, conf), "-t", "-q"]
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
            gen_log.warning("nginx -t: %s", strip_log_line(line))


def strip_log_line(line: str) -> str:
    """One nginx message without its timestamp, ``nginx:`` and ``pid#tid:`` prefixes."""
    line = line.strip()
    line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line)  # error-log timestamps
    line = line.removeprefix("nginx: ").strip()
    return re.sub(r"^(\[\w+\]) \d+#\d+: (?:\*\d+ )?", r"\1 ", line)  # "[emerg] 12#12: "


def _summary(output: str) -> str:
    """nginx's serious messages as one line (``[emerg] ...; [alert] ...``)."""
    serious = [
        strip_log_line(line)
        for line in output.splitlines()
        if any(f"[{level}]" in line for level in ("emerg", "alert", "crit", "error"))
    ]
    lines = serious or [
        strip_log_line(line)
        for line in output.splitlines()
        if line.strip() and "test failed" not in line
    ]
    return "; ".join(dict.fromkeys(lines))[:1000]
