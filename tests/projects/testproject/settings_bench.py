"""The test project with the benchmark routes (scripts/bench/bridge_overhead.py).

Django's default ``startproject`` middleware: the test project's own stamping middleware
(one of them sync-only, to test thread hops) would not be what a project runs.
"""

from testproject.settings import *  # noqa: F403
from testproject.settings import DJANGO_MIDDLEWARE

HYBRID_ROUTES = "testproject.bench_routes.routes"
MIDDLEWARE = DJANGO_MIDDLEWARE

# Persistent connections, as a production project sets them: with Django's default of 0
# every DjangoHandler request would open and close its SQLite connection (Django closes
# it at request_finished), while the plain handler, outside any request, keeps one.
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
