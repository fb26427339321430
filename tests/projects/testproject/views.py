import asyncio
import os
import time

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def pid(request):
    return JsonResponse({"pid": os.getpid(), "via": "django"})


def slow(request):
    """A sync view that blocks its thread for a while."""
    time.sleep(float(request.GET.get("s", "1")))
    return JsonResponse({"slept": True})


async def async_view(request):
    await asyncio.sleep(0)
    return JsonResponse({"async": True, "path": request.path, "q": request.GET.get("q")})


@csrf_exempt
def echo(request):
    response = JsonResponse(
        {
            "method": request.method,
            "body": request.body.decode(),
            "post": dict(request.POST.items()),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
            "host": request.get_host(),
        }
    )
    response.set_cookie("first", "1")
    response.set_cookie("second", "2")
    response["X-Echo"] = "yes"
    return response


def meta(request):
    """The client's address, the proxy headers and the request id, as request.META has them."""
    keys = (
        "REMOTE_ADDR",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_REAL_IP",
        "HTTP_HOST",
        "HTTP_X_REQUEST_ID",
    )
    return JsonResponse({key: request.META.get(key) for key in keys})


def protected(request):
    return HttpResponse("no csrf exemption", content_type="text/plain")


async def stream(request):
    """Three chunks, each after a pause, from an async iterator."""

    async def chunks():
        for n in range(3):
            yield f"chunk {n}\n".encode()
            await asyncio.sleep(0.3)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


#: Set when the endless stream below is closed: a client disconnect must stop it. A new
#: Event per request: an Event belongs to the loop that first waits on it, and each test
#: runs its own loop.
forever_closed = asyncio.Event()


async def forever(request):
    global forever_closed
    closed = forever_closed = asyncio.Event()

    async def chunks():
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.05)
        finally:
            closed.set()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def thread(request):
    """A sync view that says which thread ran it."""
    import threading

    return JsonResponse({"thread": threading.current_thread().name})


def sync_stream(request):
    """Three chunks from a sync generator, each after a pause."""

    def chunks():
        for n in range(3):
            yield f"sync {n}\n".encode()
            time.sleep(0.3)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


async def async_thread(request):
    """An async view that says which thread ran it: the worker's loop thread."""
    import threading

    return JsonResponse({"thread": threading.current_thread().name})


@csrf_exempt
def group_send(request, group):
    """A sync view (it runs on a database thread) sending with group_send_sync, or with
    asgiref's async_to_sync(hybrid.group_send) when ``?with=async_to_sync``."""
    from asgiref.sync import async_to_sync

    import hybrid

    via = request.GET.get("with", "view")
    message = {"type": "chat.message", "text": request.body.decode(), "via": via}
    if via == "async_to_sync":
        async_to_sync(hybrid.group_send)(group, message)
    else:
        hybrid.group_send_sync(group, message)
    return HttpResponse("sent", status=202)


def secure(request):
    """What Django makes of the scheme: TLS at nginx (X-Forwarded-Proto) or at the worker."""
    return JsonResponse({"is_secure": request.is_secure(), "scheme": request.scheme})


def session(request):
    """The session's value, stored first when ``?set=VALUE`` is given (sessions in the DB:
    one host's workers read what another host's wrote)."""
    if "set" in request.GET:
        request.session["value"] = request.GET["set"]
    return JsonResponse({"value": request.session.get("value"), "pid": os.getpid()})
