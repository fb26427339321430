"""N idle keep-alive connections to one server (the target: a worker holding 10,000 of them).

    python -m scripts.bench.idle_conns PORT [--path /h/ping] [--connections 10000]
                                           [--hold 3]

Opens the connections (at most ``--parallel`` connecting at once), sends one
``GET PATH HTTP/1.1`` on each and reads its response, then keeps every connection open
and idle for ``--hold`` seconds and counts how many the server still holds. Raises this
process's ``RLIMIT_NOFILE`` soft limit to the hard one. ``scripts/bench/run`` imports
:func:`open_idle` and measures the server's RSS while the connections are held.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

from .harness import raise_nofile


@dataclass
class Idle:
    """Connections that got a 2xx answer and are held open, and what went wrong."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.StreamReader] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def still_open(self) -> int:
        """Connections the server has not closed (no EOF seen)."""
        return sum(1 for reader in self.readers if not reader.at_eof())

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self.writers), return_exceptions=True)
        self.writers.clear()
        self.readers.clear()


async def _one(host: str, port: int, request: bytes, idle: Idle) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 60)
        if not 200 <= status < 300:
            raise RuntimeError(f"status {status}")
        if headers.get("connection", "").lower() == "close":
            raise RuntimeError("server closes the connection")
    except BaseException:
        writer.close()
        raise
    idle.writers.append(writer)
    idle.readers.append(reader)


async def open_idle(host: str, port: int, path: str, connections: int, parallel: int = 256) -> Idle:
    """Open ``connections`` connections, one request each, and keep them open."""
    raise_nofile(connections + 1024)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    idle = Idle()
    gate = asyncio.Semaphore(parallel)
    started = time.monotonic()

    async def guarded() -> None:
        async with gate:
            try:
                await _one(host, port, request, idle)
            except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as error:
                name = type(error).__name__ + (
                    f": {error}" if isinstance(error, RuntimeError) else ""
                )
                idle.errors[name] = idle.errors.get(name, 0) + 1
            except TimeoutError:
                idle.errors["timeout"] = idle.errors.get("timeout", 0) + 1

    await asyncio.gather(*(guarded() for _ in range(connections)))
    idle.seconds = time.monotonic() - started
    return idle


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/h/ping")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=256)
    parser.add_argument("--hold", type=float, default=3.0)
    options = parser.parse_args()
    idle = await open_idle(
        options.host, options.port, options.path, options.connections, options.parallel
    )
    print(f"opened {len(idle.writers)} in {idle.seconds:.1f} s; errors {idle.errors}")
    await asyncio.sleep(options.hold)
    print(f"still open after {options.hold:.0f} s: {idle.still_open()}")
    await idle.close()


if __name__ == "__main__":
    asyncio.run(main())
