from testproject.settings import *  # noqa: F403

HYBRID_ROUTES = "testproject.routes.no_such_list"
