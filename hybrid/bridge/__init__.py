"""The bridge between Tornado and Django.

``lifecycle`` holds what every Django request served from Tornado goes through: its ASGI
scope, the middleware chain around handler views, its database thread and request
signals, the response closed and its cookies relayed. ``fallback`` serves every URL the
project's ``HYBRID_ROUTES`` do not match through Django's own ASGI handler, driven from the
worker's IOLoop. ``handler`` runs
:class:`DjangoHandler` methods inside the project's middleware chain, on the worker's
database threads (:mod:`hybrid.lanes`, re-exported here: :func:`run_sync`); ``decorators``
has Django's access decorators for handler methods; ``websocket`` has
:class:`DjangoWebSocketHandler`. ``hosts`` checks ``ALLOWED_HOSTS`` on the routes Django's
middleware does not see; ``unavailable`` answers 503 for a database that cannot be reached.
Importing this package does not import Django.
"""

from __future__ import annotations

from hybrid.bridge.decorators import csrf_exempt, login_required, permission_required
from hybrid.bridge.fallback import DjangoFallbackHandler, make_asgi_handler
from hybrid.bridge.handler import DjangoHandler
from hybrid.bridge.lifecycle import build_scope
from hybrid.bridge.websocket import DjangoWebSocketHandler
from hybrid.lanes import LanePool, lane_context, lane_pool, run_sync

__all__ = [
    "DjangoFallbackHandler",
    "DjangoHandler",
    "DjangoWebSocketHandler",
    "LanePool",
    "build_scope",
    "csrf_exempt",
    "lane_context",
    "lane_pool",
    "login_required",
    "make_asgi_handler",
    "permission_required",
    "run_sync",
]
