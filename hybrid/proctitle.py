"""Process titles, as ``ps`` and ``top`` show them (``pip install 'hybrid[proctitle]'``).

* the master: ``hybrid: master [NAME] ports 8001-8004``;
* a worker: ``hybrid: worker [NAME] :8001``, then ``hybrid: worker [NAME] :8001 (1234
  requests)``, updated at each heartbeat.

``NAME`` is ``--name``, else the settings module's top package (``mysite.settings`` ->
``mysite``). The Celery processes the master runs set their own titles. Without
setproctitle the titles stay Python's command line: one debug line says so, nothing fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hybrid.config import Config
from hybrid.log import gen_log

__all__ = ["format_ports", "master_title", "process_name", "set_title", "worker_title"]

_setter: Callable[[str], None] | None = None
_looked_up = False


def process_name(config: Config) -> str:
    """``--name``, else the settings module's top package, else ``hybrid``."""
    if config.name:
        return config.name
    return (config.settings_module or "").partition(".")[0] or "hybrid"


def format_ports(ports: Sequence[int]) -> str:
    """``8001-8004``, ``8001,8003``: consecutive ports as ranges, as ``--ports`` takes them."""
    parts: list[str] = []
    index = 0
    while index < len(ports):
        end = index
        while end + 1 < len(ports) and ports[end + 1] == ports[end] + 1:
            end += 1
        first, last = ports[index], ports[end]
        parts.append(str(first) if first == last else f"{first}-{last}")
        index = end + 1
    return ",".join(parts)


def master_title(config: Config) -> str:
    return f"hybrid: master [{process_name(config)}] ports {format_ports(config.ports)}"


def worker_title(config: Config, port: int, served: int | None = None) -> str:
    title = f"hybrid: worker [{process_name(config)}] :{port}"
    return title if served is None else f"{title} ({served} requests)"


def set_title(title: str) -> None:
    """Set this process's title; a no-op (logged once at debug) without setproctitle."""
    global _setter, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            from setproctitle import setproctitle
        except ImportError:
            gen_log.debug(
                "setproctitle is not installed: process titles stay the command line "
                "(pip install 'hybrid[proctitle]')"
            )
        else:
            _setter = setproctitle
    if _setter is not None:
        _setter(title)
