"""The nginx config, rendered from ``nginx/hybrid.conf.template`` and a ``Config``.

The template (a complete ``nginx.conf``) has ``{{name}}`` placeholders, so nginx's own
``$variables`` never collide with ours. Every path in it (pid, logs, temporary files) lives
in one *prefix* directory: nginx needs neither root nor ``/etc/nginx``. No process is run
here: :mod:`hybrid.nginx.binary` checks the text with ``nginx -t``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from hybrid.config import Config
from hybrid.errors import ConfigError, NginxError
from hybrid.nginx.upstreams import servers as upstream_servers
from hybrid.protocol import heartbeat_interval
from hybrid.tls import check_options as check_tls_options

__all__ = [
    "DEFAULT_LISTEN_PORT",
    "HTTP2_MODES",
    "INSTALLED_TEMPLATE_PATH",
    "MIME_TYPES_PATH",
    "TEMPLATE_PATH",
    "Http2",
    "format_address",
    "next_upstream_timeout",
    "parse_listen",
    "read_timeout",
    "render_config",
]

#: Where nginx listens when ``Config.nginx`` is not set and no ``listen_port`` is given.
DEFAULT_LISTEN_PORT = 8000

#: How HTTP/2 is switched on with TLS: not at all (an nginx without the http_v2 module),
#: ``listen ... ssl http2`` (nginx before 1.25.1), or the ``http2 on`` directive.
Http2 = Literal["", "listen", "on"]
HTTP2_MODES: tuple[Http2, ...] = ("", "listen", "on")

#: The template; ``nginx/`` sits next to the ``hybrid`` package in the source tree (and
#: in an editable install): two levels above this file's package.
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "nginx" / "hybrid.conf.template"

#: Where a wheel installs it (setup.cfg ``[options.data_files] share/hybrid/nginx``).
INSTALLED_TEMPLATE_PATH = Path(sys.prefix) / "share" / "hybrid" / "nginx" / "hybrid.conf.template"

#: Debian/Ubuntu's mime types; an inline table is used where it does not exist.
MIME_TYPES_PATH = Path("/etc/nginx/mime.types")

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


def render_config(
    config: Config,
    *,
    prefix: str | Path,
    listen_host: str = "127.0.0.1",
    listen_port: int | None = None,
    error_log: str | None = None,
    access_log: str | None = None,
    http2: Http2 = "",
) -> str:
    """The complete ``nginx.conf`` for ``config``, with every file under ``prefix``.

    nginx listens on ``listen_host``:``listen_port`` (default ``config.nginx``, else
    :data:`DEFAULT_LISTEN_PORT`) and balances over ``config.host``:each of ``config.ports``
    (``0.0.0.0``/``::`` become loopback) and every ``config.upstream`` host's ports. With
    ``config.certfile`` it listens with TLS (HTTP/2 as ``http2`` says: see :data:`Http2`;
    :func:`hybrid.nginx.binary.http2_mode` tells what the binary supports), and with
    ``config.redirect_port`` it answers plain HTTP there with a 301 to https.
    ``error_log`` is ``"stderr"`` or a path (default ``PREFIX/error.log``; when it is
    ``"stderr"`` the file is written too, for :class:`NginxProcess` to quote);
    ``access_log`` a path or ``"off"`` (default ``PREFIX/access.log``).

    Raises :class:`NginxError` when the template is missing, a static directory does not
    exist, or a value cannot be written into an nginx config safely, and
    :class:`ConfigError` for a worker listed twice, ``--certfile`` without ``--keyfile``
    (or the reverse), or ``--redirect-port`` without them or on nginx's own port. No other
    I/O (the certificate files are not read here: :func:`hybrid.tls.check` does).
    """
    prefix_path = Path(os.path.abspath(prefix))
    _check_word(str(prefix_path), "prefix directory")
    port = listen_port if listen_port is not None else (config.nginx or DEFAULT_LISTEN_PORT)
    if not 1 <= port <= 65535:
        raise NginxError(f"nginx listen port {port} is out of range: use 1-65535")
    if not config.ports:
        raise NginxError("no worker ports to balance over: give --ports")
    if http2 not in HTTP2_MODES:
        raise NginxError(f"http2 must be one of {HTTP2_MODES}, not {http2!r}")
    servers = upstream_servers(config)
    check_tls_options(config)
    tls = bool(config.certfile)
    if config.redirect_port is not None and config.redirect_port == port:
        where = config.sources.get("redirect_port", "--redirect-port")
        raise ConfigError(
            f"{where} {port} is nginx's own (https) port: give the plain-HTTP redirect a "
            "port of its own, e.g. 80",
            option=where,
            value=port,
        )
    listen_options = (" ssl" if tls else "") + (" http2" if tls and http2 == "listen" else "")
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
        "access_log": "access_log off;" if access == "off" else f"access_log {access} {_ACCESS};",
        "mime_types": (
            f"include {MIME_TYPES_PATH};" if MIME_TYPES_PATH.is_file() else _INLINE_MIME_TYPES
        ),
        "max_body_size": str(config.max_body_size),
        "servers": "\n".join(f"server {format_address(h, p)} max_fails=0;" for h, p in servers),
        "tries": str(len(servers)),
        "next_upstream_timeout": _msec(next_upstream_timeout(config)),
        "read_timeout": _msec(read_timeout(config)),
        "listen": format_address(listen_host, port, loopback=False) + listen_options,
        "server_name": _server_name(config.server_name),
        "tls": _tls(config, http2) if tls else "",
        "default_server": _default_server(
            [format_address(listen_host, port, loopback=False) + listen_options]
            + (
                [format_address(listen_host, config.redirect_port, loopback=False)]
                if tls and config.redirect_port is not None
                else []
            ),
            config.server_name,
        ),
        "redirect_server": (
            _redirect_server(listen_host, config.redirect_port, port, config.server_name)
            if tls and config.redirect_port is not None
            else ""
        ),
        "real_ip": _real_ip(config.trusted_proxies),
        "forwarded_for": "$hybrid_forwarded_for" if config.trusted_proxies else "$remote_addr",
        "static_locations": _static_locations(config.static),
    }
    return _render(_read_template(), values)


#: The access log's format and buffering: lines are written 64 KiB at a time, or at least
#: once a second, instead of one write() per request (measured: nginx's own CPU per
#: request is what keeps hybrid behind nginx below hybrid direct). A crash of nginx loses at
#: most the last second of lines; reloads and stops flush them.
_ACCESS = "hybrid buffer=64k flush=1s"


#: Seconds nginx waits for a worker's response without --request-timeout (nginx's default),
#: and what it adds to --request-timeout, so that the worker's own 504 arrives first.
DEFAULT_READ_TIMEOUT = 60.0
READ_TIMEOUT_SLACK = 5.0


def read_timeout(config: Config) -> float:
    """``proxy_read_timeout``: ``--proxy-read-timeout``, else 60 s or ``--request-timeout``
    + 5 s, whichever is longer."""
    if config.proxy_read_timeout:
        return config.proxy_read_timeout
    if not config.request_timeout:
        return DEFAULT_READ_TIMEOUT
    return max(DEFAULT_READ_TIMEOUT, config.request_timeout + READ_TIMEOUT_SLACK)


def next_upstream_timeout(config: Config) -> float:
    """``proxy_next_upstream_timeout``: how long after its first try a request may still
    be passed to another worker.

    A request that blocks its worker's loop is sent at the latest when the loop blocks;
    the loop's last heartbeat came at most one interval before that, and the master kills
    the worker ``--timeout`` after that heartbeat: the request has been in flight for at
    least ``timeout - interval`` when its connection breaks. Two intervals below
    ``--timeout`` leaves one interval for a loop that was late with its heartbeat, so such
    a request is never retried; and never past ``proxy_read_timeout``, so a request that
    timed out waiting for its response is not run again elsewhere either.
    """
    interval = heartbeat_interval(config.timeout)
    return max(0.001, min(config.timeout - 2 * interval, read_timeout(config)))


def _msec(seconds: float) -> str:
    """Seconds for nginx: ``28s``, or ``1200ms``; never 0, which nginx reads as "no limit"."""
    msec = max(1, round(seconds * 1000))
    return f"{msec // 1000}s" if msec % 1000 == 0 else f"{msec}ms"


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


def format_address(host: str, port: int, *, loopback: bool = True) -> str:
    """``HOST:PORT`` for nginx; wildcard hosts become loopback for upstream servers."""
    host = host.strip().strip("[]")
    if loopback and host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif loopback and host == "::":
        host = "::1"
    _check_word(host or "?", "address")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _default_server(listens: list[str], names: str) -> str:
    """With ``--server-name``, a default server on the same addresses (``listens``, with
    their options) that closes the connection (444) of any request for another host,
    instead of passing it on (or redirecting it)."""
    if names.split() == ["_"]:
        return ""
    return (
        "# --server-name is given: a request for any other host (or none) is refused here,\n"
        "# the connection closed without an answer (444), and never reaches a worker.\n"
        "server {\n"
        + "".join(f"    listen {listen} default_server;\n" for listen in listens)
        + '    server_name "";\n'
        "    access_log off;\n"
        "    return 444;\n"
        "}"
    )


def _tls(config: Config, http2: Http2) -> str:
    """The TLS settings of the http block (every ``listen ... ssl`` server uses them)."""
    assert config.certfile and config.keyfile
    _check_word(config.certfile, "--certfile path")
    _check_word(config.keyfile, "--keyfile path")
    lines = [
        f"ssl_certificate {config.certfile};",
        f"ssl_certificate_key {config.keyfile};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_cache shared:hybrid_tls:10m;",
        "ssl_session_timeout 1d;",
        "ssl_session_tickets off;",
    ]
    if http2 == "on":
        lines.append("http2 on;")
    return "\n".join(lines)


def _redirect_server(host: str, redirect_port: int, https_port: int, names: str) -> str:
    """``--redirect-port``: plain HTTP there answers 301 to the same host and path over
    https on nginx's port (written only when it is not 443)."""
    target = "https://$host" + ("" if https_port == 443 else f":{https_port}") + "$request_uri"
    return (
        "# --redirect-port: plain HTTP here is answered with a permanent redirect to https,\n"
        "# the same host, path and query; no request reaches a worker over plain HTTP.\n"
        "server {\n"
        f"    listen {format_address(host, redirect_port, loopback=False)};\n"
        f"    server_name {_server_name(names)};\n"
        f"    return 301 {target};\n"
        "}"
    )


def _real_ip(proxies: tuple[str, ...]) -> str:
    """The realip module trusting ``proxies`` (``--trusted-proxies``) and the
    ``$hybrid_forwarded_for`` nginx sends: the balancer's list with the balancer's address
    appended, or the peer's address alone when the peer is not one of ``proxies``."""
    if not proxies:
        return ""
    for proxy in proxies:
        _check_word(proxy, "trusted proxy")
    lines = [f"set_real_ip_from {proxy};" for proxy in proxies]
    lines += [
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
        "geo $realip_remote_addr $hybrid_from_proxy {",
        "    default 0;",
        *(f"    {proxy} 1;" for proxy in proxies),
        "}",
        "map $hybrid_from_proxy$http_x_forwarded_for $hybrid_forwarded_for {",
        "    default $remote_addr;",
        "    1       $realip_remote_addr;",
        '    "~^1."  "$http_x_forwarded_for, $realip_remote_addr";',
        "}",
    ]
    return "\n".join(lines)


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
