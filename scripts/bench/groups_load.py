"""The load generator of the groups benchmark: one process of many WebSocket clients.

    python -m scripts.bench.groups_load CONFIG.json

``groups.py`` starts one or a few of these (each with its share of the sockets) and talks
to them over stdin/stdout: each connects its sockets (a bare asyncio protocol per socket:
the handshake by hand, unmasked server frames parsed in place, no WebSocket library in the
way, so that the generator's own CPU per message stays small), waits until every socket
says it joined its room, prints ``ready J F`` (joined, failed), reads ``go T0`` (a
``time.time()`` value), and from T0 on sends, from each sender socket, one text frame
``{"send": ..., "t": <time.time() at send>}`` per interval, open-loop (a late send goes out at
once, stamped with its actual send time), the rooms' sends staggered evenly over the
interval. Every receipt of a chat
message is stamped on arrival: its latency goes into a 1% histogram when it was sent
within the window [T0 + warmup, T0 + warmup + seconds); receipts that arrive within the
window are counted apart (what the servers' CPU over the window was spent on). Sending
stops at the window's end; after ``drain`` seconds more it prints ``result {json}`` and
exits. The sender and the receivers share the machine's clock (``time.time()``), so the
latency is from the send call to the receiving process reading the frame: it includes the
generator's own delays when it is short of CPU (its CPU time is reported with the result).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import sys
import time
from typing import Any

from .groups_stats import BUCKET_BASE_MS, BUCKET_GROWTH

_LOG_GROWTH = math.log(BUCKET_GROWTH)


class Stats:
    """Counters shared by the sockets of this process."""

    def __init__(self, window_start: float, window_end: float) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.histogram: dict[int, int] = {}
        self.in_window = 0  # receipts that arrived within the window
        self.sent: dict[int, int] = {}  # room -> messages sent within the window
        self.closed: dict[str, int] = {}  # close code (or "eof") -> sockets
        self.errors = 0

    def receipt(self, sent_at: float) -> None:
        now = time.time()
        if self.window_start <= now < self.window_end:
            self.in_window += 1
        if self.window_start <= sent_at < self.window_end:
            latency = (now - sent_at) * 1000.0
            index = (
                0
                if latency <= BUCKET_BASE_MS
                else int(math.log(latency / BUCKET_BASE_MS) / _LOG_GROWTH)
            )
            histogram = self.histogram
            histogram[index] = histogram.get(index, 0) + 1


class Client(asyncio.Protocol):
    """One WebSocket client: the handshake, then server frames parsed as they come."""

    def __init__(self, host: str, path: str, room: int, stats: Stats) -> None:
        self.host = host
        self.path = path
        self.room = room
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                status = bytes(buffer[: buffer.find(b"\r\n")]).decode(errors="replace")
                self.fail(f"handshake: {status}")
                return
            del buffer[: end + 4]
            self.upgraded = True
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, length = buffer[position], buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            if opcode == 1:
                self.text(bytes(buffer[start:end]))
            elif opcode == 8:
                code = int.from_bytes(buffer[start : start + 2], "big") if length >= 2 else 1005
                self.stats.closed[str(code)] = self.stats.closed.get(str(code), 0) + 1
                self.close()
                return
            elif opcode == 9:
                self.send_frame(0xA, bytes(buffer[start:end]))
            position = end
        if position:
            del buffer[:position]

    def text(self, payload: bytes) -> None:
        message = json.loads(payload)
        sent_at = message.get("t")
        if sent_at is not None:
            self.stats.receipt(sent_at)
        elif "joined" in message and not self.joined.done():
            self.joined.set_result(None)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """A masked frame (clients must mask) of a payload under 64 KiB."""
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        length = len(payload)
        head = bytes((0x80 | opcode, 0x80 | length)) if length < 126 else None
        if head is None:
            head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            length, "big"
        )
        self.transport.write(head + mask + masked)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def fail(self, why: str) -> None:
        self.stats.errors += 1
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(why))
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(f"closed before joining: {exc}"))
        elif not self.lost.done() and not self.closing:
            self.stats.closed["eof"] = self.stats.closed.get("eof", 0) + 1
        if not self.lost.done():
            self.lost.set_result(None)

    closing = False


async def connect_all(
    config: dict[str, Any], stats: Stats
) -> tuple[list[Client], list[Client], int]:
    """Every socket of this process, ``concurrency`` handshakes at a time: (clients that
    joined, their senders, failures)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(config.get("concurrency", 64))
    host = config["host"]
    joined: list[Client] = []
    senders: list[Client] = []
    failed = 0

    async def one(room: int, port: int, sender: bool) -> None:
        nonlocal failed
        path = config["path"].format(room=room)
        async with gate:
            for attempt in range(3):
                try:
                    _, client = await loop.create_connection(
                        lambda: Client(f"{host}:{port}", path, room, stats), host, port
                    )
                    await asyncio.wait_for(client.joined, config.get("join_timeout", 20))
                except (OSError, RuntimeError, TimeoutError) as error:
                    if attempt == 2:
                        failed += 1
                        print(f"socket to {port}{path}: {error}", file=sys.stderr)
                    else:
                        await asyncio.sleep(0.5)
                    continue
                joined.append(client)
                if sender:
                    senders.append(client)
                return

    await asyncio.gather(*(one(room, port, sender) for room, port, sender in config["members"]))
    return joined, senders, failed


async def send_loop(
    senders: list[Client], stats: Stats, t0: float, interval: float, rooms: int
) -> None:
    """One message per sender per interval from ``t0`` until the window's end, open-loop
    (a late send goes out at once, stamped when it does), the rooms' sends staggered
    evenly over the interval (room r at ``t0 + r x interval / rooms``, then every
    interval) as independent senders would be, rather than all in one burst."""
    schedule = [((c.room % rooms) * interval / rooms, c) for c in senders]
    schedule.sort(key=lambda pair: pair[0])
    tick = 0
    end = stats.window_end
    while True:
        for offset, client in schedule:
            due = t0 + tick * interval + offset
            if due >= end:
                return
            now = time.time()
            if due > now:
                await asyncio.sleep(due - now)
            sent_at = time.time()
            client.send_text(f'{{"send":"r{client.room}-{tick}","t":{sent_at!r}}}')
            if stats.window_start <= sent_at < end:
                stats.sent[client.room] = stats.sent.get(client.room, 0) + 1
        tick += 1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main_async(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats(math.inf, math.inf)
    clients, senders, failed = await connect_all(config, stats)
    print(f"ready {len(clients)} {failed}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line.startswith("go "):
        return
    t0 = float(line.split()[1])
    stats.window_start = t0 + config["warmup"]
    stats.window_end = stats.window_start + config["seconds"]
    sending = asyncio.ensure_future(
        send_loop(senders, stats, t0, config["interval"], config["rooms"])
    )
    await asyncio.sleep(max(0.0, stats.window_start - time.time()))
    cpu_before = cpu_seconds()
    await sending
    await asyncio.sleep(max(0.0, stats.window_end - time.time()))
    cpu_window = cpu_seconds() - cpu_before
    await asyncio.sleep(config["drain"])
    for client in clients:
        client.closing = True
        client.close()
    result = {
        "sockets": len(clients),
        "failed": failed,
        "senders": len(senders),
        "sent": stats.sent,
        "histogram": stats.histogram,
        "received_in_window": stats.in_window,
        "closed": stats.closed,
        "errors": stats.errors,
        "cpu_s": cpu_window,
    }
    print("result " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a JSON file written by groups.py")
    args = parser.parse_args()
    with open(args.config) as file:
        config = json.load(file)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(config))
    else:
        uvloop.run(main_async(config))


if __name__ == "__main__":
    main()
