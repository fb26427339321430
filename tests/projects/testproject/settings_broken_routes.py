from testproject.settings import *  # noqa: F403

HYBRID_ROUTES = "testproject.broken_routes.routes"
