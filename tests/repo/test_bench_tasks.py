"""The tasks benchmark's pure parts (``scripts/bench/tasks_stats.py``): the waiting window in
the worker's probe samples, lag quantiles, CPU and threads from /proc samples, the Redis
connections from CLIENT LIST, the loop-lag histogram of the metrics listener, the requests'
outcomes, the rounds' medians, the targets and the report. No server is started and nothing
is timed.

The package is loaded from its folder under a private name (``bench_package``).
"""

from __future__ import annotations

import math

import pytest
from bench_package import load

stats = load("tasks_stats")


def probe(publishing, waiting, lags=None):
    n = len(waiting)
    return {
        "t": [i * 0.01 for i in range(n)],
        "lag_ms": lags if lags is not None else [float(i) for i in range(n)],
        "publishing": publishing,
        "waiting": waiting,
    }


def test_quantile_nearest_rank():
    assert stats.quantile([], 0.5) is None
    assert stats.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    values = list(range(1, 101))
    assert stats.quantile(values, 0.99) == 99
    assert stats.quantile(values, 1.0) == 100
    assert stats.quantile([5.0], 0.99) == 5.0


def test_window_starts_after_the_last_publish_and_ends_with_the_last_waiter():
    p = probe([0, 2, 1, 0, 0, 0, 0, 0], [0, 0, 1, 3, 3, 1, 0, 0])
    assert stats.window(p) == (3, 5)
    assert stats.burst(p) == (1, 5)


def test_window_is_none_without_waiters_or_when_publishing_outlasts_them():
    assert stats.window(probe([0, 0], [0, 0])) is None
    assert stats.window(probe([1, 1, 1], [1, 1, 0])) is None
    assert stats.burst(probe([0, 0], [0, 0])) is None


def test_lag_figures_over_a_span():
    p = probe([0, 0, 0, 0], [0, 4, 2, 0], lags=[50.0, 1.0, 3.0, 9.0])
    figures = stats.lag_figures(p, (1, 2))
    assert figures["samples"] == 2
    assert figures["lag_max_ms"] == 3.0
    assert figures["lag_p99_ms"] == 3.0
    assert figures["waiters_first"] == 4 and figures["waiters_min"] == 2
    assert figures["seconds"] == pytest.approx(0.01)
    assert stats.lag_figures(p, None) == {"samples": 0}


def test_value_at_interpolates_and_clamps():
    samples = [{"t": 1.0, "x": 10.0}, {"t": 2.0, "x": 20.0}, {"t": 3.0, "x": None}]
    assert stats.value_at(samples, "x", 1.5) == pytest.approx(15.0)
    assert stats.value_at(samples, "x", 0.0) == 10.0
    assert stats.value_at(samples, "x", 9.0) == 20.0
    assert stats.value_at([], "x", 1.0) is None


def test_cpu_between_and_peak():
    samples = [{"t": float(t), "cpu": t * 0.25, "threads": 4 + (t == 2)} for t in range(5)]
    used, share = stats.cpu_between(samples, "cpu", 1.0, 3.0)
    assert used == pytest.approx(0.5) and share == pytest.approx(0.25)
    assert stats.cpu_between(samples, "cpu", 3.0, 3.0) == (None, None)
    assert stats.peak(samples, "threads", 1.0, 3.0) == 5
    assert stats.peak(samples, "threads", 10.0, 11.0) is None


def test_classify_clients_counts_the_workers_subscriber_and_its_channels():
    clients = [
        {"name": "hybrid-tasks-sub-42", "sub": "980"},
        {"name": "hybrid-tasks-get-42", "sub": "0"},
        {"name": "hybrid-tasks-sub-7", "sub": "3"},
        {"name": "", "sub": "0"},
        {"name": "tasks-bench-probe"},
    ]
    found = stats.classify_clients(clients, 42)
    assert found["total"] == 5 and found["hybrid"] == 3
    assert found["subscribers"] == 1 and found["getters"] == 1
    assert found["subscribed_channels"] == 980
    readings = [dict(found, t=1.0), dict(found, subscribed_channels=10, t=0.5)]
    assert stats.busiest(readings)["subscribed_channels"] == 980
    assert stats.busiest([]) == {}


METRICS = """# TYPE hybrid_event_loop_lag_seconds histogram
hybrid_event_loop_lag_seconds_bucket{le="0.001"} %d
hybrid_event_loop_lag_seconds_bucket{le="0.01"} %d
hybrid_event_loop_lag_seconds_bucket{le="+Inf"} %d
hybrid_event_loop_lag_seconds_count %d
"""


def test_histogram_delta_and_quantile():
    before = stats.parse_histogram(METRICS % (10, 10, 10, 10), "hybrid_event_loop_lag_seconds")
    after = stats.parse_histogram(METRICS % (108, 110, 110, 110), "hybrid_event_loop_lag_seconds")
    assert before == {0.001: 10.0, 0.01: 10.0, math.inf: 10.0}
    delta = stats.histogram_delta(before, after)
    assert delta == {0.001: 98.0, 0.01: 100.0, math.inf: 100.0}
    assert stats.histogram_quantile(delta, 0.5) == 0.001
    assert stats.histogram_quantile(delta, 0.99) == 0.01
    assert stats.histogram_quantile({}, 0.99) is None
    assert stats.histogram_quantile({0.001: 0.0, math.inf: 0.0}, 0.99) is None


def test_request_figures_count_failures_by_kind():
    outcomes = [
        {"status": 200, "ms": 2100.0},
        {"status": 200, "ms": 2300.0},
        {"status": 503, "ms": 5.0},
        {"status": None, "error": "TimeoutError", "ms": 60000.0},
    ]
    figures = stats.request_figures(outcomes)
    assert figures["requests"] == 4 and figures["ok"] == 2
    assert figures["failures"] == {"HTTP 503": 1, "TimeoutError": 1}
    assert figures["latency_min_ms"] == 2100.0 and figures["latency_max_ms"] == 2300.0


def fake_round(lag_p99, threads_added, ok=1000, subscribers=1):
    return {
        "ok": ok,
        "lag_p99_ms": lag_p99,
        "threads_added": threads_added,
        "subscribers": subscribers,
        "threads_before": 4,
    }


def test_summarize_takes_median_min_max():
    summary = stats.summarize([fake_round(3.0, 1), fake_round(9.0, 2), fake_round(5.0, 0)])
    assert summary["lag_p99_ms"] == {"median": 5.0, "min": 3.0, "max": 9.0}
    assert summary["window_s"] == {"median": None, "min": None, "max": None}


def test_targets_need_every_round():
    good = [fake_round(3.0, 1), fake_round(9.9, 3)]
    checks = stats.targets(good, 1000)
    assert all(check["met"] for check in checks.values())
    bad = stats.targets([fake_round(3.0, 1), fake_round(10.0, 900, ok=998, subscribers=2)], 1000)
    assert not bad["lag"]["met"] and bad["lag"]["values"] == [3.0, 10.0]
    assert not bad["threads"]["met"] and not bad["all_ok"]["met"]
    assert not bad["subscribers"]["met"]
    assert not stats.targets([], 1000)["lag"]["met"]


def test_round_figures_from_raw_readings():
    p = probe([0, 3, 0, 0, 0, 0], [0, 0, 3, 3, 1, 0], lags=[0.1, 20.0, 1.0, 2.0, 4.0, 0.1])
    samples = [
        {
            "t": t * 0.01,
            "worker_cpu": t * 0.001,
            "worker_threads": 4 + (t == 3),
            "celery_cpu": 0.0,
            "celery_threads": 10,
            "redis_cpu": 0.0,
            "bench_cpu": 0.0,
            "machine_cpu": t * 0.002,
        }
        for t in range(6)
    ]
    outcomes = [{"status": 200, "ms": 2000.0 + i} for i in range(3)]
    redis = [stats.classify_clients([{"name": "hybrid-tasks-sub-9", "sub": "3"}], 9)]
    figures = stats.round_figures(
        p, samples, outcomes, redis, METRICS % (0, 0, 0, 0), METRICS % (1, 2, 2, 2), 4
    )
    assert figures["lag_p99_ms"] == 4.0 and figures["burst_lag_p99_ms"] == 20.0
    assert figures["waiters_max"] == 3 and figures["publish_s"] == pytest.approx(0.01)
    assert figures["threads_added"] == 1
    assert figures["cpu_ms_per_s_window"] == pytest.approx(100.0)
    assert figures["others_cores_window"] == pytest.approx(0.1)
    assert figures["subscribers"] == 1 and figures["subscribed_channels"] == 3
    assert figures["metrics_lag_p99_le_ms"] == pytest.approx(10.0)
    assert figures["ok"] == 3


def test_render_markdown_states_targets_and_rounds():
    rounds = [dict(fake_round(3.0, 1), lag_p50_ms=0.2, window_s=1.5), fake_round(12.5, 2)]
    results = {
        "command": "scripts/bench/tasks",
        "date": "2026-01-01 00:00 UTC",
        "elapsed_s": 60,
        "machine": "2 cores",
        "serve": "hybrid serve ...",
        "requests": 1000,
        "seconds": 2.0,
        "rounds": rounds,
        "summary": stats.summarize(rounds),
        "targets": stats.targets(rounds, 1000),
        "failures": ["round 3: not run: boom"],
        "versions": {"celery": "5.7.0"},
    }
    text = stats.render_markdown(results)
    assert "# Awaiting Celery tasks" in text
    assert "| **loop lag p99 in the window (ms)** | 7.75 (3.00-12.50) |" in text
    assert "**missed** (3.00, 12.50 ms)" in text
    assert "no thread per waiter (at most 8 threads added), every round: **met**" in text
    assert "Not run: round 3: not run: boom" in text
    assert "celery 5.7.0" in text
