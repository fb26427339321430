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
from collections.abc import Sequence
from typing import Any, NoReturn

from hybrid import __version__
from hybrid.arbiter import serve
from hybrid.config import OPTIONS, Config, Option, build_config, parse_positive_float
from hybrid.control import (
    DEFAULT_WAIT,
    format_status,
    metrics_urls,
    read_status,
    signal_and_wait,
)
from hybrid.errors import ConfigError, ControlError, HybridError
from hybrid.eventloop import check as check_loop
from hybrid.groups.layer import check as check_groups
from hybrid.log import configure_logging
from hybrid.sidecars import check as check_sidecars
from hybrid.tls import check as check_tls

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
    if option.bare:
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            action="store_const",
            const=True,
            help=f"{option.help} [env {option.env}]",
        )
        return
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
        # uvloop asked for and not installed: one line now, not a worker that cannot boot.
        check_loop(config.loop, config.sources)
        check_groups(config)
        check_sidecars(config)
        check_tls(config)
        _check_nginx_options(config)
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


def _check_nginx_options(config: Config) -> None:
    """``--upstream`` and ``--redirect-port`` are nginx's: without ``--nginx`` they would do
    nothing; with it, the other hosts must resolve and the redirect port be free of the
    workers'. Raises :class:`ConfigError`."""
    from hybrid.nginx.upstreams import check_upstreams

    if config.nginx is None:
        for name, value in (("upstream", config.upstream), ("redirect_port", config.redirect_port)):
            if value:
                where = config.sources.get(name, "--" + name.replace("_", "-"))
                raise ConfigError(
                    f"{where} needs --nginx PORT: it is nginx's (print a config for an nginx "
                    "of your own with hybrid nginx)",
                    option=where,
                    value=value,
                )
        return
    check_upstreams(config)
    same_address = config.nginx_host in (None, config.host)
    if same_address and config.redirect_port in config.ports:
        where = config.sources.get("redirect_port", "--redirect-port")
        raise ConfigError(
            f"{where}: port {config.redirect_port} is also one of --ports: give the redirect "
            "a port of its own",
            option=where,
            value=config.redirect_port,
        )


def print_nginx_config(args: argparse.Namespace) -> int:
    """``hybrid nginx``: render the config from the same ``Config`` the workers use."""
    from hybrid.nginx import DEFAULT_LISTEN_PORT, NginxError, parse_listen, render_config
    from hybrid.nginx.binary import http2_mode
    from hybrid.nginx.render import Http2
    from hybrid.nginx.upstreams import check_upstreams

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
        check_tls(config)
        check_upstreams(config)
        http2: Http2 = ""
        if config.certfile:
            try:
                http2 = http2_mode()  # what the nginx here supports; none here: plain TLS
            except NginxError:
                pass
        text = render_config(
            config,
            prefix=os.path.abspath(args.prefix),
            listen_host=host,
            listen_port=port,
            access_log=config.nginx_access_log,
            http2=http2,
        )
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except HybridError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def print_metrics(pidfile: str) -> int:
    """``hybrid metrics``: every worker's metrics as one exposition, labelled by port."""
    from hybrid.metrics import aggregate

    try:
        urls = metrics_urls(read_status(pidfile))
    except ControlError as exc:
        return _fail("hybrid metrics", exc)
    sys.stdout.write(aggregate(urls).decode())
    return 0


def print_status(pidfile: str, *, as_json: bool) -> int:
    """``hybrid status``: read the status file the master keeps next to its pidfile."""
    try:
        status = read_status(pidfile)
    except ControlError as exc:
        return _fail("hybrid status", exc)
    print(json.dumps(status, indent=2) if as_json else format_status(status))
    return 0


def reload_or_stop(pidfile: str, signum: int, prog: str, wait: float | None) -> int:
    """``hybrid reload`` / ``hybrid stop``: signal the master, and with ``--wait`` report
    how long the reload or the stop took (see :func:`hybrid.control.signal_and_wait`)."""
    try:
        took = signal_and_wait(pidfile, signum, wait)
    except ControlError as exc:
        return _fail(prog, exc)
    if took is not None:
        print(f"{'stopped' if signum == signal.SIGTERM else 'reloaded'} in {took:.1f} s")
    return 0


def _fail(prog: str, exc: HybridError) -> int:
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 1


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
        "upstream",
        "certfile",
        "keyfile",
        "redirect_port",
        "server_name",
        "static",
        "max_body_size",
        "trusted_proxies",
        "timeout",
        "request_timeout",
        "proxy_read_timeout",
        "nginx_access_log",
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
        (
            "stop",
            "tell a running master to stop gracefully (SIGTERM)",
            signal.SIGTERM,
            "the master has exited",
        ),
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


def _wait_seconds(text: str) -> float:
    try:
        return parse_positive_float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


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
        return reload_or_stop(args.pidfile, args.signum, f"hybrid {args.command}", args.wait)
    parser.print_help(sys.stderr)
    return 2
