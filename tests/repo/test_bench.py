"""The benchmark scripts (``scripts/bench``) stay importable and their pure parts right: wrk's
output parsed from captured samples, the Lua script that spreads wrk over several ports, the
nginx config rendered for a stack, the order of the alternating rounds, their medians and
spreads, the targets (met only when every round meets them), the database concurrency of
each stack and the report's tables, one real server started and stopped by the harness, and
every entry's ``--help`` run as a module. Nothing here is timed.

The package is loaded from its folder under a private name (no ``sys.path`` change), so
these tests do not depend on the folder pytest runs from.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench_package import REPO, load

wrk = load("wrk")
harness = load("harness")
rounds = load("rounds")
targets = load("targets")
report = load("report")
proxy = load("proxy")
stacks = load("stacks")
paths = load("paths")

# Captured from wrk 4.1.0 (Debian) against the benchmark stacks and a 404.
HELLO = """\
Running 2s test @ http://127.0.0.1:58571/h/hello
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    33.56ms    8.07ms  51.65ms   64.41%
    Req/Sec     0.94k   247.39     1.29k    42.50%
  Latency Distribution
     50%   30.14ms
     75%   40.10ms
     90%   45.74ms
     99%   50.74ms
  3776 requests in 2.02s, 0.98MB read
Requests/sec:   1873.48
Transfer/sec:    495.81KB
"""
# wrk pads seconds with a space: those lines end in one.
TIMEOUTS = (
    "Running 5s test @ http://127.0.0.1:49555/sync/io\n"
    "  2 threads and 1000 connections\n"
    "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n"
    "    Latency     4.11s   513.59ms   5.00s    57.45%\n"
    "    Req/Sec   160.22     77.21   323.00     75.00%\n"
    "  Latency Distribution\n"
    "     50%    4.12s \n"
    "     75%    4.55s \n"
    "     90%    4.84s \n"
    "     99%    4.99s \n"
    "  552 requests in 5.05s, 148.51KB read\n"
    "  Socket errors: connect 0, read 0, write 0, timeout 2\n"
    "Requests/sec:    109.35\n"
    "Transfer/sec:     29.42KB\n"
)
NONE_COMPLETED = """\
Running 5s test @ http://127.0.0.1:60433/sync/io
  2 threads and 1000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 5.03s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
"""
NOT_FOUND = """\
Running 1s test @ http://127.0.0.1:18765/missing
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.95ms    3.26ms  33.83ms   90.43%
    Req/Sec   802.10    132.50     0.91k    90.00%
  Latency Distribution
     50%    1.82ms
     75%    3.83ms
     90%    6.11ms
     99%   16.69ms
  799 requests in 1.00s, 405.74KB read
  Non-2xx or 3xx responses: 799
Requests/sec:    795.96
Transfer/sec:    404.20KB
"""


# --------------------------------------------------------------------------- wrk


def test_wrk_parse_reads_rate_requests_and_quantiles() -> None:
    figures = wrk.parse(HELLO)
    assert figures == {
        "rps": 1873.48,
        "requests": 3776,
        "p50_ms": 30.14,
        "p75_ms": 40.1,
        "p90_ms": 45.74,
        "p99_ms": 50.74,
        "non2xx": 0,
        "socket_errors": 0,
        "socket_error_kinds": {},
        "errors": 0,
    }


def test_wrk_parse_counts_socket_errors_and_seconds() -> None:
    figures = wrk.parse(TIMEOUTS)
    assert figures["p50_ms"] == pytest.approx(4120.0)
    assert figures["p99_ms"] == pytest.approx(4990.0)
    assert figures["socket_error_kinds"] == {"connect": 0, "read": 0, "write": 0, "timeout": 2}
    assert (figures["socket_errors"], figures["errors"]) == (2, 2)


def test_wrk_parse_counts_non_2xx_as_errors() -> None:
    figures = wrk.parse(NOT_FOUND)
    assert (figures["non2xx"], figures["socket_errors"], figures["errors"]) == (799, 0, 799)


def test_wrk_parse_shows_no_latency_when_nothing_completed() -> None:
    figures = wrk.parse(NONE_COMPLETED)
    assert (figures["rps"], figures["requests"]) == (0.0, 0)
    assert [figures[f"p{q}_ms"] for q in wrk.QUANTILES] == [None] * 4


def test_wrk_parse_refuses_output_without_a_rate() -> None:
    with pytest.raises(RuntimeError, match="no Requests/sec"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.50us", 0.8125), ("1.20ms", 1.2), ("2.00s", 2000.0), ("1.50m", 90000.0)],
)
def test_wrk_units_in_milliseconds(text: str, ms: float) -> None:
    assert wrk.to_ms(text) == pytest.approx(ms)


def test_wrk_command_lines() -> None:
    url = "http://127.0.0.1:8000/h/hello"
    assert wrk.command(url, 64, 10, timeout="5s") == [
        *("wrk", "-t2", "-c64", "-d10s", "--latency", "--timeout", "5s", url)
    ]
    assert wrk.command(url, 256, 8.0, threads=4, wrk="/opt/wrk") == [
        *("/opt/wrk", "-t4", "-c256", "-d8s", "--latency", url)
    ]
    assert wrk.command(url, 32, 5, latency=False) == ["wrk", "-t2", "-c32", "-d5s", url]


# --------------------------------------------------------------------------- rounds


def test_alternating_rounds_run_both_ways_in_turn() -> None:
    calls: list[str] = []
    rates = iter([100.0, 50.0, 300.0, 60.0, 200.0, 40.0])

    async def way(name: str) -> tuple[float, float]:
        calls.append(name)
        return next(rates), 10.0 if name == "first" else 25.0

    async def first() -> tuple[float, float]:
        return await way("first")

    async def second() -> tuple[float, float]:
        return await way("second")

    firsts, seconds = asyncio.run(rounds.alternate(3, first, second))
    assert calls == ["first", "second"] * 3
    assert [rate for rate, _ in firsts] == [100.0, 300.0, 200.0]
    comparison = rounds.compare(firsts, seconds)
    assert (comparison.first_rate, comparison.second_rate) == (200.0, 50.0)
    assert comparison.rate_ratio == pytest.approx(4.0)
    assert comparison.cpu_ratio == pytest.approx(2.5)


def test_medians_of_an_even_number_of_rounds() -> None:
    comparison = rounds.compare([(10.0, 4.0), (30.0, 2.0)], [(5.0, 8.0), (15.0, 12.0)])
    assert (comparison.first_rate, comparison.second_rate) == (20.0, 10.0)
    assert (comparison.first_cpu_us, comparison.second_cpu_us) == (3.0, 10.0)
    assert comparison.rate_ratio == pytest.approx(2.0)


# --------------------------------------------------------------------------- wrk spread


def test_threads_are_a_multiple_of_the_ports() -> None:
    assert [wrk.threads_for(n) for n in (1, 2, 3, 4)] == [2, 2, 3, 4]
    assert wrk.threads_for(2, wanted=4) == 4
    assert wrk.threads_for(3, wanted=4) == 6


def test_spread_script_gives_each_thread_its_port_in_turn() -> None:
    script = wrk.spread_script([8001, 8002])
    assert "local ports = {8001, 8002}" in script
    assert "function setup(thread)" in script
    assert 'thread.addr = wrk.lookup("127.0.0.1", tostring(port))[1]' in script
    # setup() as wrk calls it, once per thread in order: threads 1-4 get 8001, 8002, 8001...
    created, ports, chosen = 0, [8001, 8002], []
    for _ in range(4):
        chosen.append(ports[created % len(ports)])  # ports[created % #ports + 1] in Lua
        created += 1
    assert chosen == [8001, 8002, 8001, 8002]
    assert script.index("local port = ports[created % #ports + 1]") < script.index(
        "created = created + 1"
    )


def test_wrk_command_with_a_script() -> None:
    url = "http://127.0.0.1:8001/h/hello"
    assert wrk.command(url, 64, 3, threads=2, script="/tmp/spread.lua") == [
        *("wrk", "-t2", "-c64", "-d3s", "--latency", "-s", "/tmp/spread.lua", url)
    ]


def test_spread_script_reaches_every_port(tmp_path: Path) -> None:
    """Direct at two ports: wrk's threads split between two servers (needs wrk)."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    servers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "hello").write_text(name)
        port = harness.free_port()
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        servers.append(
            harness.Server(
                harness.Stack(name, 1, argv, port, "/", cwd=folder), dict(os.environ), str(tmp_path)
            )
        )
    try:
        for server in servers:
            assert server.ready() is None
        script = tmp_path / "spread.lua"
        script.write_text(wrk.spread_script([s.stack.port for s in servers]))
        argv = wrk.command(servers[0].base + "hello", 4, 1, threads=2, script=str(script))
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        assert wrk.parse(out)["requests"] > 0
        for server in servers:  # http.server logs each request it answers
            assert "GET /hello" in "\n".join(server.log_tail(1000))
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- nginx


def test_nginx_config_for_a_peer_is_hybrids_with_its_one_port(tmp_path: Path) -> None:
    from hybrid.config import Config
    from hybrid.nginx.render import render_config

    text = proxy.render([5001], 6001, tmp_path)
    expected = render_config(
        Config(ports=(5001,), host="127.0.0.1"), prefix=tmp_path, listen_port=6001
    )
    assert text == expected
    assert "server 127.0.0.1:5001 max_fails=0;" in text
    assert "listen 127.0.0.1:6001;" in text
    assert "proxy_next_upstream_tries 1;" in text


def test_nginx_config_for_hybrid_lists_one_server_per_process(tmp_path: Path) -> None:
    text = proxy.render([5001, 5002], 6001, tmp_path)
    peer = proxy.render([5001], 6001, tmp_path)
    assert "server 127.0.0.1:5001 max_fails=0;\n" in text
    assert "server 127.0.0.1:5002 max_fails=0;\n" in text
    assert "proxy_next_upstream_tries 2;" in text
    # The same config but for the upstream servers (and how many tries they allow).
    same = [line for line in text.splitlines() if "5002" not in line and "tries" not in line]
    assert same == [line for line in peer.splitlines() if "tries" not in line]


def test_nginx_cpu_is_the_workers_time_between_readings() -> None:
    assert proxy.cpu_delta({1: 1.0, 2: 2.0}, {1: 1.5, 2: 2.25, 3: 9.0}) == pytest.approx(0.75)


# --------------------------------------------------------------------------- rounds, stacks


def test_rounds_run_every_stack_then_again() -> None:
    order = rounds.schedule(3, ["hybrid", "raw-tornado", "gunicorn-gevent"])
    assert order == [
        (1, "hybrid"),
        (1, "raw-tornado"),
        (1, "gunicorn-gevent"),
        (2, "hybrid"),
        (2, "raw-tornado"),
        (2, "gunicorn-gevent"),
        (3, "hybrid"),
        (3, "raw-tornado"),
        (3, "gunicorn-gevent"),
    ]
    assert rounds.spread([300.0, 100.0, 200.0]) == (200.0, 100.0, 300.0)


def test_every_round_must_meet() -> None:
    def at_least(a: float, b: float) -> bool:
        return a >= 1.2 * b

    assert rounds.every_round([130.0, 125.0, 121.0], [100.0] * 3, at_least) is True
    assert rounds.every_round([200.0, 119.0, 200.0], [100.0] * 3, at_least) is False
    assert rounds.every_round([], [], at_least) is None
    assert rounds.every_round([130.0, 130.0], [100.0] * 3, at_least) is None


def test_database_concurrency_per_stack() -> None:
    assert stacks.DB_POOL == stacks.DB_CONNECTIONS == 64
    table = {name: stacks.db_concurrency(name)[0] for name in stacks.STACKS}
    assert table == {
        "hybrid": 64,
        "raw-tornado": 64,
        "gunicorn-sync": 1,
        "gunicorn-gthread": stacks.THREADS,
        "gunicorn-gevent": 64,
        "uvicorn": 64,
    }
    assert stacks.db_concurrency("hybrid", 32)[0] == 32
    assert stacks.db_concurrency(stacks.REFERENCE)[0] == 1
    assert "--db-threads 64" in stacks.db_text("hybrid")
    hybrid = stacks.hybrid_stack(2)
    assert len(hybrid.ports) == 2 and hybrid.port == hybrid.ports[0]
    assert (
        "--db-threads" in hybrid.argv and hybrid.argv[hybrid.argv.index("--db-threads") + 1] == "64"
    )
    assert "--nginx" not in hybrid.argv  # nginx is the harness's, the same for every stack
    gevent = stacks.gunicorn_stack("gevent", 2)
    assert gevent.ports == [gevent.port] and gevent.argv[0] == str(paths.BENCH_PYTHON)
    assert stacks.raw_stack(1).env == {"BENCH_POOL_SIZE": "64"}


# --------------------------------------------------------------------------- targets, report


def run(
    stack: str,
    endpoint: str,
    rps: float,
    group: int = 1,
    mode: str = "direct",
    round: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "stack": stack,
        "endpoint": endpoint,
        "group": group,
        "mode": mode,
        "round": round,
        "status": "ok",
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": 12.5,
        "errors": 0,
        "rss_mb": 100.0,
        "rss_process_mb": 50.0,
        **extra,
    }


def rounds_of(stack: str, endpoint: str, rates: list[float], **extra: Any) -> list[dict[str, Any]]:
    return [run(stack, endpoint, r, round=n, **extra) for n, r in enumerate(rates, 1)]


def results() -> dict[str, Any]:
    runs = [
        *rounds_of("hybrid", "row", [1000.0, 1100.0, 900.0]),
        *rounds_of("raw-tornado", "row", [2000.0, 2000.0, 2000.0]),
        *rounds_of("gunicorn-gevent", "row", [500.0, 500.0, 500.0]),
        *rounds_of("uvicorn", "row", [800.0, 800.0, 800.0]),
        *rounds_of(
            "hybrid", "row", [900.0, 900.0, 900.0], mode="nginx", nginx_cpu_us_per_request=80.0
        ),
        *rounds_of(
            "uvicorn", "row", [700.0, 700.0, 700.0], mode="nginx", nginx_cpu_us_per_request=90.0
        ),
        *rounds_of("hybrid", "io-1000", [900.0, 900.0, 900.0]),
        *rounds_of("raw-tornado", "io-1000", [1000.0, 1000.0, 1000.0]),
        *rounds_of("gunicorn-sync", "io-1000", [0.0, 0.0, 0.0], p99_ms=None),
        *[
            {
                "stack": "uvicorn",
                "endpoint": "io-1000",
                "group": 1,
                "mode": "direct",
                "round": n,
                "status": "not run: x | y",
            }
            for n in (1, 2, 3)
        ],
        *rounds_of("hybrid", "query", [1250.0, 1230.0, 1100.0]),
    ]
    return {
        "date": "2025-01-01 00:00 UTC",
        "command": "scripts/bench/run",
        "mode": "full",
        "elapsed_s": 10,
        "seconds_per_endpoint": 3,
        "warmup_s": 1,
        "rounds": 3,
        "wrk": "wrk -t{threads} -c{connections} -d{seconds}s --latency --timeout 5s",
        "machine": {"nproc": 2, "cpu": "cpu", "kernel": "6", "python": "3.11", "versions": {}},
        "runs": runs,
        "stacks": {
            "hybrid@1": {
                "status": "ok",
                "processes": 1,
                "note": "DjangoHandler",
                "db": "64 (pool)",
            },
            "uvicorn@1": {"status": "ok", "processes": 1, "middleware": "default chain"},
        },
    }


def test_figures_are_medians_and_spreads_of_the_rounds() -> None:
    cells = targets.table(results(), 1, "direct")
    row = cells[("row", "hybrid")]
    assert (row["rps"], row["rps_min"], row["rps_max"]) == (1000.0, 900.0, 1100.0)
    assert [r["round"] for r in row["rounds"]] == [1, 2, 3]
    assert cells[("io-1000", "uvicorn")]["status"] == "not run: x | y"
    assert ("row", "hybrid") in targets.table(results(), 1, "nginx")
    assert targets.cells(results()) == [(1, "direct"), (1, "nginx")]


def test_fastest_peer_is_the_best_equal_count_peer_that_ran() -> None:
    cells = targets.table(results(), 1)
    assert targets.fastest_peer(cells, "row")["stack"] == "uvicorn"
    assert targets.fastest_peer(cells, "io-1000")["stack"] == "gunicorn-sync"
    assert targets.fastest_peer(cells, "hello") is None


def test_targets_are_met_only_when_every_round_meets_them() -> None:
    evaluated = {t["target"]: t for t in targets.evaluate_targets(results())}
    peer = evaluated["row: hybrid >= 1.2x the fastest peer, p99 no worse (1 process(es), direct)"]
    # Medians 1,000 vs 800 (1.25x), but round 3 is 900 vs 800: not met.
    assert (peer["measured"], peer["rounds"], peer["met"]) == (1.25, [1.25, 1.375, 1.125], False)
    raw = evaluated["row: hybrid >= 0.7x raw-tornado (1 process(es), direct)"]
    assert (raw["measured"], raw["met"]) == (0.5, False)
    sync = evaluated[
        "io-1000: hybrid >= 1.2x the fastest peer, p99 no worse (1 process(es), direct)"
    ]
    assert sync["met"] is True  # gunicorn-sync completed nothing: no rate, no p99
    assert "completed no request" in sync["detail"]
    nginx_peer = evaluated[
        "row: hybrid >= 1.2x the fastest peer, p99 no worse (1 process(es), nginx)"
    ]
    assert nginx_peer["against"] == "uvicorn"  # nginx against nginx, never across modes
    assert nginx_peer["rounds"] == [1.286] * 3 and nginx_peer["met"] is True
    behind = evaluated["row: hybrid behind nginx >= 0.9x hybrid direct (1 process(es))"]
    assert behind["rounds"] == [0.9, pytest.approx(0.818, abs=1e-3), 1.0]
    assert behind["met"] is False
    query = evaluated[
        "query: hybrid >= 1,216 req/s (0.95 x 64 / 50 ms) and p99 <= 60 ms (1 process(es), direct)"
    ]
    assert (query["measured"], query["rounds"], query["met"]) == (1230, [1250, 1230, 1100], False)
    assert not any("raw-tornado" in t and "nginx" in t for t in evaluated)  # raw not behind it


def test_a_missing_round_meets_nothing() -> None:
    data = results()
    data["runs"] = [
        r for r in data["runs"] if not (r["stack"] == "uvicorn" and r.get("round") == 2)
    ]
    evaluated = {t["target"]: t for t in targets.evaluate_targets(data)}
    peer = evaluated["row: hybrid >= 1.2x the fastest peer, p99 no worse (1 process(es), direct)"]
    assert peer["met"] is None


def test_lag_is_judged_only_with_the_commands_running() -> None:
    running = {"p99_ms": 4.0, "commands_running_mean": 195}
    assert targets.lag_met(running) is True
    assert targets.lag_met({**running, "commands_running_mean": 20}) is None
    assert targets.lag_met({**running, "p99_ms": 12.0}) is False


def test_report_tables() -> None:
    data = results()
    data["targets"] = targets.evaluate_targets(data)
    text = report.render_markdown(data)
    assert text.startswith("# hybrid vs the peers\n\n2025-01-01 00:00 UTC; `scripts/bench/run")
    assert (
        "| 1 | direct | row | 1,000 (900-1,100) | 12 ms | uvicorn | 800 (800-800) | 12 ms |"
        " **1.25x** | 2,000 (2,000-2,000) | **0.50x** |\n"
    ) in text
    assert "| 1 | nginx | row | 900 (900-900) | 12 ms | uvicorn | 700 (700-700) |" in text
    assert (
        "| row: hybrid >= 0.7x raw-tornado (1 process(es), direct) | 0.50x | 0.50, 0.55, 0.45 |"
        in text
    )
    assert "| 1 | row | 1,000 (900-1,100) | 900 (900-900) | **0.90x** | 80 us | 90 us |" in text
    assert (
        "| io-1000 (1000) | **900 (900-900)**<br>5.0 ms / 12 ms<br>err 0<br>50 MB/proc, 100 total |"
    ) in text
    assert "nginx 80 us/req" in text
    assert "not run: x / y" in text  # a cell never splits the table
    assert "| hybrid | 1 | ok | – | 64 (pool) | DjangoHandler |" in text
    assert "| uvicorn | 1 | ok | default chain | – |  |" in text


@pytest.mark.parametrize(
    ("ms", "shown"), [(None, "n/a"), (0.26, "0.3 ms"), (9.94, "9.9 ms"), (1234.5, "1,234 ms")]
)
def test_latency_format(ms: float | None, shown: str) -> None:
    assert report.fmt_ms(ms) == shown


# --------------------------------------------------------------------------- harness


def test_server_starts_answers_and_stops_with_its_session(tmp_path: Path) -> None:
    port = harness.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    stack = harness.Stack("http", 1, argv, port, "/", cwd=tmp_path)
    (tmp_path / "hello").write_text("hello")
    with harness.Server(stack, dict(os.environ), str(tmp_path)) as server:
        assert server.ready() is None
        status, _, body = harness.get(server.base + "hello")
        assert (status, body) == (200, b"hello")
        assert harness.get(server.base + "missing")[0] == 404
        assert harness.tree_pids(server.proc.pid) == [server.proc.pid]
        assert server.worker_pid() == server.proc.pid  # no children: the root serves
        assert harness.rss_sample(server.proc.pid)[0] > 0
    assert server.proc.returncode is not None
    assert server.logfile.closed


def test_tree_of_this_process_holds_its_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in harness.tree_pids(os.getpid())
        assert child.pid in harness.descendants(os.getpid())
        assert harness.cpu_seconds({os.getpid(): "python"})[os.getpid()] > 0
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------------- entries

ENTRIES = [
    "peers",
    "plot",
    "scaling",
    "bridge_overhead",
    "native_mysql",
    "idle_conns",
    "process_lag",
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_runs_as_a_module(entry: str) -> None:
    """Each entry's ``--help`` as ``python -m scripts.bench.<entry>`` from the repository."""
    done = subprocess.run(
        [sys.executable, "-m", f"scripts.bench.{entry}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
