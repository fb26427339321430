"""Settings of the groups benchmark: the benchmark project's, with the chat's routes for
hybrid (``benchapp.rooms``) and Channels' layer on the same Redis (``BENCH_REDIS_URL``, a
private server per run; hybrid gets it as ``--groups``). No database is touched."""

import os

from benchproject.settings import *  # noqa: F403

HYBRID_ROUTES = "benchapp.rooms.routes"
ASGI_APPLICATION = "benchproject.channels_asgi.application"

# channels_redis' RedisChannelLayer with its documented configuration (the default
# capacity of 100 messages per channel and expiry of 60 s).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")]},
    }
}
