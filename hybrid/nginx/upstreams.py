"""The workers nginx balances over: this host's ``--ports`` on ``--host``, then every
``--upstream HOST:PORTS`` of the other hosts, in one ``upstream`` block.

:func:`servers` is pure (the renderer uses it); :func:`check_upstreams` also resolves the
host names, so that a typo is one line before nginx runs, not nginx's ``host not found in
upstream`` at start.
"""

from __future__ import annotations

import ipaddress
import socket

from hybrid.config import Config
from hybrid.errors import ConfigError

__all__ = ["check_upstreams", "servers"]

_WILDCARDS = ("0.0.0.0", "::")


def _where(config: Config) -> str:
    return config.sources.get("upstream", "--upstream")


def _normal(host: str) -> str:
    """``host`` as compared for duplicates: an address in its canonical form, a name in
    lower case without a trailing dot."""
    host = host.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def _local_host(host: str) -> str:
    """This host's ``--host`` as nginx connects to it: a wildcard becomes loopback."""
    host = _normal(host)
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def servers(config: Config) -> list[tuple[str, int]]:
    """Every ``(host, port)`` nginx balances over: ``config.ports`` on ``config.host``
    first, then each ``--upstream`` host's ports in the order given. Raises
    :class:`ConfigError` for a server listed twice or a wildcard upstream address."""
    where = _where(config)
    local = _local_host(config.host)
    result = [(local, port) for port in config.ports]
    seen = {(local, port): f"--ports on --host {config.host}" for port in config.ports}
    for host, ports in config.upstream:
        normal = _normal(host)
        if normal in _WILDCARDS:
            raise ConfigError(
                f"{where}: {host} is a wildcard, not an address nginx can connect to: give "
                "the other host's private address",
                option=where,
                value=host,
            )
        for port in ports:
            key = (normal, port)
            if key in seen:
                shown = f"[{normal}]:{port}" if ":" in normal else f"{normal}:{port}"
                raise ConfigError(
                    f"{where}: {shown} is listed twice (already in {seen[key]}): "
                    "give every worker once, and only other hosts' workers to --upstream",
                    option=where,
                    value=shown,
                )
            seen[key] = f"{where} {host}"
            result.append((normal, port))
    return result


def check_upstreams(config: Config) -> None:
    """:func:`servers`, and every ``--upstream`` host name resolved as nginx will resolve
    it (once, when it starts or reloads), so that a name and an address of the same worker
    are caught as well as the same text twice. Raises :class:`ConfigError` in one line."""
    listed = servers(config)
    where = _where(config)
    reached: dict[tuple[str, int], str] = {}  # (address, port) -> the entry that reaches it
    for host, port in listed:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for address in _addresses(host, port, where):
            first = reached.setdefault((address, port), shown)
            if first != shown:
                raise ConfigError(
                    f"{where}: {shown} and {first} are the same worker (both reach "
                    f"{address}:{port}): give every worker once",
                    option=where,
                    value=shown,
                )


def _addresses(host: str, port: int, where: str) -> set[str]:
    """The addresses nginx connects to for ``host``: itself, or what the name resolves to."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"{where}: host {host!r} cannot be resolved ({reason}): give its address, or "
            "a name this host resolves (/etc/hosts or DNS)",
            option=where,
            value=host,
        ) from None
    return {str(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in found}
