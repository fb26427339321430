"""``settings.MIDDLEWARE`` run as one loop instead of one coroutine per layer.

Django's async middleware chain nests every layer twice: the middleware's ``__acall__``
and the ``convert_exception_to_response`` wrapper around it, so a request through the
seven ``startproject`` middleware enters and leaves some fifteen coroutines before it
reaches the view. When every layer is one of the loop-safe variants of
:mod:`hybrid.bridge.middleware` (Django's own classes, whose hooks hybrid knows), the chain
is a list of ``process_request`` / ``process_response`` hooks, and :class:`FlatChain` runs
it as a loop in one coroutine, with the same outcome as the nested chain:

* ``process_request`` hooks run in ``settings.MIDDLEWARE`` order; the first that returns a
  response stops the descent, and ``process_response`` hooks run from that layer outwards;
* an exception raised by a layer's hook becomes a response at that layer, as Django's
  wrapper makes it (``response_for_exception``, on a worker thread as Django does), and
  the layers outside it carry on with that response; the layer that raised in
  ``process_request`` does not see it in ``process_response``, as in Django;
* the innermost part (``process_view``, the view, ``process_exception``, template
  responses) is Django's ``_get_response_async``, unchanged.

A chain with any other middleware (a project's own, or a subclass of Django's) keeps
Django's nested chain. ``tests/unit/bridge/test_bridge_chain.py`` serves the same requests,
short-circuits and failures through both.

Why not a library: this is the shape of Django's own ``MiddlewareMixin.__acall__`` and
``convert_exception_to_response``, flattened; nothing outside Django has it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["FlatChain", "collect_instances", "response_for_exception"]

#: While set, loop-safe middleware instances append themselves here as they are made.
_collecting: list[list[Any]] = []


@contextmanager
def collect_instances() -> Iterator[list[Any]]:
    """Inside, each loop-safe middleware instance made is appended to the yielded list."""
    made: list[Any] = []
    _collecting.append(made)
    try:
        yield made
    finally:
        _collecting.remove(made)


def register_instance(instance: Any) -> None:
    """Called by a loop-safe middleware's ``__init__`` (see :func:`collect_instances`)."""
    if _collecting:
        _collecting[-1].append(instance)


class _Layer:
    """One middleware's two hooks, each run on the loop when its rule allows."""

    __slots__ = ("middleware", "request_hook", "request_sync", "response_hook", "response_sync")

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        rules = type(middleware).hybrid_rules
        self.request_hook = _hook(
            middleware, "process_request", rules.request, rules.request_always
        )
        self.response_hook = _hook(
            middleware, "process_response", rules.response, rules.response_always
        )
        #: Whether each hook is the middleware's own method (called, not awaited).
        self.request_sync = rules.request_always
        self.response_sync = rules.response_always


def _hook(middleware: Any, name: str, rule: Callable[..., bool], always: bool) -> Any:
    """``middleware.name`` itself when its rule always allows the loop, else ``async
    hook(*args)`` that asks the rule; None when the middleware has no such hook."""
    method = getattr(middleware, name, None)
    if method is None:
        return None
    from asgiref.sync import sync_to_async

    threaded = sync_to_async(method, thread_sensitive=True)

    async def run(*args: Any) -> Any:
        if rule(middleware, *args):
            return method(*args)
        return await threaded(*args)

    return method if always else run


class FlatChain:
    """The middleware ``instances`` (``settings.MIDDLEWARE`` order) around ``inner``
    (Django's ``_get_response_async``), as one coroutine per request."""

    def __init__(self, instances: list[Any], inner: Callable[[Any], Any]) -> None:
        self.layers = [_Layer(instance) for instance in instances]
        self.inner = inner

    async def __call__(self, request: Any) -> Any:
        layers = self.layers
        response = None
        outermost = len(layers) - 1  # the innermost layer whose process_response runs
        for index, layer in enumerate(layers):
            hook = layer.request_hook
            if hook is None:
                continue
            try:
                response = hook(request) if layer.request_sync else await hook(request)
            except Exception as exc:
                response = await response_for_exception(request, exc)
                outermost = index - 1
                break
            if response:
                outermost = index
                break
        else:
            try:
                response = await self.inner(request)
            except Exception as exc:
                response = await response_for_exception(request, exc)
        for index in range(outermost, -1, -1):
            layer = layers[index]
            hook = layer.response_hook
            if hook is None:
                continue
            try:
                if layer.response_sync:
                    response = hook(request, response)
                else:
                    response = await hook(request, response)
            except Exception as exc:
                response = await response_for_exception(request, exc)
        return response


async def response_for_exception(request: Any, exc: Exception) -> Any:
    """What ``convert_exception_to_response`` answers for ``exc`` (on a worker thread:
    the technical 500 page renders templates); an unreachable database is answered 503
    (:mod:`hybrid.bridge.unavailable`)."""
    from asgiref.sync import sync_to_async
    from django.core.handlers.exception import response_for_exception

    from hybrid.bridge.unavailable import database_unavailable

    unavailable = database_unavailable(request, exc)
    if unavailable is not None:
        return unavailable

    return await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)
