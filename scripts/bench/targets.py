"""The performance targets and the figures they are judged on.

A *cell* is a process count and a mode (``direct``: wrk on the stack's own port(s);
``nginx``: wrk on nginx, rendered as ``hybrid nginx`` renders it, in front of them). A
*figure* is one stack on one endpoint in one cell: the median, min and max of its rounds.
A ratio target is met only when every round meets it, round i of hybrid against round i of
the other stack (they ran back to back), never hybrid in one mode against a peer in the
other."""

from __future__ import annotations

import statistics
from typing import Any, TypeGuard

from .endpoints import ENDPOINTS
from .rounds import every_round, spread

LAG_COMMANDS = 200
LAG_TARGET_MS = 10.0
LAG_SLEEP = 2.0  # seconds per command: 200 in flight need only 100 spawns a second
IDLE_CONNECTIONS = 10_000
IDLE_TARGET_MB = 100.0
MINE = "hybrid"
CEILING = "raw-tornado"
MODES = ("direct", "nginx")
# Peers at the same process count and mode; "fastest peer" is the best of these (median).
PEERS = ("gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent", "uvicorn")

# Endpoints where a worker's CPU per request decides the rate: hybrid >= 1.2x the fastest
# peer's req/s, with a p99 no worse than that peer's.
CPU_BOUND = ("hello", "row", "list", "cmd", "io-1000")
PEER_RATIO = 1.2
# Endpoints that wait 50 ms per request at 64 connections: the ceiling is 64 / 50 ms =
# 1,280 req/s whatever the process count; hybrid >= 0.95 of it, p99 <= 60 ms.
LATENCY_BOUND = ("query", "io")
WAIT_SECONDS = 0.05
LATENCY_SHARE = 0.95
LATENCY_P99_MS = 60.0
# Against raw Tornado + aiomysql (no Django) in the same cell.
RAW_TARGETS = (("hello", 0.7), ("row", 0.7))
# hybrid behind nginx against hybrid direct, same process count and endpoint.
NGINX_RATIO = 0.9

# Per round, what a figure records (medians in the figure).
MEDIANS = ("rps", "p50_ms", "p99_ms", "nginx_cpu_us_per_request")


def ok(row: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """The row (one round) or figure (its rounds) was measured."""
    return row is not None and row.get("status") == "ok"


def cells(results: dict[str, Any]) -> list[tuple[int, str]]:
    """(processes, mode) of every cell that has rows, direct first."""
    found = {(r["group"], r.get("mode", "direct")) for r in results["runs"]}
    return sorted(found, key=lambda c: (c[0], MODES.index(c[1]) if c[1] in MODES else 9))


def figure(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One stack, endpoint and cell over its rounds: medians and spreads of the rounds that
    were measured (``rounds``, by round number), or the first round's failure."""
    good = sorted((r for r in rows if ok(r)), key=lambda r: r.get("round", 1))
    first = rows[0]
    result: dict[str, Any] = {
        k: first.get(k) for k in ("stack", "endpoint", "group", "mode", "connections")
    }
    result["rounds"] = good
    result["rounds_run"] = len(rows)
    if not good:
        result["status"] = first.get("status", "not run")
        return result
    result["status"] = "ok"
    result["rps"], result["rps_min"], result["rps_max"] = spread([r["rps"] for r in good])
    for key in MEDIANS[1:]:
        values = [r[key] for r in good if r.get(key) is not None]
        result[key] = statistics.median(values) if values else None
    p99s = [r["p99_ms"] for r in good if r.get("p99_ms") is not None]
    result["p99_max_ms"] = max(p99s) if p99s else None
    result["errors"] = sum(r.get("errors", 0) for r in good)
    result["rss_mb"] = max(r.get("rss_mb", 0.0) for r in good)
    result["rss_process_mb"] = max(r.get("rss_process_mb", 0.0) for r in good)
    failed = [r for r in rows if not ok(r)]
    if failed:
        result["failed_rounds"] = [f"{r.get('round')}: {r.get('status')}" for r in failed]
    return result


def table(
    results: dict[str, Any], group: int, mode: str = "direct"
) -> dict[tuple[str, str], dict[str, Any]]:
    """(endpoint, stack) -> figure, for one cell."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results["runs"]:
        if r["group"] == group and r.get("mode", "direct") == mode:
            grouped.setdefault((r["endpoint"], r["stack"]), []).append(r)
    return {key: figure(rows) for key, rows in grouped.items()}


def fastest_peer(
    cells: dict[tuple[str, str], dict[str, Any]], endpoint: str
) -> dict[str, Any] | None:
    """The peer with the highest median req/s on ``endpoint`` in the cell."""
    peers = [cells[(endpoint, p)] for p in PEERS if ok(cells.get((endpoint, p)))]
    return max(peers, key=lambda r: r["rps"]) if peers else None


def by_round(fig: dict[str, Any] | None, key: str) -> dict[int, float | None]:
    return {r.get("round", 1): r.get(key) for r in (fig or {}).get("rounds", [])}


def round_pairs(
    a: dict[str, Any] | None, b: dict[str, Any] | None, key: str, rounds: int
) -> tuple[list[Any], list[Any]]:
    """The values of ``key`` of ``a`` and ``b`` in rounds 1..``rounds``, paired by round;
    both empty when either lacks a round (a round that did not run meets nothing)."""
    first, second = by_round(a, key), by_round(b, key)
    wanted = list(range(1, rounds + 1))
    if any(n not in first or n not in second for n in wanted):
        return [], []
    return [first[n] for n in wanted], [second[n] for n in wanted]


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def no_worse(a: float | None, b: float | None) -> bool:
    """p99 ``a`` no worse than ``b``; None (nothing completed) is the worst."""
    if a is None:
        return b is None
    return b is None or a <= b


def compare_rounds(
    a: dict[str, Any] | None,
    b: dict[str, Any] | None,
    rounds: int,
    minimum: float,
    p99: bool = False,
) -> tuple[bool | None, list[float]]:
    """Whether round i of ``a`` has at least ``minimum`` x round i of ``b``'s req/s (and,
    with ``p99``, a p99 no worse) in every round, and the per-round ratios."""
    rates_a, rates_b = round_pairs(a, b, "rps", rounds)
    met = every_round(rates_a, rates_b, lambda x, y: ratio(x, y) >= minimum)
    if met is not None and p99:
        p99_a, p99_b = round_pairs(a, b, "p99_ms", rounds)
        met = met and bool(every_round(p99_a, p99_b, no_worse))
    return met, [round(ratio(x, y), 3) for x, y in zip(rates_a, rates_b, strict=True)]


def cell_name(group: int, mode: str) -> str:
    return f"{group} process(es), {mode}"


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of every cell, then hybrid behind nginx against direct, the loop lag
    and the idle connections."""
    rounds = int(results.get("rounds", 1))
    targets: list[dict[str, Any]] = []
    for group, mode in cells(results):
        figures = table(results, group, mode)
        where = cell_name(group, mode)
        endpoints = list(dict.fromkeys(e for e, _ in figures))
        for endpoint in endpoints:
            mine = figures.get((endpoint, MINE))
            if endpoint in CPU_BOUND:
                peer = fastest_peer(figures, endpoint)
                entry = ratio_target(
                    f"{endpoint}: hybrid >= {PEER_RATIO}x the fastest peer, p99 no worse ({where})",
                    mine,
                    peer,
                    rounds,
                    PEER_RATIO,
                    p99=True,
                )
                targets.append({"group": group, "mode": mode, **entry})
            if endpoint in LATENCY_BOUND:
                targets.append(
                    {"group": group, "mode": mode, **latency_target(endpoint, mine, rounds, where)}
                )
        for endpoint, minimum in RAW_TARGETS:
            if (endpoint, MINE) in figures and (endpoint, CEILING) in figures:
                entry = ratio_target(
                    f"{endpoint}: hybrid >= {minimum}x {CEILING} ({where})",
                    figures.get((endpoint, MINE)),
                    figures.get((endpoint, CEILING)),
                    rounds,
                    minimum,
                )
                targets.append({"group": group, "mode": mode, **entry})
    for group in sorted({g for g, _ in cells(results)}):
        direct, nginx = table(results, group, "direct"), table(results, group, "nginx")
        for endpoint in dict.fromkeys(e for e, s in nginx if s == MINE):
            entry = ratio_target(
                f"{endpoint}: hybrid behind nginx >= {NGINX_RATIO}x hybrid direct"
                f" ({group} process(es))",
                nginx.get((endpoint, MINE)),
                direct.get((endpoint, MINE)),
                rounds,
                NGINX_RATIO,
            )
            targets.append({"group": group, "mode": "nginx / direct", **entry})
    targets.append(lag_target(results.get("lag", {})))
    targets.append(idle_target(results.get("idle", {}).get(MINE)))
    return targets


def ratio_target(
    name: str,
    a: dict[str, Any] | None,
    b: dict[str, Any] | None,
    rounds: int,
    minimum: float,
    p99: bool = False,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"target": name, "threshold": minimum, "unit": "x"}
    if not (ok(a) and ok(b)):
        return {**entry, "measured": None, "met": None, "detail": "not measured"}
    met, per_round = compare_rounds(a, b, rounds, minimum, p99)
    entry["rounds"] = per_round
    entry["against"] = b["stack"] if b["stack"] != a["stack"] else b.get("mode")
    entry["measured"] = round(a["rps"] / b["rps"], 3) if b["rps"] else None
    detail = f"{a['rps']:,.0f} vs {b['stack']} {b['rps']:,.0f} req/s (medians)"
    if p99:
        detail += f"; p99 {fmt(a.get('p99_ms'))} vs {fmt(b.get('p99_ms'))}"
    if not b["rps"]:
        detail += f"; {b['stack']} completed no request"
    if met is None:
        detail += f"; not every one of the {rounds} round(s) ran for both"
    return {**entry, "met": met, "detail": detail}


def latency_target(
    endpoint: str, mine: dict[str, Any] | None, rounds: int, where: str
) -> dict[str, Any]:
    connections = ENDPOINTS[endpoint][1]
    floor = LATENCY_SHARE * connections / WAIT_SECONDS
    entry: dict[str, Any] = {
        "target": f"{endpoint}: hybrid >= {floor:,.0f} req/s ({LATENCY_SHARE} x {connections}"
        f" / {WAIT_SECONDS * 1000:.0f} ms) and p99 <= {LATENCY_P99_MS:.0f} ms ({where})",
        "threshold": floor,
        "unit": "req/s",
    }
    if not ok(mine):
        return {**entry, "measured": None, "met": None, "detail": "not measured"}
    per_round = {r.get("round", 1): r for r in mine["rounds"]}
    wanted = range(1, rounds + 1)
    met: bool | None = None
    if all(n in per_round for n in wanted):
        met = all(
            per_round[n]["rps"] >= floor
            and per_round[n].get("p99_ms") is not None
            and per_round[n]["p99_ms"] <= LATENCY_P99_MS
            for n in wanted
        )
    entry["rounds"] = [round(per_round[n]["rps"]) for n in wanted if n in per_round]
    detail = f"p99 {fmt(mine.get('p99_ms'))} (median), {fmt(mine.get('p99_max_ms'))} (worst)"
    return {**entry, "measured": round(mine["rps"]), "met": met, "detail": detail}


def lag_target(lag: dict[str, Any]) -> dict[str, Any]:
    phase = f"sleep {LAG_SLEEP:g}"  # `true` exits at once: never 200 in flight
    figures = lag.get("phases", {}).get(phase)
    entry: dict[str, Any] = {
        "target": f"command runner: worker loop lag p99 < {LAG_TARGET_MS:.0f} ms with"
        f" {LAG_COMMANDS} commands (`{phase}`) in flight",
        "threshold": LAG_TARGET_MS,
        "unit": "ms",
    }
    if figures and figures.get("p99_ms") is not None:
        p99 = figures["p99_ms"]
        entry.update(measured=round(p99, 2), met=lag_met(figures))
        entry["detail"] = (
            f"p50 {figures['p50_ms']:.1f} / p99 {p99:.1f} / max {figures['max_ms']:.1f} ms;"
            f" commands running mean {figures['commands_running_mean']:.0f},"
            f" max {figures['commands_running_max']}"
        )
    else:
        entry.update(measured=None, met=None, detail=lag.get("status", "not measured"))
    return entry


def idle_target(idle: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "target": f"{IDLE_CONNECTIONS:,} idle keep-alive connections: hybrid worker RSS"
        f" <= {IDLE_TARGET_MB:.0f} MB",
        "threshold": IDLE_TARGET_MB,
        "unit": "MB",
    }
    if idle and "rss_held_mb" in idle:
        held = idle["still_open_after_3s"]
        entry.update(
            measured=idle["rss_held_mb"],
            met=idle["rss_held_mb"] <= IDLE_TARGET_MB and held >= IDLE_CONNECTIONS,
            detail=f"{held:,} held; {idle['rss_before_mb']} MB before",
        )
    else:
        entry.update(measured=None, met=None, detail=(idle or {}).get("status", "not measured"))
    return entry


def lag_met(figures: dict[str, Any]) -> bool | None:
    """p99 < 10 ms, judged only with about 200 commands running (unless already over)."""
    if figures["p99_ms"] >= LAG_TARGET_MS:
        return False
    return True if figures["commands_running_mean"] >= 0.9 * LAG_COMMANDS else None


def fmt(value: float | None) -> str:
    """A latency in ms, as the report shows it."""
    if value is None:
        return "n/a"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"
