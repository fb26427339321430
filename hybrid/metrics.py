"""Prometheus metrics of one worker, and their aggregation across ports.

Each worker keeps its own registry (created after fork, so nothing is shared) and, with
``--metrics-port BASE``, serves it at ``http://127.0.0.1:BASE+i/metrics`` where ``i`` is
the index of its port in ``--ports``: a listener of its own, never reachable through the
public routes or nginx. ``hybrid metrics --pidfile F`` fetches every worker's metrics and
prints them as one exposition with a ``port`` label (:func:`aggregate`).

We use ``prometheus-client`` for the registry and the text format rather than writing our
own; the one thing it has no helper for is relabelling parsed samples, done here.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from tornado.web import RequestHandler

if TYPE_CHECKING:
    from hybrid.groups.layer import Layer

__all__ = ["CONTENT_TYPE", "MetricsHandler", "WorkerMetrics", "aggregate"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds between two event-loop lag probes.
LAG_PROBE_INTERVAL = 0.25


class WorkerMetrics:
    """The metrics of one worker process."""

    def __init__(
        self,
        *,
        inflight: Callable[[], float],
        commands_running: Callable[[], float],
        command_timeouts: Callable[[], float],
        db_in_use: Callable[[], float] | None = None,
        db_waiting: Callable[[], float] | None = None,
        groups: Layer | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hybrid_requests",
            "Requests answered, by handler class, method and status.",
            ["handler", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hybrid_request_duration_seconds",
            "Time from request head to the end of the response, by handler class.",
            ["handler"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.loop_lag = Histogram(
            "hybrid_event_loop_lag_seconds",
            f"How late the IOLoop ran a callback scheduled {LAG_PROBE_INTERVAL}s ahead.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        gauges = {
            "hybrid_requests_in_flight": ("Requests being handled now.", inflight),
            "hybrid_commands_running": ("System commands running now.", commands_running),
        }
        # A counter whose value the runner keeps (prometheus_client's Counter cannot read
        # a function): exposed with TYPE counter, as its _total name promises.
        self.registry.register(
            _FunctionCounter(
                "hybrid_command_timeouts",
                "Commands killed for running past their timeout.",
                command_timeouts,
            )
        )
        if db_in_use is not None:
            gauges["hybrid_db_threads_in_use"] = (
                "Database threads (--db-threads) leased to requests now.",
                db_in_use,
            )
        if db_waiting is not None:
            gauges["hybrid_db_threads_waiting"] = (
                "Requests waiting for a free database thread.",
                db_waiting,
            )
        if groups is not None:
            self._add_groups(groups, gauges)
        for name, (text, function) in gauges.items():
            Gauge(name, text, registry=self.registry).set_function(function)

    def _add_groups(
        self, groups: Layer, gauges: dict[str, tuple[str, Callable[[], float]]]
    ) -> None:
        """The groups backend's figures, read at each scrape (on the worker's loop)."""
        gauges["hybrid_groups"] = (
            "Groups with at least one socket on this worker.",
            lambda: len(groups.membership()),
        )
        gauges["hybrid_group_memberships"] = (
            "Sockets in groups on this worker (a socket in two groups counts twice).",
            lambda: groups.membership().memberships(),
        )
        for name, text, function in (
            (
                "hybrid_group_deliveries",
                "Group messages handed to this worker's sockets.",
                lambda: groups.membership().delivered,
            ),
            (
                "hybrid_group_slow_closes",
                "Sockets closed with 1013 because group messages piled up for them.",
                lambda: groups.slow_closes,
            ),
            (
                "hybrid_group_send_failures",
                "Group sends refused with GroupsUnavailable (Redis down or unreachable).",
                lambda: groups.send_failures,
            ),
        ):
            self.registry.register(_FunctionCounter(name, text, function))

    def observe(self, handler: RequestHandler) -> None:
        """Count one finished request (called from the application's ``log_request``)."""
        name = type(handler).__name__
        self.requests.labels(name, handler.request.method or "", str(handler.get_status())).inc()
        self.latency.labels(name).observe(handler.request.request_time())

    async def probe_loop_lag(self) -> None:
        """Run forever: measure how late the loop wakes up. Cancel to stop."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            self.loop_lag.observe(max(0.0, time.monotonic() - before - LAG_PROBE_INTERVAL))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsHandler(RequestHandler):
    """``GET /metrics`` on the worker's private metrics listener."""

    def initialize(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.write(self.metrics.render())


def _relabel(families: Iterable[Metric], port: int) -> Iterator[Metric]:
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        for sample in family.samples:
            copy.add_sample(
                sample.name, {**sample.labels, "port": str(port)}, sample.value, sample.timestamp
            )
        yield copy


class _FunctionCounter:
    """A collector for one counter read from ``function`` at each scrape."""

    def __init__(self, name: str, documentation: str, function: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.function = function

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.function())


def aggregate(urls: dict[int, str], timeout: float = 5.0) -> bytes:
    """Fetch each worker's metrics (``{port: url}``) and merge them under a ``port`` label.

    A worker that does not answer is reported in ``hybrid_metrics_scrape_ok{port}`` = 0.
    """
    merged: dict[str, Metric] = {}
    scrape = Metric("hybrid_metrics_scrape_ok", "Whether the worker's metrics answered.", "gauge")
    for port, url in sorted(urls.items()):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read().decode()
        except OSError:
            scrape.add_sample("hybrid_metrics_scrape_ok", {"port": str(port)}, 0)
            continue
        scrape.add_sample("hybrid_metrics_scrape_ok", {"port": str(port)}, 1)
        for family in _relabel(text_string_to_metric_families(text), port):
            into = merged.setdefault(family.name, family)
            if into is not family:
                into.samples.extend(family.samples)

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            yield scrape
            yield from merged.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)
