"""The test project with the benchmark routes (scripts/bench/bridge_overhead.py)."""

from testproject.settings import *  # noqa: F403

HYBRID_ROUTES = "testproject.bench_routes.routes"
