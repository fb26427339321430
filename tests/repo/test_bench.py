"""The benchmark scripts (``scripts/bench``) stay importable and their pure parts right: wrk's
output parsed from captured samples, the medians and ratios of alternating rounds, the
targets and the report's tables, one real server started and stopped by the harness, and
every entry's ``--help`` run as a module.

The package is loaded from its folder under a private name (no ``sys.path`` change), so
these tests do not depend on the folder pytest runs from.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
PACKAGE = "_hybrid_bench"


def load(module: str) -> ModuleType:
    """``scripts/bench/<module>.py``, imported as a submodule of the package."""
    if PACKAGE not in sys.modules:
        # paths.py imports nothing of the package: run on its own, it imports the package.
        runpy.run_path(str(BENCH / "paths.py"))["import_package"](PACKAGE, BENCH)
    return importlib.import_module(f"{PACKAGE}.{module}")


wrk = load("wrk")
harness = load("harness")
rounds = load("rounds")
targets = load("targets")
report = load("report")

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


# --------------------------------------------------------------------------- targets, report


def run(stack: str, endpoint: str, rps: float, group: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "stack": stack,
        "endpoint": endpoint,
        "group": group,
        "status": "ok",
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": 12.5,
        "errors": 0,
        "rss_mb": 100.0,
        "rss_process_mb": 50.0,
        **extra,
    }


def results() -> dict[str, Any]:
    runs = [
        run("hybrid", "row", 1000.0),
        run("raw-tornado", "row", 2000.0),
        run("gunicorn-gevent", "row", 500.0),
        run("uvicorn", "row", 800.0),
        run("hybrid", "io-1000", 900.0),
        run("raw-tornado", "io-1000", 1000.0),
        run("gunicorn-sync", "io-1000", 0.0),
        {"stack": "uvicorn", "endpoint": "io-1000", "group": 1, "status": "not run: x | y"},
    ]
    return {
        "date": "2025-01-01 00:00 UTC",
        "command": "scripts/bench/run --quick",
        "mode": "quick",
        "elapsed_s": 10,
        "seconds_per_endpoint": 2,
        "warmup_s": 0,
        "wrk": "wrk -t2 -c{connections} -d{seconds}s --latency --timeout 5s",
        "machine": {"nproc": 2, "cpu": "cpu", "kernel": "6", "python": "3.11", "versions": {}},
        "runs": runs,
        "stacks": {
            "hybrid@1": {"status": "ok", "processes": 1, "note": "DjangoHandler"},
            "uvicorn@1": {"status": "ok", "processes": 1, "middleware": "default chain"},
        },
    }


def test_fastest_peer_is_the_best_equal_count_peer_that_ran() -> None:
    cells = targets.table(results(), 1)
    assert targets.fastest_peer(cells, "row")["stack"] == "uvicorn"
    assert targets.fastest_peer(cells, "io-1000")["stack"] == "gunicorn-sync"
    assert targets.fastest_peer(cells, "hello") is None


def test_ratio_targets() -> None:
    evaluated = {t["target"]: t for t in targets.evaluate_targets(results())}
    raw = evaluated["row: hybrid >= 0.85x raw-tornado (1 process(es))"]
    assert (raw["measured"], raw["met"], raw["detail"]) == (0.5, False, "1,000 vs 2,000 req/s")
    gevent = evaluated["row: hybrid >= 1.3x gunicorn-gevent (1 process(es))"]
    assert (gevent["measured"], gevent["met"]) == (2.0, True)
    sync = evaluated["io-1000: hybrid >= 10.0x gunicorn-sync (1 process(es))"]
    assert (sync["measured"], sync["met"]) == (None, True)
    assert sync["detail"] == "gunicorn-sync completed no request"
    assert evaluated["query: hybrid >= 0.9x raw-tornado (1 process(es))"]["met"] is None


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
        "| 1 | row | 1,000 | uvicorn 800 | **1.25x** | 2,000 | **0.50x** |\n"
        "| 1 | io-1000 | 900 | gunicorn-sync 0 | – | 1,000 | **0.90x** |\n"
    ) in text
    assert "| row: hybrid >= 0.85x raw-tornado (1 process(es)) | 0.50x |" in text
    assert "| io-1000 (1000) | **900**<br>5.0 ms / 12 ms<br>err 0<br>50 MB/proc, 100 total |" in (
        text
    )
    assert "not run: x / y" in text  # a cell never splits the table
    assert "| hybrid | 1 | ok | – | DjangoHandler |" in text
    assert "| uvicorn | 1 | ok | default chain |  |" in text


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

ENTRIES = ["peers", "scaling", "bridge_overhead", "native_mysql", "idle_conns", "process_lag"]


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
