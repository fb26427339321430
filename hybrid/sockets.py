"""Listening sockets, bound by the master before any worker exists."""

from __future__ import annotations

import errno
import socket

from hybrid.config import Config
from hybrid.errors import BindError

__all__ = ["bind_metrics_ports", "bind_ports", "close_sockets"]


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


def bind_metrics_ports(config: Config) -> dict[int, list[socket.socket]]:
    """``{worker port: sockets}`` for ``--metrics-port``: worker ``i`` gets BASE+i on
    127.0.0.1 (metrics are never public). Empty when metrics are off."""
    if config.metrics_port is None:
        return {}
    bound: dict[int, list[socket.socket]] = {}
    try:
        for index, port in enumerate(config.ports):
            metrics_port = config.metrics_port + index
            if metrics_port > 65535 or metrics_port in config.ports:
                why = "out of range" if metrics_port > 65535 else "one of --ports"
                raise BindError(
                    f"--metrics-port {config.metrics_port} gives worker {port} the port "
                    f"{metrics_port}, which is {why}; choose another base port",
                    host="127.0.0.1",
                    port=metrics_port,
                    errno=None,
                )
            try:
                bound[port] = _bind("127.0.0.1", metrics_port)
            except OSError as exc:
                raise BindError(
                    "--metrics-port: " + _bind_error_message(exc, "127.0.0.1", metrics_port),
                    host="127.0.0.1",
                    port=metrics_port,
                    errno=exc.errno,
                ) from None
    except BaseException:
        close_sockets(bound)
        raise
    return bound


def close_sockets(bound: dict[int, list[socket.socket]]) -> None:
    for sockets in bound.values():
        for sock in sockets:
            sock.close()
