"""The pure parts of the tasks benchmark (``tasks_wait.py``): the waiting window found in
the worker's probe samples, the event-loop lag in it, CPU time and threads read off the
/proc samples taken meanwhile, the Redis connections read from CLIENT LIST, the loop-lag
histogram of ``--metrics-port``, every request's outcome, one round's figures, the rounds'
medians and spreads, the targets, and the report (``tasks_wait.md``). Nothing here opens a
socket."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The targets: the worker's event-loop lag p99 below this while every request waits for its
# task, in every round...
LAG_TARGET_MS = 10.0
# ...and no thread per waiter: the worker's threads during the burst at most this many above
# what it had before (its publish pool, hybrid.tasks.publish.PUBLISH_THREADS = 4, may still
# be filling up; 1,000 waiters with a thread each would be ~1,000).
THREAD_ALLOWANCE = 8
# One subscriber connection per worker (CLIENT LIST name hybrid-tasks-sub-PID).
SUBSCRIBERS_PER_WORKER = 1


def quantile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values`` (nearest rank, unsorted input), None if
    empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * fraction) - 1))]


# --------------------------------------------------------------------------- the probe


def window(probe: Mapping[str, Sequence[Any]]) -> tuple[int, int] | None:
    """(first, last) index of the waiting window in the probe's samples: from the first
    sample after the last one with a request still publishing, to the last one with a
    request waiting; None when no sample shows every request published while some wait."""
    publishing, waiting = probe["publishing"], probe["waiting"]
    busy = [i for i, n in enumerate(waiting) if n > 0]
    if not busy:
        return None
    sending = [i for i, n in enumerate(publishing) if n > 0]
    first = sending[-1] + 1 if sending else busy[0]
    last = busy[-1]
    return (first, last) if first <= last else None


def burst(probe: Mapping[str, Sequence[Any]]) -> tuple[int, int] | None:
    """(first, last) index of the samples with any request publishing or waiting."""
    active = [
        i
        for i, (p, w) in enumerate(zip(probe["publishing"], probe["waiting"], strict=True))
        if p or w
    ]
    return (active[0], active[-1]) if active else None


def lag_figures(probe: Mapping[str, Sequence[Any]], span: tuple[int, int] | None) -> dict:
    """Loop lag p50/p99/max (ms) over the samples ``span`` covers, its length in seconds,
    and the waiters at its start, at least and at most."""
    if span is None:
        return {"samples": 0}
    first, last = span
    lags = list(probe["lag_ms"][first : last + 1])
    waiting = list(probe["waiting"][first : last + 1])
    times = probe["t"]
    return {
        "samples": len(lags),
        "start": times[first],
        "end": times[last],
        "seconds": round(times[last] - times[first], 3),
        "lag_p50_ms": quantile(lags, 0.5),
        "lag_p99_ms": quantile(lags, 0.99),
        "lag_max_ms": max(lags),
        "waiters_first": waiting[0],
        "waiters_min": min(waiting),
        "waiters_max": max(waiting),
    }


# --------------------------------------------------------------------------- /proc samples


def value_at(samples: Sequence[Mapping[str, float]], key: str, moment: float) -> float | None:
    """``key`` at ``moment``, linearly between the two samples around it (``t`` ascending),
    the nearest sample's outside them; None without samples."""
    points = [(s["t"], s[key]) for s in samples if s.get(key) is not None]
    if not points:
        return None
    if moment <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if t0 <= moment <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (moment - t0) / (t1 - t0)
    return points[-1][1]


def cpu_between(samples: Sequence[Mapping[str, float]], key: str, start: float, end: float):
    """CPU seconds of ``key`` (cumulative utime + stime) between two moments, and as a
    fraction of one core; (None, None) without samples or a window."""
    if end <= start:
        return None, None
    before, after = value_at(samples, key, start), value_at(samples, key, end)
    if before is None or after is None:
        return None, None
    used = max(0.0, after - before)
    return used, used / (end - start)


def peak(samples: Sequence[Mapping[str, float]], key: str, start: float, end: float):
    """The largest ``key`` among the samples taken from ``start`` to ``end``."""
    inside = [s[key] for s in samples if start <= s["t"] <= end and s.get(key) is not None]
    return max(inside) if inside else None


# --------------------------------------------------------------------------- Redis


def classify_clients(clients: Iterable[Mapping[str, str]], worker_pid: int) -> dict[str, Any]:
    """The hybrid connections (name ``hybrid-...``) in one CLIENT LIST: the worker's
    subscribers (``hybrid-tasks-sub-PID``) and their channel subscriptions (``sub=``), its
    key readers (``hybrid-tasks-get-PID``), every other hybrid name, and the total."""
    names: dict[str, int] = {}
    subscribers = getters = channels = 0
    total = 0
    for client in clients:
        total += 1
        name = client.get("name", "")
        if not name.startswith("hybrid-"):
            continue
        names[name] = names.get(name, 0) + 1
        if name == f"hybrid-tasks-sub-{worker_pid}":
            subscribers += 1
            channels += int(client.get("sub", 0) or 0)
        elif name == f"hybrid-tasks-get-{worker_pid}":
            getters += 1
    return {
        "total": total,
        "hybrid": sum(names.values()),
        "names": names,
        "subscribers": subscribers,
        "getters": getters,
        "subscribed_channels": channels,
    }


def busiest(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Of the CLIENT LIST readings taken during the burst, the one whose subscriber held
    the most channels (the first if none held any); {} without readings."""
    if not snapshots:
        return {}
    return dict(max(snapshots, key=lambda s: (s["subscribed_channels"], -s.get("t", 0))))


# --------------------------------------------------------------------------- metrics


def parse_histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of histogram ``name`` in a
    Prometheus text exposition."""
    buckets: dict[float, float] = {}
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        buckets[math.inf if le == "+Inf" else float(le)] = float(value)
    return buckets


def histogram_delta(before: Mapping[float, float], after: Mapping[float, float]):
    return {le: after[le] - before.get(le, 0.0) for le in after}


def histogram_quantile(buckets: Mapping[float, float], fraction: float) -> float | None:
    """The upper bound of the bucket that holds the ``fraction`` quantile of cumulative
    ``buckets`` (inf when it is past the last finite bound); None when empty."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    for bound in bounds:
        if buckets[bound] >= fraction * total:
            return bound
    return bounds[-1]


# --------------------------------------------------------------------------- requests


def request_figures(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every request's outcome (``status``: HTTP status or None, ``error``, ``ms``): how
    many answered 200, the other outcomes by kind, and the latency of the 200s."""
    ok = [o["ms"] for o in outcomes if o.get("status") == 200]
    failures: dict[str, int] = {}
    for o in outcomes:
        if o.get("status") != 200:
            kind = f"HTTP {o['status']}" if o.get("status") else (o.get("error") or "no answer")
            failures[kind] = failures.get(kind, 0) + 1
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "failures": failures,
        "latency_min_ms": min(ok) if ok else None,
        "latency_p50_ms": quantile(ok, 0.5),
        "latency_p99_ms": quantile(ok, 0.99),
        "latency_max_ms": max(ok) if ok else None,
    }


# --------------------------------------------------------------------------- one round


def round_figures(
    probe: Mapping[str, Any],
    samples: Sequence[Mapping[str, float]],
    outcomes: Sequence[Mapping[str, Any]],
    redis_snapshots: Sequence[Mapping[str, Any]],
    metrics_before: str,
    metrics_after: str,
    threads_before: float | None,
) -> dict[str, Any]:
    """One round's figures from its raw readings (see ``tasks_wait.run_round``)."""
    waiting = lag_figures(probe, window(probe))
    whole = lag_figures(probe, burst(probe))
    figures: dict[str, Any] = {"window": waiting, "burst": whole}
    figures.update(request_figures(outcomes))
    for label, span in (("window", waiting), ("burst", whole)):
        if not span.get("samples"):
            continue
        start, end = span["start"], span["end"]
        for key in ("worker", "celery", "redis", "bench", "machine"):
            used, share = cpu_between(samples, f"{key}_cpu", start, end)
            figures[f"{key}_cpu_s_{label}"] = used
            figures[f"{key}_cores_{label}"] = share
        ours = [figures[f"{k}_cores_{label}"] for k in ("worker", "celery", "redis", "bench")]
        machine = figures[f"machine_cores_{label}"]
        figures[f"others_cores_{label}"] = (
            max(0.0, machine - sum(ours)) if machine is not None and None not in ours else None
        )
        figures[f"threads_peak_{label}"] = peak(samples, "worker_threads", start, end)
        figures[f"celery_threads_peak_{label}"] = peak(samples, "celery_threads", start, end)
    figures["lag_p99_ms"] = waiting.get("lag_p99_ms")
    figures["lag_p50_ms"] = waiting.get("lag_p50_ms")
    figures["lag_max_ms"] = waiting.get("lag_max_ms")
    figures["burst_lag_p99_ms"] = whole.get("lag_p99_ms")
    figures["waiters_max"] = waiting.get("waiters_max")
    figures["window_s"] = waiting.get("seconds")
    figures["publish_s"] = (
        round(waiting["start"] - whole["start"], 3)
        if waiting.get("samples") and whole.get("samples")
        else None
    )
    figures["threads_before"] = threads_before
    peak_threads = figures.get("threads_peak_burst")
    figures["threads_added"] = (
        peak_threads - threads_before
        if peak_threads is not None and threads_before is not None
        else None
    )
    figures["cpu_ms_per_s_window"] = (
        figures["worker_cores_window"] * 1000
        if figures.get("worker_cores_window") is not None
        else None
    )
    redis = busiest(redis_snapshots)
    figures["redis"] = redis
    figures["subscribers"] = redis.get("subscribers")
    figures["subscribed_channels"] = redis.get("subscribed_channels")
    buckets = histogram_delta(
        parse_histogram(metrics_before, "hybrid_event_loop_lag_seconds"),
        parse_histogram(metrics_after, "hybrid_event_loop_lag_seconds"),
    )
    figures["metrics_lag_observations"] = max(buckets.values(), default=0)
    p99 = histogram_quantile(buckets, 0.99)
    figures["metrics_lag_p99_le_ms"] = None if p99 is None else p99 * 1000
    return figures


# --------------------------------------------------------------------------- rounds

FIGURES = (
    "ok",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "burst_lag_p99_ms",
    "metrics_lag_p99_le_ms",
    "waiters_max",
    "window_s",
    "publish_s",
    "cpu_ms_per_s_window",
    "worker_cpu_s_burst",
    "celery_cores_window",
    "machine_cores_window",
    "others_cores_window",
    "threads_before",
    "threads_peak_burst",
    "threads_added",
    "celery_threads_peak_burst",
    "subscribers",
    "subscribed_channels",
    "latency_min_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
)


def summarize(rounds: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per figure: the median of the rounds and their min and max (None where no round
    has it)."""
    summary: dict[str, dict[str, float | None]] = {}
    for name in FIGURES:
        values = [r[name] for r in rounds if r.get(name) is not None]
        summary[name] = {
            "median": statistics.median(values) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
        }
    return summary


def targets(rounds: Sequence[Mapping[str, Any]], requests: int) -> dict[str, dict[str, Any]]:
    """Each target: met in every round, and the rounds' values."""

    def check(name: str, test) -> dict[str, Any]:
        values = [r.get(name) for r in rounds]
        return {
            "values": values,
            "met": bool(rounds) and all(v is not None and test(v) for v in values),
        }

    return {
        "lag": check("lag_p99_ms", lambda v: v < LAG_TARGET_MS),
        "threads": check("threads_added", lambda v: v <= THREAD_ALLOWANCE),
        "subscribers": check("subscribers", lambda v: v == SUBSCRIBERS_PER_WORKER),
        "all_ok": check("ok", lambda v: v == requests),
    }


# --------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def cell(summary: Mapping[str, Mapping[str, float | None]], name: str, digits: int = 0) -> str:
    """ "median (min-max)", or the median alone when every round agrees."""
    fig = summary.get(name) or {}
    median, low, high = fig.get("median"), fig.get("min"), fig.get("max")
    if median is None:
        return "-"
    if low == high:
        return fmt(median, digits)
    return f"{fmt(median, digits)} ({fmt(low, digits)}-{fmt(high, digits)})"


ROWS = (
    ("requests answered 200", "ok", 0),
    ("waiters in the window (most)", "waiters_max", 0),
    ("publishing phase: first request in to last one published (s)", "publish_s", 2),
    ("waiting window (s)", "window_s", 2),
    ("**loop lag p99 in the window (ms)**", "lag_p99_ms", 2),
    ("loop lag p50 / max in the window (ms)", ("lag_p50_ms", "lag_max_ms"), 2),
    ("loop lag p99 over the whole burst (ms)", "burst_lag_p99_ms", 2),
    ("`hybrid_event_loop_lag_seconds` p99 bucket, burst (ms, <=)", "metrics_lag_p99_le_ms", 1),
    ("worker CPU in the window (ms per s)", "cpu_ms_per_s_window", 0),
    ("worker CPU over the whole burst (s)", "worker_cpu_s_burst", 2),
    ("Celery worker CPU in the window (cores)", "celery_cores_window", 2),
    ("machine CPU in the window (cores busy)", "machine_cores_window", 2),
    ("of which other processes' (not this run's, cores)", "others_cores_window", 2),
    ("worker threads before / at most during", ("threads_before", "threads_peak_burst"), 0),
    ("worker threads added", "threads_added", 0),
    ("Celery worker threads at most", "celery_threads_peak_burst", 0),
    ("subscriber connections of the worker", "subscribers", 0),
    ("channels it subscribed to at once (most seen)", "subscribed_channels", 0),
    ("request latency min / p50 (ms)", ("latency_min_ms", "latency_p50_ms"), 0),
    ("request latency p99 / max (ms)", ("latency_p99_ms", "latency_max_ms"), 0),
)


def table(summary: Mapping[str, Mapping[str, float | None]]) -> list[str]:
    lines = ["| figure | median (min-max) |", "|---|---|"]
    for label, name, digits in ROWS:
        if isinstance(name, tuple):
            text = " / ".join(cell(summary, n, digits) for n in name)
        else:
            text = cell(summary, name, digits)
        lines.append(f"| {label} | {text} |")
    return lines


def target_lines(results: Mapping[str, Any]) -> list[str]:
    checks = results.get("targets") or {}
    requests = results["requests"]
    words = {True: "**met**", False: "**missed**"}

    def values(name: str, digits: int = 0) -> str:
        return ", ".join(fmt(v, digits) for v in checks.get(name, {}).get("values", []))

    return [
        f"- loop lag p99 < {LAG_TARGET_MS:g} ms with {requests:,} waiters, every round:"
        f" {words[checks.get('lag', {}).get('met', False)]} ({values('lag', 2)} ms)",
        f"- no thread per waiter (at most {THREAD_ALLOWANCE} threads added), every round:"
        f" {words[checks.get('threads', {}).get('met', False)]} ({values('threads')} added)",
        f"- one subscriber connection in the worker, every round:"
        f" {words[checks.get('subscribers', {}).get('met', False)]} ({values('subscribers')})",
        f"- every request answered 200, every round:"
        f" {words[checks.get('all_ok', {}).get('met', False)]} ({values('all_ok')}"
        f" of {requests:,})",
    ]


def render_markdown(results: Mapping[str, Any]) -> str:
    lines = [
        "# Awaiting Celery tasks: 1,000 waiters on one worker",
        "",
        f"`{results['command']}`, {results['date']}, {results['elapsed_s']} s;"
        f" {results['machine']}.",
        "",
        f"One hybrid worker (`{results['serve']}`), {results['requests']:,} concurrent requests"
        f" to `/h/tasks/sleep` (`await hybrid.tasks.delay(nap, {results['seconds']:g})`, then"
        f" `await hybrid.tasks.wait(result, timeout=30)`), all sent at once, one connection"
        f" each; {len(results['rounds'])} round(s), each on a fresh server and Redis. The"
        " waiting window: from the moment the last request finished publishing to the moment"
        " the last waiter got its result. Medians of the rounds (min-max):",
        "",
        *table(results.get("summary") or {}),
        "",
        "Targets:",
        "",
        *target_lines(results),
        "",
        "Per round:",
        "",
        "| round | ok | waiters | window (s) | lag p50 / p99 / max (ms) | worker CPU (ms/s)"
        " | threads before / peak | subscribers / channels | latency p50 / p99 / max (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(results["rounds"], 1):
        lines.append(
            f"| {n} | {fmt(r.get('ok'))} | {fmt(r.get('waiters_max'))}"
            f" | {fmt(r.get('window_s'), 2)}"
            f" | {fmt(r.get('lag_p50_ms'), 2)} / {fmt(r.get('lag_p99_ms'), 2)}"
            f" / {fmt(r.get('lag_max_ms'), 2)} | {fmt(r.get('cpu_ms_per_s_window'))}"
            f" | {fmt(r.get('threads_before'))} / {fmt(r.get('threads_peak_burst'))}"
            f" | {fmt(r.get('subscribers'))} / {fmt(r.get('subscribed_channels'))}"
            f" | {fmt(r.get('latency_p50_ms'))} / {fmt(r.get('latency_p99_ms'))}"
            f" / {fmt(r.get('latency_max_ms'))} |"
        )
    for failure in results.get("failures", []):
        lines += ["", f"Not run: {failure}"]
    versions = results.get("versions") or {}
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"
