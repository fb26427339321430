"""The pure parts of the groups benchmark (``groups.py``): which socket joins which room on
which port and in which load-generator process, the latency histogram the load generator
fills and its quantiles, one run's figures from the raw counts, the rounds' medians and
spreads, the targets, and the report (``groups.md``). Nothing here opens a socket."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The targets: hybrid's p99 delivery latency and its server CPU per delivered message at
# least this many times better than Channels' (each round, round i against round i).
TARGET_RATIO = 2.0
MINE = "hybrid"
PEER = "channels"

# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Member:
    """One socket of the run: its index, room, port, load-generator process, and whether
    it is its room's sender."""

    index: int
    room: int
    port: int
    client: int
    sender: bool


def plan(sockets: int, rooms: int, ports: Sequence[int], clients: int = 1) -> list[Member]:
    """Every socket: rooms as even as they go (room sizes differ by one at most), each
    room's members spread over the ports in turn, starting at a different port per room so
    that the senders (member 0 of each room) are spread over the ports too; sockets dealt
    to the load-generator processes in turn."""
    if sockets < 1 or rooms < 1 or not ports or clients < 1:
        raise ValueError("need at least one socket, room, port and client")
    if rooms > sockets:
        raise ValueError(f"{rooms} rooms need at least as many sockets, not {sockets}")
    members: list[Member] = []
    position = [0] * rooms  # members of each room so far
    for index in range(sockets):
        room = index % rooms
        k = position[room]
        position[room] += 1
        port = ports[(room + k) % len(ports)]
        members.append(Member(index, room, port, index % clients, k == 0))
    return members


def room_sizes(members: Iterable[Member]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for member in members:
        sizes[member.room] = sizes.get(member.room, 0) + 1
    return sizes


def per_port(members: Iterable[Member]) -> dict[int, int]:
    """Sockets per port."""
    counts: dict[int, int] = {}
    for member in members:
        counts[member.port] = counts.get(member.port, 0) + 1
    return counts


# --------------------------------------------------------------------------- latency

# Buckets 1% wide from 1 us: bucket b holds latencies in [1us * 1.01**b, 1us * 1.01**(b+1)).
BUCKET_BASE_MS = 0.001
BUCKET_GROWTH = 1.01
_LOG_GROWTH = math.log(BUCKET_GROWTH)


def bucket(latency_ms: float) -> int:
    """The histogram bucket of a latency (anything below 1 us, clock steps included, is
    bucket 0)."""
    if latency_ms <= BUCKET_BASE_MS:
        return 0
    return int(math.log(latency_ms / BUCKET_BASE_MS) / _LOG_GROWTH)


def bucket_ms(index: int) -> float:
    """The middle of a bucket, in ms (within 0.5% of every latency in it)."""
    return BUCKET_BASE_MS * BUCKET_GROWTH ** (index + 0.5)


def merge(histograms: Iterable[Mapping[Any, int]]) -> dict[int, int]:
    """Histograms added up (keys may be strings, as JSON brings them back)."""
    total: dict[int, int] = {}
    for histogram in histograms:
        for key, count in histogram.items():
            total[int(key)] = total.get(int(key), 0) + count
    return total


def quantile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The latency (ms) below which ``fraction`` of the samples lie: the middle of the
    bucket of the sample at rank ceil(fraction x n); None without samples."""
    n = sum(histogram.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(fraction * n))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_ms(index)
    return bucket_ms(max(histogram))  # pragma: no cover - unreachable: seen reaches n


# --------------------------------------------------------------------------- one run


def run_figures(
    *,
    sizes: Mapping[int, int],
    sent: Mapping[Any, int],
    histogram: Mapping[int, int],
    received_in_window: int,
    seconds: float,
    server_cpu_s: float,
    redis_cpu_s: float,
    client_cpu_s: float,
    closed: int = 0,
) -> dict[str, Any]:
    """One run's figures. ``sent``: messages sent per room during the window (keys may be
    strings); ``histogram``: the latencies of the deliveries of those messages (each
    member's receipt, the sender's own included); ``received_in_window``: deliveries
    received during the window, whenever sent (what the CPU was spent on);
    ``*_cpu_s``: CPU seconds over the window."""
    expected = sum(count * sizes[int(room)] for room, count in sent.items())
    delivered = sum(histogram.values())
    per_message = max(received_in_window, 1)
    return {
        "sent": sum(sent.values()),
        "sent_per_s": sum(sent.values()) / seconds,
        "expected": expected,
        "delivered": delivered,
        "loss": (expected - delivered) / expected if expected else None,
        "received_in_window": received_in_window,
        "deliveries_per_s": received_in_window / seconds,
        "p50_ms": quantile(histogram, 0.50),
        "p99_ms": quantile(histogram, 0.99),
        "max_ms": bucket_ms(max(histogram)) if histogram else None,
        "server_cpu_s": server_cpu_s,
        "redis_cpu_s": redis_cpu_s,
        "client_cpu_s": client_cpu_s,
        "server_us_per_msg": server_cpu_s / per_message * 1e6,
        "redis_us_per_msg": redis_cpu_s / per_message * 1e6,
        "total_us_per_msg": (server_cpu_s + redis_cpu_s) / per_message * 1e6,
        "closed": closed,
    }


def classify_clients(clients: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """Redis connections from CLIENT LIST entries (``name``, ``flags``, ``omem``), this
    probe's own left out: the total, hybrid's subscribers and publishers per worker pid,
    the connections in pub/sub mode (flag ``P``) or blocked in a pop (flag ``b``), and the
    largest output buffer Redis held for one of them (``omem_max``, bytes: what a
    connection has not read yet)."""
    out: dict[str, Any] = {"total": 0, "pubsub": 0, "blocked": 0, "sub_by_pid": {}}
    out["pub_by_pid"] = {}
    out["omem_max"] = 0
    for client in clients:
        name = client.get("name", "")
        if name == "groups-bench-probe":
            continue
        out["total"] += 1
        out["omem_max"] = max(out["omem_max"], int(client.get("omem", 0) or 0))
        flags = client.get("flags", "")
        out["pubsub"] += "P" in flags
        out["blocked"] += "b" in flags
        for role in ("sub", "pub"):
            if name.startswith(f"hybrid-{role}-"):
                pid = name.rsplit("-", 1)[1]
                table = out[f"{role}_by_pid"]
                table[pid] = table.get(pid, 0) + 1
    return out


def one_subscriber_each(connections: Mapping[str, Any], workers: int) -> bool:
    """Whether each of ``workers`` hybrid workers holds exactly one subscriber connection."""
    subs = connections.get("sub_by_pid", {})
    return len(subs) == workers and all(n == 1 for n in subs.values())


# --------------------------------------------------------------------------- rounds

FIGURES = (
    "deliveries_per_s",
    "sent_per_s",
    "p50_ms",
    "p99_ms",
    "loss",
    "server_us_per_msg",
    "redis_us_per_msg",
    "total_us_per_msg",
    "client_cpu_s",
    "closed",
    "machine_idle",
    "machine_steal",
)


def summarize(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per figure: the median of the rounds that have it, with their min and max
    (``name``, ``name_min``, ``name_max``) and the rounds' values (``name_rounds``)."""
    out: dict[str, Any] = {"rounds": len(rounds)}
    for name in FIGURES:
        values = [r[name] for r in rounds if r.get(name) is not None]
        out[f"{name}_rounds"] = values
        if values:
            out[name] = statistics.median(values)
            out[f"{name}_min"], out[f"{name}_max"] = min(values), max(values)
        else:
            out[name] = out[f"{name}_min"] = out[f"{name}_max"] = None
    return out


def ratios(mine: Sequence[Mapping[str, Any]], peer: Sequence[Mapping[str, Any]], name: str):
    """Round by round, the peer's figure over mine (how many times better mine is, for a
    figure where lower is better); None for a round where either lacks it or mine is 0."""
    out: list[float | None] = []
    for a, b in zip(mine, peer, strict=False):
        x, y = a.get(name), b.get(name)
        out.append(y / x if x and y is not None else None)
    return out


def target(mine: Sequence[Mapping[str, Any]], peer: Sequence[Mapping[str, Any]], name: str):
    """{"ratio": the median of the round ratios, "min", "max", "met": every round >=
    TARGET_RATIO (None when a round could not be compared)}."""
    values = ratios(mine, peer, name)
    if not values or len(mine) != len(peer) or any(v is None for v in values):
        return {"ratio": None, "min": None, "max": None, "met": None, "rounds": values}
    return {
        "ratio": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "met": all(v >= TARGET_RATIO for v in values),
        "rounds": values,
    }


# --------------------------------------------------------------------------- report


def fmt_num(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def spread_text(fig: Mapping[str, Any], name: str, digits: int = 0, unit: str = "") -> str:
    """``12.3 (11.0-14.1)``; the median alone with one round; ``–`` without a value."""
    value = fig.get(name)
    if value is None:
        return "–"
    text = fmt_num(value, digits, unit)
    if fig.get("rounds", 1) > 1 and fig.get(f"{name}_min") is not None:
        low, high = fig[f"{name}_min"], fig[f"{name}_max"]
        text += f" ({fmt_num(low, digits)}-{fmt_num(high, digits)})"
    return text


def ms_digits(value: float | None) -> int:
    return (
        2 if value is not None and value < 10 else (1 if value is not None and value < 100 else 0)
    )


def loss_text(fig: Mapping[str, Any]) -> str:
    value = fig.get("loss")
    if value is None:
        return "–"
    text = f"{value * 100:.2f}%"
    if fig.get("rounds", 1) > 1:
        text += f" ({fig['loss_min'] * 100:.2f}-{fig['loss_max'] * 100:.2f}%)"
    return text


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def ratio_text(result: Mapping[str, Any]) -> str:
    if result.get("ratio") is None:
        if any(value is None for value in result.get("rounds", ())):
            return "– (not in every round: a round without the figure on one side)"
        return "–"
    met = "met" if result["met"] else "**not met**"
    text = f"{result['ratio']:.2f}x"
    if result["min"] != result["max"]:
        text += f" ({result['min']:.2f}-{result['max']:.2f}x)"
    return f"{text}: {met}"


def connections_text(connections: Sequence[Mapping[str, Any]]) -> str:
    """The rounds' Redis connections: ``5 (4 subscribers: 1 per worker; 4 publishers)``,
    or the range of totals when rounds differ."""
    if not connections:
        return "–"
    totals = sorted({c["total"] for c in connections})
    total = str(totals[0]) if len(totals) == 1 else f"{totals[0]}-{totals[-1]}"
    first = connections[0]
    subs, pubs = first.get("sub_by_pid", {}), first.get("pub_by_pid", {})
    if subs or pubs:
        per = sorted({n for c in connections for n in c.get("sub_by_pid", {}).values()})
        each = "1 per worker" if per == [1] else "per worker: " + "/".join(map(str, per))
        return (
            f"{total} ({sum(subs.values())} subscribers, {each}; {sum(pubs.values())} publishers)"
        )
    return f"{total} ({first['pubsub']} in pub/sub, {first['blocked']} blocked in a pop)"


def render_markdown(results: Mapping[str, Any]) -> str:
    """groups.md: the loads, the figures per load and stack (medians and min-max spreads
    of the rounds; the machine's idle and stolen CPU over the window as medians), the
    targets round by round, the Redis connections, and the stacks."""
    lines = [
        "# Groups: hybrid vs Django Channels",
        "",
        f"{results['date']}; `{results['command']}`; {results['rounds']} alternating"
        f" round(s) of {results['seconds']:g} s after {results['warmup']:g} s of warm-up;"
        f" {results['elapsed_s']} s in all.",
        "",
        f"Machine: {results['machine']}.",
        "",
    ]
    if results.get("versions"):
        versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        lines += [f"Channels' side (bench virtualenv): {versions}.", ""]
    for load in results["loads"]:
        name = load["name"]
        lines += [
            f"## {name}: {load['sockets']:,} sockets, {load['rooms']} rooms,"
            f" one message per room every {load['interval_ms']:g} ms",
            "",
            f"Offered: {load['offered_per_s']:,.0f} messages/s, {load['expected_per_s']:,.0f}"
            " deliveries/s.",
            "",
            "| stack | deliveries/s | sent/s | p50 ms | p99 ms | loss |"
            " server CPU us/msg | Redis CPU us/msg | closed sockets | load generator CPU s |"
            " machine idle / steal |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for stack in results["stacks"]:
            fig = load["figures"].get(stack)
            if not fig or not fig.get("rounds"):
                why = load.get("failures", {}).get(stack, "not run")
                lines.append(f"| {stack} | {why} |  |  |  |  |  |  |  |  |  |")
                continue
            lines.append(
                f"| {stack} | {spread_text(fig, 'deliveries_per_s')}"
                f" | {spread_text(fig, 'sent_per_s')}"
                f" | {spread_text(fig, 'p50_ms', ms_digits(fig['p50_ms']))}"
                f" | {spread_text(fig, 'p99_ms', ms_digits(fig['p99_ms']))}"
                f" | {loss_text(fig)}"
                f" | {spread_text(fig, 'server_us_per_msg', 1)}"
                f" | {spread_text(fig, 'redis_us_per_msg', 1)}"
                f" | {spread_text(fig, 'closed')}"
                f" | {spread_text(fig, 'client_cpu_s', 1)}"
                f" | {percent(fig.get('machine_idle'))} / {percent(fig.get('machine_steal'))} |"
            )
        targets = load.get("targets", {})
        lines += [
            "",
            f"Targets (hybrid >= {TARGET_RATIO:g}x better than Channels in every round):"
            f" p99 latency {ratio_text(targets.get('p99_ms', {}))};"
            f" server CPU per delivered message"
            f" {ratio_text(targets.get('server_us_per_msg', {}))}.",
            "",
            "Redis connections during the run (CLIENT LIST):",
            "",
        ]
        for stack in results["stacks"]:
            lines.append(f"- {stack}: {connections_text(load['connections'].get(stack, []))}")
        lines.append("")
    lines += ["## Stacks", ""]
    for stack, info in results["stack_info"].items():
        lines.append(f"- **{stack}**: {info}")
    lines.append("")
    return "\n".join(lines)
