"""The bridge between Tornado and Django.

``fallback`` serves every URL the project's ``HYBRID_ROUTES`` do not match through
Django's own ASGI handler, driven from the worker's IOLoop.
"""

from __future__ import annotations

from hybrid.bridge.fallback import DjangoFallbackHandler, build_scope

__all__ = ["DjangoFallbackHandler", "build_scope"]
