"""The test project with the bridge routes (DjangoHandler, WebSockets) in ``hybrid serve``."""

from testproject.settings import *  # noqa: F403

HYBRID_ROUTES = "testproject.bridge_routes.routes"
