"""results.md: the headline, the targets, every figure per process count, the lag and
idle-connection extras, and the stacks' configurations."""

from __future__ import annotations

from typing import Any

from .endpoints import ENDPOINTS
from .stacks import SYNC_2C1
from .targets import (
    IDLE_CONNECTIONS,
    LAG_COMMANDS,
    LAG_TARGET_MS,
    MINE,
    fastest_peer,
    lag_met,
    mine_for,
    ok,
    table,
)


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def met_text(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "**no**")


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m.get("versions", {})
    groups = sorted({r["group"] for r in results["runs"]})
    lines = [
        "# hybrid vs the peers",
        "",
        f"{results['date']}; `{results.get('command', 'scripts/bench/run')}`"
        f" ({results['mode']} pass, {results['elapsed_s']} s); {m['nproc']} cores ({m['cpu']}),"
        f" Linux {m['kernel']}, Python {m['python']}, Django {v.get('django')}, Tornado"
        f" {v.get('tornado')}. Each endpoint: {results['seconds_per_endpoint']} s of"
        f" `{results['wrk']}`"
        + (f" after {results['warmup_s']} s of warm-up" if results.get("warmup_s") else "")
        + " (io-1000: at least 3 s), wrk on the same cores as the servers; MariaDB on"
        " loopback, no TLS. Ratios compare stacks of this run at the same process count only;"
        " absolute numbers depend on the machine and its neighbours.",
        "",
        "## Headline",
        "",
        "hybrid (DjangoHandler through the default middleware, native MySQL; behind nginx"
        " when more than one process) against the fastest peer (gunicorn sync/gthread/gevent,"
        " uvicorn at the same process count) and against raw Tornado + aiomysql (the ceiling).",
        "",
        "| processes | endpoint | hybrid req/s | fastest peer | hybrid / fastest peer |"
        " raw-tornado req/s | hybrid / raw-tornado |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        cells = table(results, group)
        mine = mine_for(group)
        for endpoint in dict.fromkeys(r["endpoint"] for r in results["runs"]):
            a = cells.get((endpoint, mine))
            best = fastest_peer(cells, endpoint)
            raw = cells.get((endpoint, "raw-tornado"))
            mine_text = f"{a['rps']:,.0f}" if ok(a) else "–"
            peer_text = f"{best['stack']} {best['rps']:,.0f}" if best else "–"
            raw_text = f"{raw['rps']:,.0f}" if ok(raw) else "–"
            vs_peer = (
                f"**{a['rps'] / best['rps']:.2f}x**" if ok(a) and best and best["rps"] else "–"
            )
            vs_raw = (
                f"**{a['rps'] / raw['rps']:.2f}x**" if ok(a) and ok(raw) and raw["rps"] else "–"
            )
            lines.append(
                f"| {group} | {endpoint} | {mine_text} | {peer_text} | {vs_peer} |"
                f" {raw_text} | {vs_raw} |"
            )
    lines += [
        "",
        "## Performance targets",
        "",
        "| target | measured | detail | met |",
        "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        measured = t.get("measured")
        if measured is None:
            shown = "–"
        elif "lag" in t["target"]:
            shown = f"p99 {measured:.1f} ms"
        elif "RSS" in t["target"]:
            shown = f"{measured:.0f} MB"
        else:
            shown = f"{measured:.2f}x"
        lines.append(
            f"| {t['target']} | {shown} | {t.get('detail', '')} | {met_text(t.get('met'))} |"
        )
    lines.append("")
    for group in groups:
        cells = table(results, group)
        stacks = list(dict.fromkeys(r["stack"] for r in results["runs"] if r["group"] == group))
        endpoints = list(dict.fromkeys(r["endpoint"] for r in results["runs"]))
        lines += [
            f"## {group} process(es): every figure",
            "",
            "Cells: req/s; p50 / p99 latency; errors (non-2xx + socket errors); peak RSS of"
            " the largest process (a worker) and of the whole tree (master, workers, nginx).",
            "",
        ]
        lines.append("| endpoint (connections) | " + " | ".join(stacks) + " |")
        lines.append("|---" * (len(stacks) + 1) + "|")
        for endpoint in endpoints:
            row = []
            for stack in stacks:
                r = cells.get((endpoint, stack))
                if r is None:
                    row.append("–")
                elif not ok(r):
                    row.append(r["status"].replace("|", "/")[:70])
                else:
                    row.append(
                        f"**{r['rps']:,.0f}**<br>{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p99_ms'])}"
                        f"<br>err {r['errors']}<br>{r['rss_process_mb']:.0f} MB/proc,"
                        f" {r['rss_mb']:.0f} total"
                    )
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            lines.append(f"| {endpoint} ({conns}) | " + " | ".join(row) + " |")
        lines += ["", "req/s against raw Tornado + aiomysql and against the fastest peer:", ""]
        lines.append(
            "| endpoint | "
            + " | ".join(f"{s} / raw" for s in stacks)
            + " | fastest peer | "
            + " | ".join(f"{s} / peer" for s in MINE if s in stacks)
            + " |"
        )
        lines.append("|---" * (len(stacks) + 2 + sum(s in stacks for s in MINE)) + "|")
        for endpoint in endpoints:
            raw = cells.get((endpoint, "raw-tornado"))
            base = raw["rps"] if ok(raw) and raw["rps"] else None
            row = []
            for stack in stacks:
                r = cells.get((endpoint, stack))
                row.append(f"{r['rps'] / base:.2f}" if ok(r) and base else "–")
            best = fastest_peer(cells, endpoint)
            row.append(best["stack"] if best else "–")
            for mine in MINE:
                if mine in stacks:
                    r = cells.get((endpoint, mine))
                    row.append(
                        f"{r['rps'] / best['rps']:.2f}" if ok(r) and best and best["rps"] else "–"
                    )
            lines.append(f"| {endpoint} | " + " | ".join(row) + " |")
        lines.append("")
    lag = results.get("lag")
    if lag:
        lines += [
            "## Event-loop lag during command load",
            "",
            f"{lag.get('stack', '')}. wrk keeps {LAG_COMMANDS} requests in flight, each"
            " running one command with `hybrid.run_command` (plain Tornado handler:"
            " `/h/lag/sleep`, `/h/lag/true`); meanwhile `/h/lag/probe` measures, on the"
            " worker's loop, how late 5 ms sleeps wake. `true` exits at once, so it keeps"
            " few commands running but spawns as fast as the worker can: shown for"
            " information; the target is the `sleep` row. Standalone: `process_lag.py`, one"
            " loop without HTTP.",
            "",
            "| load | p50 | p99 | max | commands running (mean / max) | load req/s |"
            " met (p99 < 10 ms) |",
            "|---|---|---|---|---|---|---|",
        ]
        if lag.get("status") != "ok":
            lines.append(f"| {lag.get('status')} | | | | | | |")
        for phase, f in lag.get("phases", {}).items():
            if f.get("p99_ms") is None:
                lines.append(f"| {phase} | {f.get('error', 'n/a')} | | | | | |")
                continue
            load = f.get("load", {})
            lines.append(
                f"| {'no load' if phase == 'idle' else f'{LAG_COMMANDS} requests of `{phase}`'} |"
                f" {f['p50_ms']:.1f} ms | {f['p99_ms']:.1f} ms | {f['max_ms']:.1f} ms |"
                f" {f['commands_running_mean']:.0f} / {f['commands_running_max']} |"
                f" {load.get('rps', 0):,.0f} |"
                f" {'–' if phase == 'idle' else met_text(lag_met(f))} |"
            )
        s = lag.get("standalone", {})
        if "p99_ms" in s:
            lines.append(
                f"| standalone, {s['commands']} x `{s['command']}` | {s['p50_ms']:.1f} ms |"
                f" {s['p99_ms']:.1f} ms | {s['max_ms']:.1f} ms | {s['commands']} | – |"
                f" {met_text(s['p99_ms'] < LAG_TARGET_MS)} |"
            )
        lines.append("")
    idle = results.get("idle")
    if idle:
        lines += [
            f"## One worker holding {IDLE_CONNECTIONS:,} idle keep-alive connections",
            "",
            "`idle_conns.py` opens the connections (256 connecting at once), sends one GET on"
            " each, reads the answer and keeps the connection open; RSS of the worker process"
            " (not the master) after 50 warm-up requests, and its peak over 3 s of holding.",
            "",
            "| stack | request | held | RSS before | RSS held | per connection |"
            " RSS after close | time to open |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in idle.items():
            if "rss_held_mb" not in r:
                lines.append(f"| {name} | {r.get('status', '')} | | | | | | |")
                continue
            lines.append(
                f"| {name} | `{r['path']}` | {r['still_open_after_3s']:,}"
                f" (errors {sum(r['errors'].values())}) | {r['rss_before_mb']:.0f} MB |"
                f" **{r['rss_held_mb']:.0f} MB** | {r['kb_per_connection'] or 0:.1f} KB |"
                f" {r['rss_after_close_mb']:.0f} MB | {r['open_seconds']} s |"
            )
        lines.append("")
    lines += [
        "## Stacks",
        "",
        "Every stack but raw-tornado serves the same Django project (`scripts/bench/project`:"
        " same settings, Django's default `MIDDLEWARE`, the same table, `CONN_MAX_AGE` 60"
        " except where the configuration says otherwise, no TLS to MariaDB). The harness"
        " checks that each one's hello carries the default"
        " middleware's headers and that the list has 20 rows. gunicorn-sync runs at the same"
        f" process count as the others (the peer the targets use); gunicorn-sync-{SYNC_2C1}w"
        " is gunicorn's recommended 2 x cores + 1 workers, for reference only.",
        "",
        "| stack | processes | status | middleware check | configuration |",
        "|---|---|---|---|---|",
    ]
    for key, info in results["stacks"].items():
        lines.append(
            f"| {key.split('@')[0]} | {info.get('processes', key.split('@')[1])} | "
            f"{info['status'].replace('|', '/')} | {info.get('middleware', '–')} |"
            f" {info.get('note', '')} |"
        )
    lines.append("")
    return "\n".join(lines)
