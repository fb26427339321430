"""The one ``Config`` of hybrid: every option, where it comes from, and how it is checked.

Options come from four places; the first that gives a value wins:

1. the command line (``hybrid serve --ports 8001-8004``, or ``manage.py runhybrid``);
2. ``HYBRID_*`` environment variables (``HYBRID_PORTS=8001-8004``);
3. the Django setting ``HYBRID`` (``HYBRID = {"ports": "8001-8004"}``);
4. the defaults below.

``Config(...)`` and :meth:`Config.from_sources` do no I/O; :meth:`Config.load` has the side
effects (``sys.path``, ``DJANGO_SETTINGS_MODULE``, importing the settings module) and
:func:`build_config` chains them the way the CLI and the management command need.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid.errors import AppLoadError, ConfigError, describe_exception

__all__ = [
    "MAX_PORTS",
    "OPTIONS",
    "Config",
    "Option",
    "build_config",
    "parse_ports",
    "parse_positive_float",
]

#: More workers than this is almost certainly a typo (``8001-80040``), not a deployment.
MAX_PORTS = 256

#: The ``max_connections`` the default ``--db-threads`` assumes (PostgreSQL's default).
DB_CONNECTION_BUDGET = 100

#: The most database threads per worker ``--db-threads`` defaults to.
MAX_DEFAULT_DB_THREADS = 8

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

#: The workers' event loops (``--loop``; :mod:`hybrid.eventloop` makes them).
LOOPS = ("auto", "asyncio", "uvloop")


def parse_ports(spec: object) -> tuple[int, ...]:
    """Parse ``8001-8004``, ``8001,8003`` or ``8001-8002,9000`` (or a list of ints).

    Raises :class:`ConfigError` naming the bad part and the accepted syntax.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        parts: list[str] = [str(spec)]
    elif isinstance(spec, (list, tuple)):
        parts = [str(p) for p in spec]
    elif isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
    else:
        raise ConfigError(f"ports must be a string like '8001-8004', not {spec!r}", value=spec)
    ports: list[int] = []
    for part in parts:
        low_text, dash, high_text = part.partition("-")
        try:
            low = _port_number(low_text)
            high = _port_number(high_text) if dash else low
        except ValueError:
            raise ConfigError(
                f"invalid port {part!r}: use a number, a range like 8001-8004, "
                "or a comma-separated list like 8001,8003",
                value=spec,
            ) from None
        for number in (low, high):
            if not 1 <= number <= 65535:
                raise ConfigError(f"port {number} is out of range: use 1-65535", value=spec)
        if high < low:
            raise ConfigError(f"port range {part!r} is backwards: write {high}-{low}", value=spec)
        for number in range(low, high + 1):
            if number in ports:
                raise ConfigError(f"port {number} is listed twice", value=spec)
            ports.append(number)
            if len(ports) > MAX_PORTS:
                raise ConfigError(
                    f"{spec!r} asks for more than {MAX_PORTS} workers; give fewer ports",
                    value=spec,
                )
    return tuple(ports)


def _port_number(text: str) -> int:
    text = text.strip()
    if not text.isdigit():  # rejects '', '+1', ' 8x'
        raise ValueError(text)
    return int(text)


def _parse_str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _parse_optional_str(value: object) -> str | None:
    return None if value is None or value == "" else _parse_str(value)


def parse_positive_float(value: object) -> float:
    """A positive, finite number of seconds (``30``, ``"2.5"``); ValueError saying so."""
    expected = "expected a positive number of seconds, e.g. 30 or 2.5"
    if isinstance(value, bool):
        raise ValueError(expected)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(expected) from None
    if not number > 0 or number == float("inf"):
        raise ValueError(expected)
    return number


def _parse_optional_seconds(value: object) -> float:
    """A number of seconds, or 0 (also ``off``, ``none``, ``""``) for "no limit"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return 0.0
    if not isinstance(value, bool):
        try:
            if float(value) == 0:  # type: ignore[arg-type]
                return 0.0
        except (TypeError, ValueError):
            pass
    try:
        return parse_positive_float(value)
    except ValueError:
        raise ValueError("expected a number of seconds, e.g. 60, or 0 for no limit") from None


def _whole_number(value: object, expected: str) -> int:
    """``value`` as an int; ``ValueError(expected)`` for anything else (``1.5``, ``x``, True)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(expected)
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(expected) from None


def _parse_positive_int(value: object) -> int:
    expected = "expected a positive whole number"
    number = _whole_number(value, expected)
    if number <= 0:
        raise ValueError(expected)
    return number


def _parse_optional_positive_int(value: object) -> int | None:
    return None if value is None or value == "" else _parse_positive_int(value)


def _parse_nonnegative_int(value: object) -> int:
    expected = "expected 0 or a positive whole number"
    number = _whole_number(value, expected)
    if number < 0:
        raise ValueError(expected)
    return number


#: Size suffixes, powers of 1024 as in nginx's ``client_max_body_size`` (which receives
#: the same value): ``10M``, ``10MB`` and ``10MiB`` all mean 10 x 1024 x 1024 bytes.
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = re.compile(r"(\d+)\s*(?:([kmg])(?:i?b)?|b)?", re.IGNORECASE)


def _parse_size(value: object) -> int:
    """A positive size in bytes: ``1048576``, or with a K, M or G suffix (``10M``, ``512KiB``)."""
    expected = "expected a size in bytes, or with a K, M or G suffix, e.g. 10M"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, (int, float)):
        number = _whole_number(value, expected)
    else:
        match = _SIZE.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(expected)
        unit = match.group(2)
        number = int(match.group(1)) * (_SIZE_UNITS[unit.lower()] if unit else 1)
    if number <= 0:
        raise ValueError(expected)
    return number


def _parse_directory(value: object) -> str | None:
    """An existing directory (``--pythonpath``): a typo would only show up later, as a
    settings module that cannot be imported."""
    path = _parse_optional_str(value)
    if path is not None and not os.path.isdir(path):
        raise ValueError(f"no such directory: {path}")
    return path


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _parse_log_level(value: object) -> str:
    text = str(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError("expected one of " + ", ".join(LOG_LEVELS))
    return text


def _parse_loop(value: object) -> str:
    """``auto``, ``asyncio`` or ``uvloop``; whether uvloop is installed is checked before
    the workers start (:func:`hybrid.eventloop.check`), not here (no imports)."""
    text = str(value).strip().lower()
    if text not in LOOPS:
        raise ValueError("expected one of " + ", ".join(LOOPS))
    return text


#: The groups backends by URL scheme (hybrid.groups): Redis pub/sub, or this process only.
GROUPS_SCHEMES = ("redis", "rediss", "unix", "memory")


def _parse_groups(value: object) -> str | None:
    """A groups backend URL: ``redis://HOST:PORT/DB``, ``rediss://...``, ``unix:///path``
    or ``memory://``; empty for the default (in-process)."""
    text = str(value).strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in GROUPS_SCHEMES:
        raise ValueError(
            "expected redis://HOST:PORT/DB (or rediss://, unix:///path/redis.sock?db=0), "
            "or memory:// for groups within one process"
        )
    if scheme.lower() == "memory":
        return "memory://"
    if scheme.lower() != "unix" and not rest.split("/", 1)[0].rpartition("@")[2]:
        raise ValueError(f"no host in {text!r}: write {scheme}://127.0.0.1:6379/0")
    return text


def _parse_celery(value: object) -> tuple[str, ...]:
    """Celery worker commands, ``worker --concurrency 4``: a list (``--celery`` given
    several times, a list in ``settings.HYBRID``) or one string, several separated by ``;``
    (the environment variable). Checked further where they are started (hybrid.sidecars)."""
    if isinstance(value, str):
        items: list[object] = list(value.split(";"))
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("expected Celery worker commands like 'worker --concurrency 4'")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _parse_upstreams(value: object) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``HOST:PORTS`` entries, one per host: ``10.0.0.1:8001-8004``, ``[fd00::1]:8001``
    (a list, or one string separated by spaces). PORTS as ``--ports`` takes them."""
    if isinstance(value, str):
        items = value.split()
    elif isinstance(value, (list, tuple)):
        items = [part for item in value for part in str(item).split()]
    else:
        raise ValueError("expected HOST:PORTS entries like 10.0.0.1:8001-8004")
    result: list[tuple[str, tuple[int, ...]]] = []
    for item in items:
        text = str(item).strip()
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            ports = rest[1:] if bracket and rest.startswith(":") else ""
        else:
            host, _, ports = text.rpartition(":")
        if not host or not ports or not _is_host(host, bracketed=text.startswith("[")):
            hint = (
                f" (an IPv6 address goes in brackets: [{host}]:{ports})"
                if ":" in host and _is_host(host, bracketed=True)
                else ""
            )
            raise ValueError(
                f"{text!r} is not HOST:PORTS: write one host per entry, e.g. "
                f"10.0.0.1:8001-8004 (give the option again for another host){hint}"
            )
        try:
            result.append((host, parse_ports(ports)))
        except ConfigError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
    return tuple(result)


#: A host name as nginx's ``server`` takes it: dot-separated labels of letters, digits and
#: inner hyphens (no scheme, path, user or port).
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _is_host(host: str, *, bracketed: bool) -> bool:
    """An IPv4 address or a host name, or (in brackets) an IPv6 address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return not bracketed and len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None
    return (address.version == 6) == bracketed


def _parse_optional_file(value: object) -> str | None:
    """A path, made absolute; whether it exists is checked where it is used."""
    if value is None or str(value).strip() == "":
        return None
    return os.path.abspath(os.path.expanduser(str(value).strip()))


def _parse_access_log(value: object) -> str:
    """``-`` (stderr, through the hybrid.access logger), ``off``, or a file path in an
    existing directory (each worker opens it: a typo would only show up there)."""
    text = str(value).strip()
    if text in ("-", "off"):
        return text
    if not text:
        raise ValueError("expected -, off or a file path")
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"no such directory: {os.path.dirname(path)}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory: name a file in it")
    return path


def _parse_nginx_access_log(value: object) -> str | None:
    """``off`` or a file path in an existing directory (nginx opens it as it starts)."""
    if value is None:
        return None
    text = str(value).strip()
    if text == "off":
        return text
    if text in ("", "-"):
        raise ValueError("expected off or a file path (nginx cannot write it to stderr)")
    return _parse_access_log(text)


def _parse_access_log_format(value: object) -> str | None:
    """A gunicorn-style format, compiled once here so that a bad one stops the start."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a format like '%(h)s \"%(r)s\" %(s)s'")
    from hybrid.accesslog import compile_format

    compile_format(value)  # ConfigError naming the bad atom
    return value


def _parse_port(value: object) -> int:
    ports = parse_ports(value)
    if len(ports) != 1:
        raise ValueError("expected one port")
    return ports[0]


def _parse_optional_port(value: object) -> int | None:
    return None if value is None or value == "" else _parse_port(value)


def _parse_optional_nginx_port(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return _parse_port(value)
    except (ConfigError, ValueError):
        hint = " (its address goes in --nginx-host)" if ":" in str(value) else ""
        raise ValueError(f"expected one port number, e.g. 8000{hint}") from None


def _parse_static(value: object) -> tuple[tuple[str, str], ...]:
    """``/static/=/srv/site/static`` entries (a list, or one string separated by commas).

    URLs are normalised to start and end with ``/``; directories are made absolute.
    Whether they exist is checked where they are used (rendering the nginx config).
    """
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("expected URL=DIR entries like /static/=/srv/mysite/static")
    result: list[tuple[str, str]] = []
    for item in items:
        url, eq, directory = str(item).strip().partition("=")
        if not eq or not url.strip() or not directory.strip():
            raise ValueError(f"{item!r} is not URL=DIR, e.g. /static/=/srv/mysite/static")
        url = "/" + url.strip().strip("/") + "/" if url.strip("/ ") else "/"
        if any(c.isspace() or c in ";{}'\"" for c in url + directory):
            raise ValueError(f"{item!r}: spaces, quotes, braces and ';' are not allowed")
        result.append((url, os.path.abspath(directory.strip())))
    return tuple(result)


def _parse_trusted_proxies(value: object) -> tuple[str, ...]:
    """Addresses and networks of the proxies in front of nginx (``10.0.0.0/8,192.0.2.7``,
    or a list): each checked, a single address written without its ``/32``."""
    expected = "expected IP addresses or networks separated by commas, e.g. 10.0.0.0/8,192.0.2.7"
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        raise ValueError(expected)
    result: list[str] = []
    for item in items:
        try:
            network = ipaddress.ip_network(item)
        except ValueError:
            try:
                loose = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network; {expected}") from None
            raise ValueError(f"{item!r} has bits set past its prefix: write {loose}") from None
        text = str(network.network_address) if network.num_addresses == 1 else str(network)
        if text not in result:
            result.append(text)
    return tuple(result)


@dataclass(frozen=True)
class Option:
    """One option: its ``Config`` field, its command-line flag and environment variable."""

    name: str
    flag: str
    parse: Callable[[object], Any]
    help: str
    metavar: str | None = None
    #: ``--settings`` and ``--pythonpath`` exist on every Django management command already.
    django_builtin: bool = False
    #: False for options that make no sense inside ``settings.HYBRID`` (``settings`` itself).
    in_settings: bool = True
    #: True for options given several times on the command line (``--static``).
    repeat: bool = False
    #: True for a boolean that is a bare flag on the command line (``--celery-beat``); its
    #: environment variable and settings key still take true/false.
    bare: bool = False

    @property
    def env(self) -> str:
        return "HYBRID_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option(
        "ports",
        "--ports",
        parse_ports,
        "ports to serve, one worker each: 8001-8004, 8001,8003 or 8001-8002,9000 (default 8001)",
        "PORTS",
    ),
    Option(
        "host",
        "--host",
        _parse_str,
        "address the workers listen on (default 127.0.0.1: "
        "workers sit behind nginx; use 0.0.0.0 only when you mean it)",
        "ADDR",
    ),
    Option(
        "settings",
        "--settings",
        _parse_optional_str,
        "Django settings module, e.g. mysite.settings (default: $DJANGO_SETTINGS_MODULE)",
        "MODULE",
        django_builtin=True,
        in_settings=False,
    ),
    Option(
        "pythonpath",
        "--pythonpath",
        _parse_directory,
        "directory to add to the "
        "Python path, like Django's --pythonpath (the current directory always is)",
        "DIR",
        django_builtin=True,
        in_settings=False,
    ),
    Option(
        "graceful_timeout",
        "--graceful-timeout",
        parse_positive_float,
        "seconds a stopping worker may spend finishing in-flight requests (default 30)",
        "SECONDS",
    ),
    Option(
        "max_body_size",
        "--max-body-size",
        _parse_size,
        "largest request body a worker accepts: bytes, or with a K, M or G suffix "
        "(powers of 1024, as in nginx), e.g. 10M (default 10M)",
        "SIZE",
    ),
    Option(
        "timeout",
        "--timeout",
        parse_positive_float,
        "seconds a worker may go without a heartbeat from its IOLoop (a blocked loop) "
        "or take to boot before the master kills and replaces it (default 30)",
        "SECONDS",
    ),
    Option(
        "request_timeout",
        "--request-timeout",
        _parse_optional_seconds,
        "seconds a request may take before its handler is cancelled and the client gets "
        "504 (a streaming response already started is closed); a handler class's "
        "request_timeout attribute overrides it (default 0: no limit)",
        "SECONDS",
    ),
    Option(
        "max_requests",
        "--max-requests",
        _parse_nonnegative_int,
        "replace a worker after this many requests (default 0: never)",
        "N",
    ),
    Option(
        "max_requests_jitter",
        "--max-requests-jitter",
        _parse_nonnegative_int,
        "add 0..J random requests to --max-requests per worker, so they recycle apart",
        "J",
    ),
    Option(
        "max_rss",
        "--max-rss",
        _parse_nonnegative_int,
        "replace a worker whose resident memory grows past this many MB (default 0: never)",
        "MB",
    ),
    Option(
        "max_commands",
        "--max-commands",
        _parse_positive_int,
        "system commands (hybrid.run_command) a worker runs at once; more wait in line "
        "(default 16)",
        "N",
    ),
    Option(
        "keepalive_timeout",
        "--keepalive-timeout",
        parse_positive_float,
        "seconds an idle connection, or one still sending its headers, is kept (default 75;"
        " keep it above nginx's upstream keepalive_timeout)",
        "SECONDS",
    ),
    Option(
        "body_timeout",
        "--body-timeout",
        parse_positive_float,
        "seconds a client may take to send a request body (default 60)",
        "SECONDS",
    ),
    Option(
        "max_header_size",
        "--max-header-size",
        _parse_size,
        "largest request head (request line and headers): bytes, or with a K, M or G "
        "suffix (default 64K)",
        "SIZE",
    ),
    Option(
        "xheaders",
        "--xheaders",
        _parse_bool,
        "honour X-Real-IP/X-Forwarded-For/X-Forwarded-Proto, and only from loopback peers "
        "such as the nginx in front (default true)",
        "BOOL",
    ),
    Option(
        "forwarded_allow_ips",
        "--forwarded-allow-ips",
        _parse_trusted_proxies,
        "more peers whose X-Real-IP/X-Forwarded-* the workers honour, besides loopback: "
        "the nginx of another host, e.g. 10.0.0.1 or 10.0.0.0/24 (default none)",
        "ADDRS",
    ),
    Option(
        "nginx",
        "--nginx",
        _parse_optional_nginx_port,
        "also run nginx on this port in front of the workers, supervised by the master",
        "PORT",
    ),
    Option(
        "nginx_host",
        "--nginx-host",
        _parse_optional_str,
        "address nginx listens on (default: --host), e.g. 0.0.0.0 to face the network "
        "while the workers stay on 127.0.0.1",
        "ADDR",
    ),
    Option(
        "nginx_access_log",
        "--nginx-access-log",
        _parse_nginx_access_log,
        "nginx's own access log: a FILE (reopened on SIGUSR1) or off (default: off under "
        "serve --nginx, where the workers log every request they answer; PREFIX/access.log "
        "in hybrid nginx's config)",
        "FILE",
    ),
    Option(
        "upstream",
        "--upstream",
        _parse_upstreams,
        "workers on other hosts for nginx to balance over too, HOST:PORTS, e.g. "
        "10.0.0.2:8001-8004 (repeatable, one host each; this host's --ports stay in)",
        "HOST:PORTS",
        repeat=True,
    ),
    Option(
        "certfile",
        "--certfile",
        _parse_optional_file,
        "TLS certificate (PEM, with its chain): nginx listens with TLS, or the workers do "
        "when there is no --nginx (needs --keyfile)",
        "FILE",
    ),
    Option(
        "keyfile",
        "--keyfile",
        _parse_optional_file,
        "the TLS certificate's private key (PEM)",
        "FILE",
    ),
    Option(
        "redirect_port",
        "--redirect-port",
        _parse_optional_port,
        "with --certfile: a plain-HTTP port on which nginx redirects every request to "
        "https (e.g. 80)",
        "PORT",
    ),
    Option(
        "server_name",
        "--server-name",
        _parse_str,
        "nginx server_name; nginx refuses requests for any other host (444) "
        "(default _ : any host name)",
        "NAMES",
    ),
    Option(
        "static",
        "--static",
        _parse_static,
        "let nginx serve URL from DIR, e.g. /static/=/srv/mysite/static (repeatable)",
        "URL=DIR",
        repeat=True,
    ),
    Option(
        "trusted_proxies",
        "--trusted-proxies",
        _parse_trusted_proxies,
        "addresses or networks (comma-separated, e.g. 10.0.0.0/8) of load balancers in "
        "front of nginx whose X-Forwarded-For nginx believes (its realip module) and extends;"
        " default none: nginx is the edge and sends the client's address alone",
        "ADDRS",
    ),
    Option(
        "proxy_read_timeout",
        "--proxy-read-timeout",
        _parse_optional_seconds,
        "seconds nginx waits for a worker's response, or between two of its reads "
        "(default 0: 60, or --request-timeout + 5 when that is longer)",
        "SECONDS",
    ),
    Option(
        "metrics_port",
        "--metrics-port",
        _parse_optional_port,
        "serve each worker's Prometheus metrics on 127.0.0.1:PORT+i (i: the worker's "
        "index in --ports), away from the public routes (default: off)",
        "PORT",
    ),
    Option(
        "pidfile",
        "--pidfile",
        _parse_optional_str,
        "write the master's pid to this file (for `hybrid reload --pidfile`)",
        "FILE",
        in_settings=False,
    ),
    Option(
        "db_threads",
        "--db-threads",
        _parse_optional_positive_int,
        "database threads per worker; Django requests and their ORM calls share them, one "
        "thread per request (default: 100 // (2 x workers), at most 8; keep threads x "
        "workers x 2 <= the database's max_connections)",
        "N",
    ),
    Option(
        "request_signals",
        "--request-signals",
        _parse_bool,
        "send Django's request_started/request_finished around every DjangoHandler request "
        "on its database thread, which closes stale connections (default true; false only "
        "to diagnose)",
        "BOOL",
    ),
    Option(
        "native_mysql",
        "--native-mysql",
        _parse_bool,
        "run Django's async ORM calls on MySQL/MariaDB databases natively on an aiomysql "
        "pool per worker (at most --db-threads connections, opened on first use), without a "
        "database thread (default true; false keeps them on the database threads; one "
        "database opts out with DATABASES[alias]['HYBRID_NATIVE'] = False)",
        "BOOL",
    ),
    Option(
        "gc_threshold",
        "--gc-threshold",
        _parse_nonnegative_int,
        "allocations between the worker's young-generation garbage collections; the "
        "worker also freezes what it loaded at boot out of collection (default 50000; "
        "0 keeps Python's own thresholds and freezes nothing)",
        "N",
    ),
    Option(
        "groups",
        "--groups",
        _parse_groups,
        "where group messages travel (hybrid.group_send): redis://HOST:PORT/DB for every "
        "worker of every host (pip install 'hybrid[redis]'), or memory:// for this worker "
        "only (default memory://)",
        "URL",
    ),
    Option(
        "group_queue",
        "--group-queue",
        _parse_positive_int,
        "group messages a WebSocket may have waiting for a slow client before it is closed "
        "with 1013, try again later (default 100)",
        "N",
    ),
    Option(
        "group_max_message",
        "--group-max-message",
        _parse_size,
        "largest group message, as JSON; a bigger one raises GroupError on the sender's "
        "side (default 256K)",
        "SIZE",
    ),
    Option(
        "celery",
        "--celery",
        _parse_celery,
        "run a Celery worker under the master with these arguments, e.g. 'worker "
        "--concurrency 4' (repeatable: one process each; pip install 'hybrid[celery]')",
        "ARGS",
        repeat=True,
    ),
    Option(
        "celery_beat",
        "--celery-beat",
        _parse_bool,
        "run Celery beat under the master too, for the periodic tasks of "
        "CELERY_BEAT_SCHEDULE (default off)",
        bare=True,
    ),
    Option(
        "celery_app",
        "--celery-app",
        _parse_optional_str,
        "the Celery app, as celery -A takes it (default: the settings module's package, "
        "e.g. mysite for mysite.settings, whose celery.py defines app)",
        "APP",
    ),
    Option(
        "loop",
        "--loop",
        _parse_loop,
        "the workers' event loop: auto (uvloop when it is installed, else asyncio), asyncio,"
        " or uvloop (pip install 'hybrid[uvloop]') (default auto)",
        "LOOP",
    ),
    Option(
        "name",
        "--name",
        _parse_optional_str,
        "the name in process titles, hybrid: master [NAME] (default: the settings "
        "module's package)",
        "NAME",
    ),
    Option(
        "access_log",
        "--access-log",
        _parse_access_log,
        "where the access log goes: - (stderr, the hybrid.access logger), a FILE, or off "
        "(default -)",
        "FILE",
    ),
    Option(
        "access_log_format",
        "--access-log-format",
        _parse_access_log_format,
        "the access log line in gunicorn's atoms (h r s b M {x-request-id}i ..., written "
        "as in gunicorn; see docs/deploy/operations.md) (default: METHOD URI STATUS TIMEms "
        "port=PORT)",
        "FORMAT",
    ),
    Option(
        "reload",
        "--reload",
        _parse_bool,
        "development only: restart the workers when a file of the project changes (default off)",
        bare=True,
    ),
    Option(
        "log_level",
        "--log-level",
        _parse_log_level,
        "level of hybrid's own log (default info)",
        "LEVEL",
    ),
)

_OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Everything the master and its workers need to know. Immutable; cheap to build."""

    ports: tuple[int, ...] = (8001,)
    host: str = "127.0.0.1"
    settings: str | None = None
    pythonpath: str | None = None
    graceful_timeout: float = 30.0
    max_body_size: int = 10 * 1024 * 1024
    timeout: float = 30.0
    request_timeout: float = 0.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_rss: int = 0
    max_commands: int = 16
    keepalive_timeout: float = 75.0
    body_timeout: float = 60.0
    max_header_size: int = 64 * 1024
    xheaders: bool = True
    forwarded_allow_ips: tuple[str, ...] = ()
    nginx: int | None = None
    nginx_host: str | None = None
    nginx_access_log: str | None = None
    upstream: tuple[tuple[str, tuple[int, ...]], ...] = ()
    certfile: str | None = None
    keyfile: str | None = None
    redirect_port: int | None = None
    server_name: str = "_"
    static: tuple[tuple[str, str], ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    proxy_read_timeout: float = 0.0
    metrics_port: int | None = None
    pidfile: str | None = None
    db_threads: int | None = None
    request_signals: bool = True
    native_mysql: bool = True
    gc_threshold: int = 50_000
    groups: str | None = None
    celery: tuple[str, ...] = ()
    celery_beat: bool = False
    celery_app: str | None = None
    group_queue: int = 100
    group_max_message: int = 256 * 1024
    loop: str = "auto"
    name: str | None = None
    access_log: str = "-"
    access_log_format: str | None = None
    reload: bool = False
    log_level: str = "info"
    #: Where each value came from, for messages: ``{"ports": "--ports", ...}``.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_sources(
        cls,
        cli: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
        django_options: Mapping[str, object] | None = None,
    ) -> Config:
        """Merge command line > environment > ``settings.HYBRID`` > defaults, and check.

        ``cli`` maps option names to values, ``None`` meaning "not given". Raises
        :class:`ConfigError` whose message names where the bad value came from.
        """
        cli = cli or {}
        environ = os.environ if environ is None else environ
        django_options = django_options or {}
        for key in django_options:
            option = _OPTIONS_BY_NAME.get(key)
            if option is None or not option.in_settings:
                known = ", ".join(o.name for o in OPTIONS if o.in_settings)
                raise ConfigError(
                    f"unknown option {key!r} in settings.HYBRID; known options: {known}",
                    option=f"settings.HYBRID[{key!r}]",
                    value=django_options[key],
                )
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for option in OPTIONS:
            for where, raw in (
                (option.flag, cli.get(option.name)),
                (option.env, environ.get(option.env)),
                (f"settings.HYBRID[{option.name!r}]", django_options.get(option.name)),
            ):
                if raw is None:
                    continue
                try:
                    values[option.name] = option.parse(raw)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}", option=where, value=raw) from None
                except (TypeError, ValueError) as exc:
                    shown = " ".join(map(repr, raw)) if isinstance(raw, list) else repr(raw)
                    raise ConfigError(
                        f"{where}: bad value {shown}: {exc}", option=where, value=raw
                    ) from None
                sources[option.name] = where
                break
        nginx = values.get("nginx")
        same_address = values.get("nginx_host") in (None, values.get("host", cls.host))
        if nginx is not None and same_address and nginx in values.get("ports", cls.ports):
            where = sources["nginx"]
            raise ConfigError(
                f"{where}: port {nginx} is also one of --ports: give nginx a port of its own",
                option=where,
                value=nginx,
            )
        return cls(**values, sources=sources)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (tests and the management command use it)."""
        return dataclasses.replace(self, **changes)

    @property
    def db_thread_count(self) -> int:
        """Database threads per worker: ``db_threads``, or a share of the connection budget.

        Each thread keeps its own connection (``CONN_MAX_AGE``) and a request holds one
        thread for its lifetime, so a worker opens at most ``threads`` connections per
        database alias. The budget is ``threads x workers x 2 <= max_connections``; the
        factor 2 is headroom for a rolling reload, where a worker being replaced still holds
        its connections while its successor opens new ones.
        With ``native_mysql`` (the default), a MySQL alias also gets a lazily opened
        aiomysql pool of at most ``threads`` connections per worker
        (:func:`hybrid.db.setup`): up to ``2 x threads`` per worker for that alias. The same
        product then holds them, the 2 being lanes + pool, and a rolling reload (one port
        at a time) adds one worker's ``2 x threads``: at most ``threads x (workers + 1) x
        2`` connections, 112 or fewer with the defaults below, within MySQL's and MariaDB's
        default ``max_connections`` of 151.
        Without ``db_threads``, :data:`DB_CONNECTION_BUDGET` (PostgreSQL's default
        ``max_connections``; MySQL/MariaDB allow 151) is divided that way, capped at
        :data:`MAX_DEFAULT_DB_THREADS`: 8 threads for up to 6 workers, 4 for 12, 1 for 50.
        """
        if self.db_threads:
            return self.db_threads
        share = DB_CONNECTION_BUDGET // (2 * max(1, len(self.ports)))
        return max(1, min(MAX_DEFAULT_DB_THREADS, share))

    @property
    def settings_module(self) -> str | None:
        """The Django settings module: ``settings`` or ``$DJANGO_SETTINGS_MODULE``."""
        return self.settings or os.environ.get("DJANGO_SETTINGS_MODULE") or None

    def load(self) -> None:
        """Side effects, in order: extend ``sys.path``, export ``DJANGO_SETTINGS_MODULE``
        and import the settings module (not ``django.setup()``: that is each worker's job).

        Raises :class:`ConfigError` when no settings module is named and
        :class:`AppLoadError` when it cannot be imported. Safe to call twice.
        """
        for path in (os.getcwd(), self.pythonpath):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        if self.settings:
            os.environ["DJANGO_SETTINGS_MODULE"] = self.settings
        from django.conf import settings as django_settings

        if django_settings.configured:
            return
        module = self.settings_module
        if module is None:
            raise ConfigError(
                "no Django settings module: pass --settings mysite.settings "
                "or set DJANGO_SETTINGS_MODULE",
                option="--settings",
            )
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                raise AppLoadError(
                    f"settings module {module!r} not found (No module named {exc.name!r}): "
                    + _settings_hint(module, os.getcwd()),
                    target=module,
                ) from None
            raise AppLoadError(
                f"settings module {module!r} failed to import: {describe_exception(exc)}",
                target=module,
            ) from None
        except Exception as exc:
            raise AppLoadError(
                f"settings module {module!r} failed to import: {describe_exception(exc)}",
                target=module,
            ) from None
        try:
            django_settings.INSTALLED_APPS  # noqa: B018  # builds Settings; no apps, no DB
        except Exception as exc:
            raise AppLoadError(
                f"settings module {module!r} is not usable: {describe_exception(exc)}",
                target=module,
            ) from None
        # The installed Django, Tornado and aiomysql still have every internal hybrid
        # patches or reads: fail here, in one line, rather than mid-request.
        from hybrid._compat import check as check_internals

        check_internals()


def _settings_hint(module: str, cwd: str) -> str:
    """How to fix a settings module that is not importable from ``cwd``.

    ``django-admin startproject mysite`` leaves the user one folder above ``manage.py``;
    from there ``mysite.settings`` is ``mysite/mysite/settings.py``. Say so by name.
    """
    parts = module.split(".")
    for project in sorted(Path(cwd).iterdir()) if os.path.isdir(cwd) else ():
        candidate = project.joinpath(*parts[:-1], parts[-1] + ".py")
        if (project / "manage.py").is_file() and candidate.is_file():
            return (
                f"run it from {project}, where manage.py is (cd {project.name}), "
                f"or pass --pythonpath {project.name}"
            )
    return "check --settings/DJANGO_SETTINGS_MODULE, and --pythonpath or the current directory"


def build_config(
    cli: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Build the final ``Config`` the way the CLI and ``runhybrid`` do.

    Command-line and environment values are checked first (so a bad ``--ports`` is
    reported even when the settings module is broken), then the settings module is
    imported and ``settings.HYBRID`` merged under them.
    """
    early = Config.from_sources(cli, environ)
    early.load()
    from django.conf import settings as django_settings

    hybrid_options = getattr(django_settings, "HYBRID", None) or {}
    if not isinstance(hybrid_options, Mapping):
        raise ConfigError(
            f"settings.HYBRID must be a dict of options, not {type(hybrid_options).__name__}",
            option="settings.HYBRID",
            value=hybrid_options,
        )
    return Config.from_sources(cli, environ, hybrid_options)
