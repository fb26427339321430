import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")
django_application = get_asgi_application()


async def application(scope, receive, send):
    """Django, except ``/ping``: a bare ASGI answer (no Django), the cheap first request of
    the harness's idle keep-alive connections, like hybrid's plain Tornado ``/h/ping``."""
    if scope["type"] == "http" and scope["path"] == "/ping":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"pong"})
        return
    await django_application(scope, receive, send)
