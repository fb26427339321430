"""celery internals hybrid relies on (see :mod:`hybrid._compat`).

:mod:`hybrid.tasks` waits for results on its own Redis subscriber and publishes from its
own threads, which takes three things Celery has no public way to give:

* the Redis result backend's connection parameters (``RedisBackend.connparams``, built
  from ``CELERY_RESULT_BACKEND`` and the ``redis_*`` settings), so the loop's asyncio
  client connects where the backend does, with the same password, database and TLS;
* that the backend PUBLISHes every stored result on the channel named like its key
  (``RedisBackend._set``), which is what the subscriber listens to;
* that ``Celery.send_task`` asks the result backend to start consuming each task it sends
  (``backend.on_task_call``): the Redis backend then subscribes its *blocking* result
  consumer to the task (a second connection, retried for about 20 s when Redis is down).
  hybrid's publish threads turn that off on their own backend instance (``app.backend``
  is one instance per thread), because hybrid's subscriber waits for the result instead.

Each function below is the one place hybrid touches the private name it wraps;
:func:`library` declares them all for the startup check. Nothing here imports celery at
import time (it is the ``celery`` extra).
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

from hybrid._compat import Internal, Library

__all__ = ["is_redis_backend", "library", "quiet_on_task_call", "redis_params"]

VERIFIED = ("5.7",)
REQUIREMENT = "celery>=5.7,<6"

#: What ``redis_params`` passes on from ``connparams`` to ``redis.asyncio.Redis``.
_PASSED = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "path",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "credential_provider",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
)


def is_redis_backend(backend: Any) -> bool:
    """True for Celery's plain Redis result backend (``redis://``, ``rediss://``,
    ``socket://``), which PUBLISHes each result; Sentinel and every other backend are
    polled instead."""
    from celery.backends.redis import RedisBackend, SentinelBackend

    return isinstance(backend, RedisBackend) and not isinstance(backend, SentinelBackend)


def redis_params(backend: Any) -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis`` that reach the same server as
    ``backend`` (a :func:`is_redis_backend`)."""
    import redis
    import redis.asyncio

    params: dict[str, Any] = backend.connparams
    kwargs = {key: params[key] for key in _PASSED if params.get(key) is not None}
    connection_class = params.get("connection_class")
    if connection_class is not None and issubclass(connection_class, redis.SSLConnection):
        kwargs["connection_class"] = redis.asyncio.SSLConnection
    elif "path" in kwargs or (
        connection_class is not None
        and issubclass(connection_class, redis.UnixDomainSocketConnection)
    ):
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        kwargs["connection_class"] = redis.asyncio.UnixDomainSocketConnection
    return kwargs


def quiet_on_task_call(backend: Any) -> None:
    """Make ``backend`` (this thread's own instance) skip ``on_task_call``: the Redis
    backend's blocking result consumer does not subscribe to the tasks sent with it."""
    if not getattr(backend, "_hybrid_quiet", False):
        backend.on_task_call = _skip
        backend._hybrid_quiet = True


def _skip(producer: Any, task_id: str) -> None:
    return None


def _connparams_built() -> bool:
    from celery.backends.redis import RedisBackend

    return "self.connparams" in inspect.getsource(RedisBackend.__init__)


def _results_published() -> bool:
    from celery.backends.redis import RedisBackend

    source = inspect.getsource(RedisBackend._set)
    return "pipe.publish(key, value)" in source and callable(
        getattr(RedisBackend, "get_key_for_task", None)
    )


def _send_task_calls_backend() -> bool:
    from celery import Celery
    from celery.backends.base import Backend

    source = inspect.getsource(Celery.send_task)
    return "self.backend.on_task_call(" in source and hasattr(Backend, "on_task_call")


def library() -> Library | None:
    """What hybrid needs of celery, or None when it is not installed."""
    if importlib.util.find_spec("celery") is None:
        return None
    internals = [
        Internal(
            "celery.backends.redis.RedisBackend.connparams",
            "hybrid.tasks' subscriber connects where the Redis result backend does",
            _connparams_built,
        ),
        Internal(
            "celery.backends.redis.RedisBackend._set PUBLISHes on the result's key",
            "hybrid.tasks waits for a result on one pub/sub connection per worker",
            _results_published,
        ),
        Internal(
            "celery.Celery.send_task calls backend.on_task_call(producer, task_id)",
            "hybrid.tasks' publish threads keep Celery's blocking result consumer off",
            _send_task_calls_backend,
        ),
    ]
    return Library("celery", "celery", VERIFIED, REQUIREMENT, internals)
