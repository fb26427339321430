"""The ASGI application of the groups benchmark's Channels side, as Channels' tutorial
deploys it: HTTP to Django (``benchproject.asgi``: ``/ping`` answers the readiness probe),
WebSockets through ``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))`` to
``benchapp.consumers.ChatConsumer``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings_groups")

import django  # noqa: E402

django.setup(set_prefix=False)  # before Channels' auth imports Django's models

from benchapp.consumers import ChatConsumer  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from benchproject.asgi import application as http_application  # noqa: E402

chat = URLRouter([re_path(r"^ws/room/(?P<room>\d+)$", ChatConsumer.as_asgi())])
application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(chat)),
    }
)
