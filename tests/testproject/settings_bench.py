"""The test project with the benchmark routes (scripts/bench/bridge_overhead.py).

Django's default ``startproject`` middleware: the test project's own stamping middleware
(one of them sync-only, to test thread hops) would not be what a project runs.
"""

from testproject.settings import *  # noqa: F403
from testproject.settings import DJANGO_MIDDLEWARE

HYBRID_ROUTES = "testproject.bench_routes.routes"
MIDDLEWARE = DJANGO_MIDDLEWARE
