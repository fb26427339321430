"""results.md: the headline, the targets, every figure per process count and mode (medians
and min-max spreads of the rounds), hybrid behind nginx against direct, the lag and
idle-connection extras, and the stacks' configurations and database concurrency."""

from __future__ import annotations

from typing import Any

from .endpoints import ENDPOINTS
from .stacks import SYNC_2C1
from .targets import (
    CEILING,
    IDLE_CONNECTIONS,
    LAG_COMMANDS,
    LAG_TARGET_MS,
    MINE,
    cells,
    fastest_peer,
    fmt,
    lag_met,
    ok,
    table,
)


def fmt_ms(value: float | None) -> str:
    return fmt(value)


def met_text(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "**no**")


def rate(fig: dict[str, Any] | None) -> str:
    """``1,234 (1,100-1,300)``: the median req/s and the spread of the rounds."""
    if not ok(fig):
        return "–"
    if len(fig["rounds"]) < 2:
        return f"{fig['rps']:,.0f}"
    return f"{fig['rps']:,.0f} ({fig['rps_min']:,.0f}-{fig['rps_max']:,.0f})"


def times(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if ok(a) and ok(b) and b["rps"]:
        return f"**{a['rps'] / b['rps']:.2f}x**"
    return "–"


def measured_text(t: dict[str, Any]) -> str:
    measured = t.get("measured")
    if measured is None:
        return "–"
    unit = t.get("unit", "x")
    if unit == "ms":
        return f"p99 {measured:.1f} ms"
    if unit == "MB":
        return f"{measured:.0f} MB"
    if unit == "req/s":
        return f"{measured:,.0f} req/s"
    return f"{measured:.2f}x"


def rounds_text(t: dict[str, Any]) -> str:
    values = t.get("rounds")
    if not values:
        return "–"
    if t.get("unit") == "req/s":
        return ", ".join(f"{v:,.0f}" for v in values)
    return ", ".join("∞" if v == float("inf") else f"{v:.2f}" for v in values)


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m.get("versions", {})
    rounds = results.get("rounds", 1)
    endpoints = list(dict.fromkeys(r["endpoint"] for r in results["runs"]))
    lines = [
        "# hybrid vs the peers",
        "",
        f"{results['date']}; `{results.get('command', 'scripts/bench/run')}`"
        f" ({results['mode']} pass, {results['elapsed_s']} s); {m['nproc']} cores ({m['cpu']}),"
        f" Linux {m['kernel']}, Python {m['python']}, Django {v.get('django')}, Tornado"
        f" {v.get('tornado')}. Each endpoint: {results['seconds_per_endpoint']} s of"
        f" `{results['wrk']}`"
        + (
            f" after {results['warmup_s']} s of warm-up on hello and row per server start"
            if results.get("warmup_s")
            else ""
        )
        + f" (io-1000: at least 3 s), in {rounds} alternating round(s): each round starts"
        " every stack in turn, and each start is measured in every mode (`direct`: wrk on the"
        " stack's own port(s), spread over hybrid's one port per process by a Lua script;"
        " `nginx`: behind the nginx config `hybrid nginx` renders, the same for every stack)."
        " Figures are medians of the rounds, with their min-max spread in brackets; a target"
        " is met only when every round meets it. wrk runs on the same cores as the servers;"
        " MariaDB on loopback, no TLS. Ratios compare stacks of this run in the same process"
        " count and mode only; absolute numbers depend on the machine and its neighbours.",
        "",
        "## Headline",
        "",
        "hybrid (DjangoHandler through the default middleware, native MySQL) against the"
        " fastest peer (gunicorn sync/gthread/gevent, uvicorn: highest median) and against raw"
        " Tornado + aiomysql (the ceiling), at the same process count and in the same mode.",
        "",
        "| processes | mode | endpoint | hybrid req/s | hybrid p99 | fastest peer | peer req/s |"
        " peer p99 | hybrid / peer | raw-tornado req/s | hybrid / raw-tornado |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for group, mode in cells(results):
        figures = table(results, group, mode)
        for endpoint in endpoints:
            if not any(e == endpoint for e, _ in figures):
                continue
            a = figures.get((endpoint, MINE))
            best = fastest_peer(figures, endpoint)
            raw = figures.get((endpoint, CEILING))
            lines.append(
                f"| {group} | {mode} | {endpoint} | {rate(a)} |"
                f" {fmt(a['p99_ms']) if ok(a) else '–'} | {best['stack'] if best else '–'} |"
                f" {rate(best)} | {fmt(best['p99_ms']) if best else '–'} | {times(a, best)} |"
                f" {rate(raw)} | {times(a, raw)} |"
            )
    lines += [
        "",
        "## Performance targets",
        "",
        f"Met only when each of the {rounds} round(s) meets it (round i of hybrid against"
        ' round i of the other, which ran right after it); "per round" lists the ratios (or'
        " req/s) of each round.",
        "",
        "| target | measured (medians) | per round | detail | met |",
        "|---|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        lines.append(
            f"| {t['target']} | {measured_text(t)} | {rounds_text(t)} | {t.get('detail', '')} |"
            f" {met_text(t.get('met'))} |"
        )
    lines.append("")
    groups = sorted({g for g, _ in cells(results)})
    if any(mode == "nginx" for _, mode in cells(results)):
        lines += [
            "## hybrid behind nginx against hybrid direct",
            "",
            "The same server start, direct first and then behind nginx; nginx's CPU per"
            " request is the CPU time of its workers over the run (from /proc) divided by the"
            " requests wrk completed.",
            "",
            "| processes | endpoint | hybrid direct | hybrid behind nginx | nginx / direct |"
            " nginx CPU per request (hybrid) | nginx CPU per request (peers, median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for group in groups:
            direct, nginx = table(results, group, "direct"), table(results, group, "nginx")
            for endpoint in endpoints:
                a, b = nginx.get((endpoint, MINE)), direct.get((endpoint, MINE))
                if a is None and b is None:
                    continue
                cpu = a.get("nginx_cpu_us_per_request") if ok(a) else None
                others = [
                    f["nginx_cpu_us_per_request"]
                    for (e, s), f in nginx.items()
                    if e == endpoint and s != MINE and ok(f) and f.get("nginx_cpu_us_per_request")
                ]
                others.sort()
                peers_cpu = f"{others[len(others) // 2]:.0f} us" if others else "–"
                lines.append(
                    f"| {group} | {endpoint} | {rate(b)} | {rate(a)} | {times(a, b)} |"
                    f" {f'{cpu:.0f} us' if cpu is not None else '–'} | {peers_cpu} |"
                )
        lines.append("")
    for group, mode in cells(results):
        figures = table(results, group, mode)
        stacks = list(
            dict.fromkeys(
                r["stack"]
                for r in results["runs"]
                if r["group"] == group and r.get("mode", "direct") == mode
            )
        )
        lines += [
            f"## {group} process(es), {mode}: every figure",
            "",
            "Cells: median req/s (min-max of the rounds); p50 / p99 latency (medians); errors"
            " (non-2xx + socket errors, all rounds); peak RSS of the largest process (a worker)"
            " and of the server's whole tree"
            + ("; nginx's CPU per request (median)" if mode == "nginx" else "")
            + ".",
            "",
        ]
        lines.append("| endpoint (connections) | " + " | ".join(stacks) + " |")
        lines.append("|---" * (len(stacks) + 1) + "|")
        for endpoint in endpoints:
            row = []
            for stack in stacks:
                r = figures.get((endpoint, stack))
                if r is None:
                    row.append("–")
                elif not ok(r):
                    row.append(r["status"].replace("|", "/")[:70])
                else:
                    cell = (
                        f"**{rate(r)}**<br>{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p99_ms'])}"
                        f"<br>err {r['errors']}<br>{r['rss_process_mb']:.0f} MB/proc,"
                        f" {r['rss_mb']:.0f} total"
                    )
                    if r.get("nginx_cpu_us_per_request") is not None:
                        cell += f"<br>nginx {r['nginx_cpu_us_per_request']:.0f} us/req"
                    if len(r["rounds"]) < r["rounds_run"]:
                        cell += f"<br>{len(r['rounds'])} of {r['rounds_run']} rounds"
                    row.append(cell)
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            lines.append(f"| {endpoint} ({conns}) | " + " | ".join(row) + " |")
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
    profile = results.get("profile")
    if profile:
        lines += ["## Profiles", ""]
        if profile.get("status") != "ok":
            lines += [f"py-spy: {profile.get('status')}", ""]
        else:
            lines += [
                f"py-spy on the worker of {profile['worker']}, while wrk drives the endpoint"
                " (a pass of its own, after the rounds): speedscope JSON (open it in"
                " speedscope.app) and an SVG flame graph, next to this file.",
                "",
            ]
            for endpoint, files in profile.get("files", {}).items():
                shown = [f"[{f}]({f})" if not f.startswith("failed") else f for f in files.values()]
                lines.append(f"- {endpoint}: " + ", ".join(shown))
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
        " (gunicorn's recommended 2 x cores + 1 workers, for reference only) runs only when"
        " `--stacks` names it. Database concurrency: how many queries one process can have in"
        " flight on row, list and query (64 wrk connections).",
        "",
        "| stack | processes | status | middleware check | database concurrency per process |"
        " configuration |",
        "|---|---|---|---|---|---|",
    ]
    for key, info in results["stacks"].items():
        lines.append(
            f"| {key.split('@')[0]} | {info.get('processes', key.split('@')[1])} | "
            f"{info['status'].replace('|', '/')} | {info.get('middleware', '–')} |"
            f" {info.get('db', '–')} | {info.get('note', '')} |"
        )
    lines.append("")
    return "\n".join(lines)
