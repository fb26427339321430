"""The groups benchmark's pure parts (``scripts/bench/groups_stats.py``, the frame handling of
``groups_load.py``): which socket goes to which room, port and load-generator process, the
latency histogram and its quantiles, one run's figures, the Redis connections read from
CLIENT LIST, the rounds' medians and the targets, and the report. No server is started and
nothing is timed.

The package is loaded from its folder under a private name (``bench_package``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from bench_package import REPO, load

stats = load("groups_stats")
loadgen = load("groups_load")


# --------------------------------------------------------------------------- the plan


def test_default_plan_is_even_over_rooms_ports_and_clients() -> None:
    ports = [8001, 8002, 8003, 8004]
    members = stats.plan(2000, 20, ports, clients=2)
    assert len(members) == 2000
    assert stats.room_sizes(members) == {room: 100 for room in range(20)}
    assert stats.per_port(members) == {port: 500 for port in ports}
    for room in range(20):
        in_room = [m for m in members if m.room == room]
        assert Counter(m.port for m in in_room) == {port: 25 for port in ports}
        assert sum(m.sender for m in in_room) == 1
    senders = [m for m in members if m.sender]
    assert Counter(m.port for m in senders) == {port: 5 for port in ports}
    assert Counter(m.client for m in members) == {0: 1000, 1: 1000}
    assert [m.index for m in members] == list(range(2000))


def test_uneven_plan_differs_by_one_at_most() -> None:
    members = stats.plan(10, 3, [1, 2], clients=3)
    assert stats.room_sizes(members) == {0: 4, 1: 3, 2: 3}
    assert stats.per_port(members) == {1: 5, 2: 5}
    assert Counter(m.client for m in members) == {0: 4, 1: 3, 2: 3}
    # One port (uvicorn's workers share it): every socket there.
    assert stats.per_port(stats.plan(10, 3, [9000])) == {9000: 10}


@pytest.mark.parametrize(
    ("sockets", "rooms", "ports", "clients"),
    [(0, 1, [1], 1), (5, 0, [1], 1), (5, 1, [], 1), (5, 1, [1], 0), (3, 4, [1], 1)],
)
def test_plan_refuses_what_cannot_be_planned(
    sockets: int, rooms: int, ports: list[int], clients: int
) -> None:
    with pytest.raises(ValueError):
        stats.plan(sockets, rooms, ports, clients)


# --------------------------------------------------------------------------- latency


@pytest.mark.parametrize("latency", [0.0011, 0.05, 1.0, 3.7, 42.0, 999.0, 12_345.0])
def test_a_bucket_holds_its_latency_within_half_a_percent(latency: float) -> None:
    assert stats.bucket_ms(stats.bucket(latency)) == pytest.approx(latency, rel=0.006)


def test_tiny_and_negative_latencies_share_bucket_zero() -> None:
    assert stats.bucket(0.0) == stats.bucket(-3.0) == stats.bucket(0.001) == 0


def test_quantiles_of_a_histogram() -> None:
    histogram = Counter(stats.bucket(ms) for ms in range(1, 101))  # 1..100 ms
    assert stats.quantile(histogram, 0.5) == pytest.approx(50, rel=0.01)
    assert stats.quantile(histogram, 0.99) == pytest.approx(99, rel=0.01)
    assert stats.quantile(histogram, 1.0) == pytest.approx(100, rel=0.01)
    assert stats.quantile(histogram, 0.0) == pytest.approx(1, rel=0.01)
    assert stats.quantile({}, 0.5) is None


def test_histograms_merge_with_json_keys() -> None:
    one = json.loads(json.dumps({stats.bucket(2.0): 3, stats.bucket(5.0): 1}))
    two = {stats.bucket(2.0): 2}
    assert stats.merge([one, two]) == {stats.bucket(2.0): 5, stats.bucket(5.0): 1}


def test_the_load_generator_buckets_as_the_stats_do() -> None:
    counts = loadgen.Stats(window_start=0.0, window_end=time.time() + 60)
    sent_at = time.time() - 0.0123
    counts.receipt(sent_at)
    (index,) = counts.histogram
    assert stats.bucket_ms(index) == pytest.approx(12.3, rel=0.05)
    assert counts.in_window == 1
    # Sent before the window: counted as received in it, but no latency sample.
    counts.window_start = sent_at + 0.001
    counts.receipt(sent_at)
    assert sum(counts.histogram.values()) == 1 and counts.in_window == 2


# --------------------------------------------------------------------------- one run


def test_run_figures() -> None:
    histogram = {stats.bucket(3.0): 1970, stats.bucket(40.0): 20}
    figures = stats.run_figures(
        sizes={0: 100, 1: 100},
        sent={"0": 10, "1": 10},
        histogram=histogram,
        received_in_window=2000,
        seconds=2.0,
        server_cpu_s=0.1,
        redis_cpu_s=0.01,
        client_cpu_s=0.5,
        closed=1,
    )
    assert figures["sent"] == 20 and figures["sent_per_s"] == 10
    assert figures["expected"] == 2000 and figures["delivered"] == 1990
    assert figures["loss"] == pytest.approx(0.005)
    assert figures["deliveries_per_s"] == 1000
    assert figures["p50_ms"] == pytest.approx(3.0, rel=0.01)
    assert figures["p99_ms"] == pytest.approx(40.0, rel=0.01)
    assert figures["server_us_per_msg"] == pytest.approx(50.0)
    assert figures["redis_us_per_msg"] == pytest.approx(5.0)
    assert figures["total_us_per_msg"] == pytest.approx(55.0)
    assert figures["closed"] == 1


def test_run_figures_of_a_run_that_delivered_nothing() -> None:
    figures = stats.run_figures(
        sizes={0: 100},
        sent={0: 5},
        histogram={},
        received_in_window=0,
        seconds=1.0,
        server_cpu_s=1.0,
        redis_cpu_s=0.0,
        client_cpu_s=0.0,
    )
    assert figures["loss"] == 1.0
    assert figures["p50_ms"] is None and figures["p99_ms"] is None


def client_entry(name: str = "", flags: str = "N") -> dict[str, str]:
    return {"name": name, "flags": flags, "cmd": "x"}


def test_redis_connections_from_client_list() -> None:
    entries = [client_entry(f"hybrid-sub-{pid}", "P") for pid in (11, 12, 13, 14)]
    entries[2]["omem"] = "20504"
    entries += [client_entry(f"hybrid-pub-{pid}") for pid in (11, 12, 13, 14)]
    entries.append(client_entry("groups-bench-probe"))  # the probe itself: left out
    connections = stats.classify_clients(entries)
    assert connections["total"] == 8 and connections["pubsub"] == 4
    assert connections["omem_max"] == 20504
    assert connections["sub_by_pid"] == {"11": 1, "12": 1, "13": 1, "14": 1}
    assert stats.one_subscriber_each(connections, 4)
    assert not stats.one_subscriber_each(connections, 5)
    entries.append(client_entry("hybrid-sub-11", "P"))
    assert not stats.one_subscriber_each(stats.classify_clients(entries), 4)
    peer = stats.classify_clients([client_entry(), client_entry(flags="b")])
    assert peer["total"] == 2 and peer["blocked"] == 1 and peer["sub_by_pid"] == {}


# --------------------------------------------------------------------------- rounds


def run(p99: float | None, cpu: float, loss: float = 0.0) -> dict[str, Any]:
    return {
        "deliveries_per_s": 1000.0,
        "sent_per_s": 10.0,
        "p50_ms": None if p99 is None else p99 / 4,
        "p99_ms": p99,
        "loss": loss,
        "server_us_per_msg": cpu,
        "redis_us_per_msg": 1.0,
        "total_us_per_msg": cpu + 1.0,
        "client_cpu_s": 0.5,
        "closed": 0,
        "machine_idle": 0.25,
        "machine_steal": 0.05,
    }


def test_summarize_gives_medians_and_spreads() -> None:
    fig = stats.summarize([run(10, 30), run(14, 50), run(12, 40)])
    assert fig["rounds"] == 3
    assert (fig["p99_ms"], fig["p99_ms_min"], fig["p99_ms_max"]) == (12, 10, 14)
    assert fig["server_us_per_msg_rounds"] == [30, 50, 40]
    empty = stats.summarize([run(None, 30)])
    assert empty["p99_ms"] is None and empty["server_us_per_msg"] == 30


def test_a_target_is_met_only_when_every_round_meets_it() -> None:
    mine = [run(10, 30), run(10, 30), run(10, 30)]
    met = stats.target(mine, [run(30, 90), run(25, 70), run(21, 61)], "p99_ms")
    assert met["met"] is True
    assert met["ratio"] == pytest.approx(2.5) and met["min"] == pytest.approx(2.1)
    missed = stats.target(mine, [run(30, 90), run(19, 90), run(40, 90)], "p99_ms")
    assert missed["met"] is False and missed["ratio"] == pytest.approx(3.0)
    assert stats.target(mine, [run(30, 90)], "p99_ms")["met"] is None  # a round missing
    assert stats.target(mine, [run(None, 90)] * 3, "p99_ms")["met"] is None  # no latency


# --------------------------------------------------------------------------- report


def results() -> dict[str, Any]:
    mine = [run(10, 30), run(12, 35)]
    peer = [run(40, 300, loss=0.5), run(50, 320, loss=0.6)]
    hybrid_connections = stats.classify_clients(
        [client_entry(f"hybrid-sub-{p}", "P") for p in (1, 2)]
        + [client_entry(f"hybrid-pub-{p}") for p in (1, 2)]
    )
    return {
        "date": "2026-01-01 00:00 UTC",
        "command": "scripts/bench/groups --rounds 2",
        "machine": "2 cores (test)",
        "versions": {"channels": "4.3.2", "uvicorn": "0.54.0"},
        "rounds": 2,
        "seconds": 10.0,
        "warmup": 3.0,
        "elapsed_s": 123,
        "stacks": ["hybrid", "channels"],
        "loads": [
            {
                "name": "full",
                "sockets": 2000,
                "rooms": 20,
                "interval_ms": 10.0,
                "offered_per_s": 2000.0,
                "expected_per_s": 200000.0,
                "figures": {"hybrid": stats.summarize(mine), "channels": stats.summarize(peer)},
                "targets": {
                    "p99_ms": stats.target(mine, peer, "p99_ms"),
                    "server_us_per_msg": stats.target(mine, peer, "server_us_per_msg"),
                },
                "connections": {
                    "hybrid": [hybrid_connections, hybrid_connections],
                    "channels": [stats.classify_clients([client_entry()] * 140)],
                },
                "failures": {},
            },
            {
                "name": "1/10",
                "sockets": 2000,
                "rooms": 20,
                "interval_ms": 100.0,
                "offered_per_s": 200.0,
                "expected_per_s": 20000.0,
                "figures": {"hybrid": stats.summarize(mine)},
                "targets": {},
                "connections": {"hybrid": [hybrid_connections]},
                "failures": {"channels": "not run: exited with 1 before serving"},
            },
        ],
        "stack_info": {"hybrid": "hybrid serve", "channels": "uvicorn --workers 4"},
    }


def test_report() -> None:
    text = stats.render_markdown(results())
    assert text.startswith("# Groups: hybrid vs Django Channels\n\n2026-01-01 00:00 UTC;")
    assert "## full: 2,000 sockets, 20 rooms, one message per room every 10 ms" in text
    assert "Channels' side (bench virtualenv): channels 4.3.2, uvicorn 0.54.0." in text
    assert "Offered: 2,000 messages/s, 200,000 deliveries/s." in text
    hybrid = "| hybrid | 1,000 (1,000-1,000) | 10 (10-10) | 2.75 (2.50-3.00) | 11.0 (10.0-12.0)"
    assert hybrid + " | 0.00% (0.00-0.00%) | 32.5 (30.0-35.0) | 1.0 (1.0-1.0) | 0 (0-0) |" in text
    channels = "| channels | 1,000 (1,000-1,000) | 10 (10-10) | 11.2 (10.0-12.5) | 45.0 (40.0-50.0)"
    assert channels + " | 55.00% (50.00-60.00%) | 310.0 (300.0-320.0) |" in text
    assert "| 0 (0-0) | 0.5 (0.5-0.5) | 25% / 5% |" in text
    assert "p99 latency 4.08x (4.00-4.17x): met" in text
    assert "server CPU per delivered message 9.57x (9.14-10.00x): met" in text
    assert "- hybrid: 4 (2 subscribers, 1 per worker; 2 publishers)" in text
    assert "- channels: 140 (0 in pub/sub, 0 blocked in a pop)" in text
    assert "| channels | not run: exited with 1 before serving |" in text
    assert "p99 latency –; server CPU per delivered message –." in text
    assert "- **channels**: uvicorn --workers 4" in text


def test_ratio_text_says_when_a_target_is_missed_or_cannot_be_compared() -> None:
    missed = stats.target([run(10, 30)], [run(15, 30)], "p99_ms")
    assert stats.ratio_text(missed) == "1.50x: **not met**"
    lacking = stats.target([run(None, 30), run(10, 30)], [run(15, 30)] * 2, "p99_ms")
    assert stats.ratio_text(lacking).startswith("– (not in every round")


# --------------------------------------------------------------------------- frames


class Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def frame(opcode: int, payload: bytes) -> bytes:
    """A server frame (unmasked)."""
    n = len(payload)
    head = bytes((0x80 | opcode, n)) if n < 126 else bytes((0x80 | opcode, 126)) + n.to_bytes(2)
    return head + payload


def test_the_load_generator_parses_frames_split_anywhere() -> None:
    async def scenario() -> tuple[Any, Any, Transport]:
        counts = loadgen.Stats(window_start=0.0, window_end=time.time() + 60)
        client = loadgen.Client("127.0.0.1:1", "/h/room/3", 3, counts)
        transport = Transport()
        client.connection_made(transport)
        assert transport.written.startswith(b"GET /h/room/3 HTTP/1.1\r\n")
        stamp = json.dumps({"send": "x" * 200, "t": time.time()}).encode()  # a 126 frame
        stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        stream += frame(1, b'{"joined": "3"}') + frame(1, stamp) + frame(9, b"hi")
        stream += frame(1, json.dumps({"send": "y", "t": time.time()}).encode())
        for i in range(0, len(stream), 7):  # in 7-byte pieces
            client.data_received(stream[i : i + 7])
        return client, counts, transport

    client, counts, transport = asyncio.run(scenario())
    assert client.joined.done() and client.upgraded
    assert counts.in_window == 2 and sum(counts.histogram.values()) == 2
    pong = transport.written.split(b"\r\n\r\n", 1)[1]
    assert pong[0] == 0x8A and pong[1] == 0x80 | 2  # a masked pong of 2 bytes
    mask = pong[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(pong[6:])) == b"hi"


def test_the_load_generator_masks_what_it_sends() -> None:
    async def scenario() -> Transport:
        client = loadgen.Client("h:1", "/", 0, loadgen.Stats(0.0, 1.0))
        transport = Transport()
        client.transport = transport
        client.send_text("é" * 100)  # 200 bytes: a 16-bit length
        return transport

    data = asyncio.run(scenario()).written
    assert data[0] == 0x81 and data[1] == 0x80 | 126 and int.from_bytes(data[2:4]) == 200
    mask = data[4:8]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(data[8:])).decode() == "é" * 100


def test_a_refused_handshake_fails_the_socket() -> None:
    async def scenario() -> Any:
        client = loadgen.Client("h:1", "/", 0, loadgen.Stats(0.0, 1.0))
        client.connection_made(Transport())
        client.data_received(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        return client

    client = asyncio.run(scenario())
    with pytest.raises(RuntimeError, match="403 Forbidden"):
        client.joined.result()
    assert client.stats.errors == 1


@pytest.mark.parametrize("entry", ["groups", "groups_load"])
def test_entry_runs_as_a_module(entry: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"scripts.bench.{entry}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
