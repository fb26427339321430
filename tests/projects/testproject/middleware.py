"""The project's own middleware, one sync and one async: both must run around hybrid routes
that are DjangoHandlers, and the sync one on the request's database thread."""

import threading

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


def sync_stamp(get_response):
    def middleware(request):
        response = get_response(request)
        response["X-Sync-Middleware"] = threading.current_thread().name
        return response

    return middleware


def async_stamp(get_response):
    if not iscoroutinefunction(get_response):
        raise RuntimeError("async_stamp is async-only")

    async def middleware(request):
        request.stamped = True
        response = await get_response(request)
        response["X-Async-Middleware"] = "yes"
        return response

    return markcoroutinefunction(middleware)


async_stamp.async_capable = True
async_stamp.sync_capable = False
