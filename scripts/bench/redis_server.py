"""The private Redis server the groups and tasks benchmarks run against (``scripts/redis``),
and the list of its client connections that shows what each process holds open."""

from __future__ import annotations

import subprocess

from .paths import REPO

REDIS_SCRIPT = REPO / "scripts" / "redis"


def start_redis(folder: str) -> dict[str, str]:
    """Start a server whose files live in ``folder``; its ``KEY=value`` lines (the URL)."""
    done = subprocess.run(
        [str(REDIS_SCRIPT), "start", folder], capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)


def stop_redis(folder: str) -> None:
    subprocess.run([str(REDIS_SCRIPT), "stop", folder], capture_output=True, check=False)


def client_list(url: str, probe_name: str) -> list[dict[str, str]]:
    """``CLIENT LIST`` as dicts of strings, read over a connection named ``probe_name``
    (so that the count can leave the probe out)."""
    import redis

    client = redis.Redis.from_url(url, client_name=probe_name, socket_timeout=5)
    try:
        return [{k: str(v) for k, v in entry.items()} for entry in client.client_list()]
    finally:
        client.close()
