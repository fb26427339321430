"""Django's own middleware hooks, run on the event loop when they cannot block.

Django's ``MiddlewareMixin.__acall__`` cannot know whether a sync ``process_request`` or
``process_response`` touches the database, so under ASGI it sends every such hook to a
thread (``sync_to_async``); the default ``startproject`` stack costs about ten thread
round trips per request that way, more than the rest of the request. For the middleware
that Django ships, hybrid knows: most hooks only read headers and cookies and set
attributes. :func:`loop_safe_middleware` loads ``settings.MIDDLEWARE`` with those classes
replaced by subclasses whose hooks run on the loop when they can, and on the request's
database thread (as Django would) when they might do I/O:

=================================  =========================================================
SecurityMiddleware, CommonMiddleware, XFrameOptionsMiddleware, GZipMiddleware,
ConditionalGetMiddleware           always on the loop (headers, URL resolution, CPU only)
AuthenticationMiddleware           on the loop: it installs a lazy ``request.user``
SessionMiddleware                  ``process_request`` on the loop (the session loads
                                   lazily); ``process_response`` on the loop unless the
                                   session is saved (modified, or SESSION_SAVE_EVERY_REQUEST)
CsrfViewMiddleware                 on the loop unless CSRF_USE_SESSIONS, or the body to
                                   parse is larger than FILE_UPLOAD_MAX_MEMORY_SIZE
MessageMiddleware                  on the loop unless messages were added or read (storing
                                   them may write the session); the storage is made on
                                   first use, and unused it has nothing to store
=================================  =========================================================

Only the exact Django classes are replaced (a project's subclass may override a hook with
I/O, so it keeps Django's behaviour), and only with Django's own session engines and
message storages. Should a hook on the loop touch the database after all, Django's
``async_unsafe`` guard raises ``SynchronousOnlyOperation``; it never blocks the loop
silently. Responses are Django's to the byte (tests/unit/bridge/test_bridge_middleware.py serves the
same requests through both chains).

Why not a library: Django has no per-hook async variant of these classes (as of 5.2), and
asgiref cannot tell I/O from CPU; this table is hybrid's knowledge of Django's code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from hybrid._compat import django as dj
from hybrid.bridge.chain import register_instance
from hybrid.bridge.snapshot import settings_snapshot as _settings

__all__ = ["LOOP_SAFE", "loop_safe_middleware", "loop_variant"]

Request = Any
Response = Any
#: ``(middleware, request)`` -> True when ``process_request`` may run on the loop.
RequestRule = Callable[[Any, Request], bool]
#: ``(middleware, request, response)`` -> True when ``process_response`` may run on the loop.
ResponseRule = Callable[[Any, Request, Response], bool]


def _always(*args: Any) -> bool:
    return True


def _session_request(middleware: Any, request: Request) -> bool:
    return _settings().builtin_sessions


def _session_response(middleware: Any, request: Request, response: Response) -> bool:
    session = getattr(request, "session", None)
    if session is None or not _settings().builtin_sessions:
        return session is None
    # Django saves (database, cache or file I/O) only when modified or told to every time.
    return not (session.modified or _settings().save_every_request)


def _csrf_request(middleware: Any, request: Request) -> bool:
    return not _settings().csrf_use_sessions


def _csrf_view(middleware: Any, request: Request) -> bool:
    if _settings().csrf_use_sessions:
        return False
    # process_view reads request.POST for unsafe methods: a big multipart body may spool
    # to temporary files, which Django would do on a thread.
    length = request.META.get("CONTENT_LENGTH") or 0
    try:
        return int(length) <= _settings().max_memory_size
    except (TypeError, ValueError):
        return False


def _csrf_response(middleware: Any, request: Request, response: Response) -> bool:
    return not _settings().csrf_use_sessions


def _messages_response(middleware: Any, request: Request, response: Response) -> bool:
    storage = dj.messages_storage(request)
    if storage is None or dj.messages_unused(request):
        return True
    if not _settings().builtin_messages:
        return False
    # update() stores only when messages were added or read; storing may touch the session.
    return not (getattr(storage, "used", True) or getattr(storage, "added_new", True))


class Rules:
    """When each hook of one middleware class may run on the loop."""

    def __init__(
        self,
        request: RequestRule = _always,
        response: ResponseRule = _always,
        view: RequestRule = _always,
    ) -> None:
        self.request = request
        self.response = response
        self.view = view
        #: Hooks that always run on the loop (:mod:`hybrid.bridge.chain` calls them as is).
        self.request_always = request is _always
        self.response_always = response is _always


#: Django's middleware classes (by import path) that hybrid runs on the loop, and when.
LOOP_SAFE: dict[str, Rules] = {
    "django.middleware.security.SecurityMiddleware": Rules(),
    "django.middleware.common.CommonMiddleware": Rules(),
    "django.middleware.clickjacking.XFrameOptionsMiddleware": Rules(),
    "django.middleware.gzip.GZipMiddleware": Rules(),
    "django.middleware.http.ConditionalGetMiddleware": Rules(),
    "django.contrib.auth.middleware.AuthenticationMiddleware": Rules(),
    "django.contrib.sessions.middleware.SessionMiddleware": Rules(
        request=_session_request, response=_session_response
    ),
    "django.middleware.csrf.CsrfViewMiddleware": Rules(
        request=_csrf_request, response=_csrf_response, view=_csrf_view
    ),
    "django.contrib.messages.middleware.MessageMiddleware": Rules(response=_messages_response),
}

_variants: dict[type, type] = {}


def loop_variant(cls: type) -> type:
    """``cls`` itself, or for a class of :data:`LOOP_SAFE` its loop-running subclass."""
    rules = LOOP_SAFE.get(f"{cls.__module__}.{cls.__qualname__}")
    if rules is None:
        return cls
    variant = _variants.get(cls)
    if variant is None:
        variant = _variants[cls] = _make_variant(cls, rules)
    return variant


def _make_variant(cls: type, rules: Rules) -> type:
    from asgiref.sync import sync_to_async

    async def __acall__(self: Any, request: Request) -> Response:
        # MiddlewareMixin.__acall__, with each hook on the loop when its rule allows.
        response = None
        if hasattr(self, "process_request"):
            if rules.request(self, request):
                response = self.process_request(request)
            else:
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if rules.response(self, request, response):
                response = self.process_response(request, response)
            else:
                response = await sync_to_async(self.process_response, thread_sensitive=True)(
                    request, response
                )
        return response

    def __init__(self: Any, get_response: Any) -> None:
        cls.__init__(self, get_response)  # type: ignore[misc]
        register_instance(self)  # hybrid.bridge.chain runs the chain flat when all are known

    namespace: dict[str, Any] = {
        "__init__": __init__,
        "__acall__": __acall__,
        "hybrid_rules": rules,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    sync_view = getattr(cls, "process_view", None)
    if sync_view is not None:

        async def process_view(self: Any, request: Request, *args: Any) -> Response:
            # Django adapts a sync process_view with sync_to_async; this one is async
            # already, so Django awaits it as is.
            if rules.view(self, request):
                return sync_view(self, request, *args)
            return await sync_to_async(sync_view, thread_sensitive=True)(self, request, *args)

        namespace["process_view"] = process_view
    if f"{cls.__module__}.{cls.__qualname__}" == _MESSAGES:
        namespace.update(_lazy_messages(cls))
    variant = type(cls.__name__, (cls,), namespace)
    return variant


_MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"


def _lazy_messages(cls: type) -> dict[str, Any]:
    """``MessageMiddleware``'s hooks with the storage made on first use.

    Making the storage costs a cookie signer and two storages per request (a twentieth of
    a plain request's CPU); most requests never add or read a message. Unmade, there is
    nothing for ``process_response`` to store, so it returns the response as it is.
    """
    original_response = cls.process_response  # type: ignore[attr-defined]

    def process_request(self: Any, request: Request) -> None:
        setattr(request, dj.MESSAGES_ATTRIBUTE, dj.lazy_messages_storage(request))

    def process_response(self: Any, request: Request, response: Response) -> Response:
        if dj.messages_unused(request):
            return response
        return original_response(self, request, response)

    return {"process_request": process_request, "process_response": process_response}


@contextlib.contextmanager
def loop_safe_middleware() -> Iterator[None]:
    """Inside, ``BaseHandler.load_middleware()`` builds the chain with :func:`loop_variant`
    classes: ``with loop_safe_middleware(): handler.load_middleware(is_async=True)``.

    Django's ``load_middleware`` looks each class up with the ``import_string`` of its own
    module; that one name is swapped for the duration (on the loop thread, where chains
    are built, before any request).
    """
    original = dj.handler_import_string()

    def import_loop_safe(path: str) -> Any:
        found = original(path)
        return loop_variant(found) if isinstance(found, type) else found

    dj.set_handler_import_string(import_loop_safe)
    try:
        yield
    finally:
        dj.set_handler_import_string(original)
