"""The ``hybrid`` command line. Argument parsing only: it builds a ``Config`` and calls
into the library. Every failure is one line on stderr and a non-zero exit:

* 2: a usage error (bad option value, unknown option);
* 1: the project or the server could not start (unknown settings module, port in use,
  a worker that cannot boot).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from hybrid import __version__
from hybrid.arbiter import serve
from hybrid.config import OPTIONS, Config, Option, build_config, parse_positive_float
from hybrid.errors import ConfigError, HybridError
from hybrid.log import configure_logging
from hybrid.procutil import is_running, started_after

__all__ = ["add_serve_arguments", "main", "run_serve"]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_serve_arguments(parser: argparse.ArgumentParser, *, django_builtins: bool = True) -> None:
    """Add the ``serve`` options to ``parser``; shared with the ``runhybrid`` command,
    which passes ``django_builtins=False`` because Django already defines ``--settings``
    and ``--pythonpath`` on every management command."""
    for option in OPTIONS:
        if option.django_builtin and not django_builtins:
            continue
        _add_option(parser, option)


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    parser.add_argument(
        option.flag,
        dest=option.name,
        default=None,
        metavar=option.metavar,
        action="append" if option.repeat else "store",
        help=f"{option.help} [env {option.env}]",
    )


def _add_pidfile_command(
    commands: Any, name: str, help: str, **defaults: object
) -> argparse.ArgumentParser:
    """A subcommand that talks to a running master through its ``--pidfile``."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help)
    sub.add_argument(
        "--pidfile",
        required=True,
        metavar="FILE",
        help="the file given to `hybrid serve --pidfile`",
    )
    sub.set_defaults(command_parser=sub, **defaults)
    return sub


def run_serve(cli_values: dict[str, object], prog: str) -> int:
    """Build the ``Config`` and run the master; report failures as one line on stderr."""
    try:
        config = build_config(cli_values)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except HybridError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log_level)
    try:
        return serve(config)
    except HybridError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def print_nginx_config(args: argparse.Namespace) -> int:
    """``hybrid nginx``: render the config from the same ``Config`` the workers use."""
    from hybrid.nginx import DEFAULT_LISTEN_PORT, parse_listen, render_config

    prog = "hybrid nginx"
    cli = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    try:
        if args.settings or os.environ.get("DJANGO_SETTINGS_MODULE"):
            config = build_config(cli)  # settings.HYBRID may hold ports and body size
        else:
            config = Config.from_sources(cli)
        host, port = parse_listen(
            args.listen or str(config.nginx or DEFAULT_LISTEN_PORT),
            default_host=config.nginx_host or "127.0.0.1",
        )
        text = render_config(
            config, prefix=os.path.abspath(args.prefix), listen_host=host, listen_port=port
        )
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except HybridError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def read_status(pidfile: str, prog: str) -> dict[str, Any] | None:
    """The running master's status file, or None after printing one line on stderr."""
    from hybrid.arbiter import status_path

    path = status_path(pidfile)
    try:
        with open(path) as f:
            status = json.load(f)
        os.kill(int(status["master"]), 0)
    except FileNotFoundError:
        print(
            f"{prog}: error: no status file {path!r}: is `hybrid serve --pidfile {pidfile}` "
            "running?",
            file=sys.stderr,
        )
        return None
    except ProcessLookupError:
        print(
            f"{prog}: error: master {status['master']} is not running (stale {path!r})",
            file=sys.stderr,
        )
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{prog}: error: cannot read {path!r}: {exc}", file=sys.stderr)
        return None
    return dict(status)


def print_metrics(pidfile: str) -> int:
    """``hybrid metrics``: every worker's metrics as one exposition, labelled by port."""
    from hybrid.metrics import aggregate

    status = read_status(pidfile, "hybrid metrics")
    if status is None:
        return 1
    urls = {w["port"]: w["metrics"] for w in status["workers"] if w.get("metrics")}
    if not urls:
        print(
            "hybrid metrics: error: the workers serve no metrics: start hybrid serve with "
            "--metrics-port PORT",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(aggregate(urls).decode())
    return 0


def print_status(pidfile: str, *, as_json: bool) -> int:
    """``hybrid status``: read the status file the master keeps next to its pidfile."""
    status = read_status(pidfile, "hybrid status")
    if status is None:
        return 1
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    now = time.time()
    nginx = status.get("nginx")
    print(
        f"master {status['master']}, up {_duration(now - status['started'])}"
        + (f", nginx {nginx['pid']} on port {nginx['port']}" if nginx else "")
    )
    rows = [("PORT", "PID", "STATE", "UPTIME", "REQUESTS", "RSS MB", "RESTARTS")]
    for w in status["workers"]:
        rss = "-" if w["rss_mb"] is None else f"{w['rss_mb']:.0f}"
        rows.append(
            (
                str(w["port"]),
                str(w["pid"]),
                w["state"],
                _duration(now - w["started"]),
                str(w["requests"]),
                rss,
                str(w["restarts"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hybrid",
        description="Serve a Django project from Tornado workers, one per port.",
    )
    parser.add_argument("--version", action="version", version=f"hybrid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve_parser = commands.add_parser(
        "serve",
        help="run the master and one worker per port, in the foreground",
        description="Bind every port, then run one Tornado worker per port. "
        "Ctrl-C or SIGTERM stops them all.",
    )
    add_serve_arguments(serve_parser)
    parser.set_defaults(command_parser=parser)
    serve_parser.set_defaults(command_parser=serve_parser)
    nginx_parser = commands.add_parser(
        "nginx",
        help="print an nginx.conf for the workers (serve --nginx PORT runs nginx itself)",
        description="Print a complete nginx.conf that balances over the workers' ports.",
    )
    by_name = {o.name: o for o in OPTIONS}
    for name in (
        "ports",
        "host",
        "server_name",
        "static",
        "max_body_size",
        "settings",
        "pythonpath",
    ):
        _add_option(nginx_parser, by_name[name])
    nginx_parser.add_argument(
        "--listen",
        default=None,
        metavar="[ADDR:]PORT",
        help="where nginx listens (default 127.0.0.1:8000)",
    )
    nginx_parser.add_argument(
        "--prefix",
        default=".",
        metavar="DIR",
        help="nginx's prefix directory: pid, logs, temporary files (default: here)",
    )
    nginx_parser.set_defaults(command_parser=nginx_parser)
    status_parser = _add_pidfile_command(
        commands, "status", "show a running master's workers: port, pid, uptime, requests, RSS"
    )
    status_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_pidfile_command(
        commands, "metrics", "print every worker's Prometheus metrics, merged with a port label"
    )
    for name, help, signum, until in (
        (
            "reload",
            "tell a running master to replace its workers one port at a time (SIGHUP)",
            signal.SIGHUP,
            "every port runs a new worker and the old ones are gone",
        ),
        ("stop", "tell a running master to stop gracefully (SIGTERM)", signal.SIGTERM,
         "the master has exited"),
    ):
        sub = _add_pidfile_command(commands, name, help, signum=signum)
        sub.add_argument(
            "--wait",
            nargs="?",
            const=DEFAULT_WAIT,
            default=None,
            type=_wait_seconds,
            metavar="SECONDS",
            help=f"return only once {until}, or fail after SECONDS (default {DEFAULT_WAIT:g})",
        )
    return parser


#: How long ``reload --wait`` / ``stop --wait`` wait by default (boots and drains included).
DEFAULT_WAIT = 120.0


def _wait_seconds(text: str) -> float:
    try:
        return parse_positive_float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def signal_master(pidfile: str, signum: int, prog: str) -> int:
    """Send ``signum`` to the master whose pid is in ``pidfile``."""
    try:
        with open(pidfile) as f:
            text = f.read().strip()
    except OSError as exc:
        print(
            f"{prog}: error: cannot read pidfile {pidfile!r} ({exc.strerror}): is "
            f"`hybrid serve --pidfile {pidfile}` running?",
            file=sys.stderr,
        )
        return 1
    if not text.isdigit():
        print(f"{prog}: error: pidfile {pidfile!r} does not hold a pid", file=sys.stderr)
        return 1
    if started_after(int(text), pidfile):
        print(
            f"{prog}: error: process {text} started after {pidfile!r} was written, so it is "
            "not the master that wrote it (stale pidfile: was hybrid serve killed?)",
            file=sys.stderr,
        )
        return 1
    try:
        os.kill(int(text), signum)
    except ProcessLookupError:
        print(
            f"{prog}: error: no process {text} (stale pidfile {pidfile!r}); "
            "is hybrid serve running?",
            file=sys.stderr,
        )
        return 1
    except PermissionError:
        print(
            f"{prog}: error: not allowed to signal process {text}; run as its user", file=sys.stderr
        )
        return 1
    return 0


def signal_and_wait(pidfile: str, signum: int, prog: str, wait: float | None) -> int:
    """``hybrid reload`` / ``hybrid stop``: signal the master; with ``wait`` seconds, return
    once the master has exited (stop), or once the reload is done: every port served by a
    worker started after the signal and every old worker gone (drained, so no keep-alive
    connection can reach old code). Fails with one line naming what is pending, at once
    when the master abandons the reload."""
    if wait is None:
        return signal_master(pidfile, signum, prog)
    before = read_status(pidfile, prog)
    if before is None:
        return 1
    master = int(before["master"])
    old = {int(w["pid"]) for w in before["workers"]}
    reloads = int((before.get("reload") or {}).get("count", 0))
    started = time.monotonic()
    code = signal_master(pidfile, signum, prog)
    if code:
        return code
    deadline = started + wait
    pending = "the master has not started the reload"
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not is_running(master):
            if signum == signal.SIGTERM:
                print(f"stopped in {time.monotonic() - started:.1f} s")
                return 0
            print(f"{prog}: error: the master {master} exited during the reload", file=sys.stderr)
            return 1
        if signum != signal.SIGHUP:
            continue
        progress = _reload_progress(pidfile, reloads, old)
        if progress is None:
            continue
        pending, abandoned = progress
        if abandoned:
            print(f"{prog}: error: reload abandoned: {abandoned}; the old workers keep "
                  "serving (see the master's log)", file=sys.stderr)
            return 1
        if not pending:
            print(f"reloaded in {time.monotonic() - started:.1f} s")
            return 0
    if signum == signal.SIGTERM:
        pending = f"master {master} still running"
    print(f"{prog}: error: not done after {wait:g} s ({pending}); see its log", file=sys.stderr)
    return 1


def _reload_progress(pidfile: str, reloads: int, old: set[int]) -> tuple[str, str | None] | None:
    """``(what is pending, "" when done; why it was abandoned or None)`` for the reload
    after ``reloads``; None while the status file cannot be read (it is being replaced)."""
    from hybrid.arbiter import status_path

    try:
        with open(status_path(pidfile)) as f:
            status = json.load(f)
        workers = status["workers"]
        reload = status["reload"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if int(reload["count"]) <= reloads:
        return "the master has not started the reload", None
    if reload["abandoned"]:
        return "", str(reload["abandoned"])
    ports = {int(w["port"]) for w in workers}
    renewed = {int(w["port"]) for w in workers if w["state"] == "serving" and w["pid"] not in old}
    waiting = sorted(ports - renewed)
    draining = sorted(int(w["pid"]) for w in workers if w["pid"] in old)
    if waiting:
        return "ports still on old workers: " + ", ".join(map(str, waiting)), None
    if draining:
        return "old workers still draining: " + ", ".join(map(str, draining)), None
    return "", None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser, so the hint names its --help
        args.command_parser.error("unrecognized arguments: " + " ".join(extra))
    if args.command == "serve":
        return run_serve({o.name: getattr(args, o.name) for o in OPTIONS}, "hybrid serve")
    if args.command == "nginx":
        return print_nginx_config(args)
    if args.command == "status":
        return print_status(args.pidfile, as_json=args.json)
    if args.command == "metrics":
        return print_metrics(args.pidfile)
    if args.command in ("reload", "stop"):
        return signal_and_wait(args.pidfile, args.signum, f"hybrid {args.command}", args.wait)
    parser.print_help(sys.stderr)
    return 2
