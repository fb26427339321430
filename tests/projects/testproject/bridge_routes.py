"""DjangoHandler routes for the bridge tests, after the project's usual routes."""

import asyncio
import os
import threading
import time

from django.db import connection, transaction
from shop.models import Item
from tornado.web import HTTPError

from hybrid import DjangoHandler, csrf_exempt, login_required, permission_required, run_sync
from testproject.routes import routes as base_routes
from testproject.ws_routes import routes as websocket_routes


class WhoAmI(DjangoHandler):
    async def get(self) -> None:
        request = self.django_request
        user = await request.auser()
        visits = await request.session.aget("visits", 0) + 1
        await request.session.aset("visits", visits)
        self.write(
            {
                "user": user.get_username() if user.is_authenticated else None,
                "visits": visits,
                "path": request.path,
                "q": request.GET.get("q"),
            }
        )

    async def post(self) -> None:
        self.write({"posted": self.django_request.POST.get("x")})


@csrf_exempt
class Items(DjangoHandler):
    async def get(self) -> None:
        names = [item.name async for item in Item.objects.order_by("id")]
        self.write({"count": await Item.objects.acount(), "names": names})

    async def post(self) -> None:
        item = await Item.objects.acreate(name=self.django_request.POST["name"])
        self.set_status(201)
        self.write({"id": item.pk})


class Exempt(DjangoHandler):
    csrf_exempt = True

    async def post(self) -> None:
        self.write({"ok": True})


class Private(DjangoHandler):
    @login_required
    async def get(self) -> None:
        user = await self.django_request.auser()
        self.write({"user": user.get_username()})


class Staff(DjangoHandler):
    @permission_required("shop.change_item", raise_exception=True)
    async def get(self) -> None:
        self.write({"allowed": True})


class Output(DjangoHandler):
    """Status, headers and cookies set by the handler reach the client with middleware's."""

    async def get(self) -> None:
        self.set_status(202)
        self.set_header("X-Handler", "yes")
        self.set_cookie("mine", "1")
        self.set_cookie("other", "2")
        self.write("plain text")

    async def delete(self) -> None:
        self.redirect("/elsewhere")


class Errors(DjangoHandler):
    async def get(self, kind: str) -> None:
        if kind == "tornado":
            raise HTTPError(418)
        if kind == "django404":
            from django.http import Http404

            raise Http404("no such thing")
        if kind == "denied":
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("not you")
        if kind == "suspicious":
            from django.core.exceptions import SuspiciousOperation

            raise SuspiciousOperation("fishy input")
        if kind == "tornado400":
            raise HTTPError(400, "bad thing %s", "logged")
        raise RuntimeError("boom")


async def _save_something() -> None:
    await asyncio.sleep(0)


@csrf_exempt
class JsonEcho(DjangoHandler):
    """Parses a JSON body with DjangoHandler.json_body() (400 when it is not JSON)."""

    async def post(self) -> None:
        data = self.json_body()
        self.write({"type": type(data).__name__})


class Unawaited(DjangoHandler):
    """Handler methods that forgot an await (the error must name the fix)."""

    async def get(self):
        return _save_something()  # forgot the await

    @csrf_exempt
    def post(self):  # not async def, and returns a coroutine
        return _save_something()


class Stream(DjangoHandler):
    async def get(self) -> None:
        for n in range(3):
            self.write(f"part {n}\n")
            await self.flush()
            await asyncio.sleep(0.3)


class SlowQuery(DjangoHandler):
    """A 0.2 s "query": SELECT SLEEP on MySQL, a sleeping sync function elsewhere."""

    async def get(self) -> None:
        seconds = float(self.get_argument("s", "0.2"))
        thread = await run_sync(_slow_query, seconds)
        self.write({"thread": thread, "pid": os.getpid()})


def _slow_query(seconds: float) -> str:
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT SLEEP(%s)", [seconds])
            cursor.fetchall()
    else:
        time.sleep(seconds)
    return threading.current_thread().name


class Threads(DjangoHandler):
    """Which threads the request's ORM calls and run_sync calls ran on."""

    async def get(self) -> None:
        seen = set()
        for _ in range(3):
            await Item.objects.acount()
            seen.add(await run_sync(lambda: threading.current_thread().name))
        self.write({"threads": sorted(seen)})


class Atomic(DjangoHandler):
    """A transaction.atomic() block through run_sync, rolled back on error."""

    csrf_exempt = True

    async def post(self) -> None:
        name = self.get_argument("name")
        fail = self.get_argument("fail", "") == "1"
        try:
            await run_sync(_create_two, name, fail)
        except ValueError:
            self.set_status(409)
        self.write({"count": await Item.objects.filter(name=name).acount()})


def _create_two(name: str, fail: bool) -> None:
    with transaction.atomic():
        Item.objects.create(name=name)
        Item.objects.create(name=name)
        if fail:
            raise ValueError("roll back")


class DbPing(DjangoHandler):
    """One real query through the async ORM (the hygiene tests)."""

    async def get(self) -> None:
        self.write({"count": await Item.objects.acount(), "pid": os.getpid()})


class Nap(DjangoHandler):
    """Awaits ``s`` seconds of non-database I/O, then (with ``?query=1``) one ORM call.

    Answers whether the request held a database thread before and after its query.
    """

    async def get(self) -> None:
        from hybrid.lanes import current_lane

        await asyncio.sleep(float(self.get_argument("s", "0.2")))
        lane = current_lane()
        answer = {"leased_before_query": lane is not None and lane.lane is not None}
        if self.get_argument("query", "") == "1":
            answer["count"] = await Item.objects.acount()
            answer["leased_after_query"] = lane is not None and lane.lane is not None
        self.write(answer)


class Deadline(DjangoHandler):
    """``asyncio.timeout()`` and a ``TaskGroup`` inside a handler method: both act on the
    task running the method, so a timeout is the method's own ``TimeoutError``."""

    async def get(self) -> None:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            timed_out = True
        else:
            timed_out = False
        async with asyncio.TaskGroup() as group:
            task = group.create_task(asyncio.sleep(0.01, result="child"))
        self.write({"timed_out": timed_out, "child": task.result()})


class Prefix(DjangoHandler):
    """What ``reverse()`` would prefix: the script prefix Django's handler sets."""

    async def get(self) -> None:
        from django.urls import get_script_prefix

        self.write({"prefix": get_script_prefix(), "path": self.django_request.path})


class Hello(DjangoHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write("hello")


class Bare(DjangoHandler):
    """A body without a Content-Type (the handler clears Tornado's default)."""

    async def get(self) -> None:
        self.clear_header("Content-Type")
        self.add_header("X-Twice", "a")
        self.add_header("X-Twice", "b")
        self.write(b"raw")


routes = [
    *base_routes,
    (r"/bridge/bare", Bare),
    (r"/bridge/nap", Nap),
    (r"/bridge/hello", Hello),
    (r"/bridge/prefix", Prefix),
    (r"/bridge/deadline", Deadline),
    (r"/bridge/whoami", WhoAmI),
    (r"/bridge/items", Items),
    (r"/bridge/exempt", Exempt),
    (r"/bridge/private", Private),
    (r"/bridge/staff", Staff),
    (r"/bridge/output", Output),
    (r"/bridge/errors/(\w+)", Errors),
    (r"/bridge/stream", Stream),
    (r"/bridge/slow", SlowQuery),
    (r"/bridge/threads", Threads),
    (r"/bridge/atomic", Atomic),
    (r"/bridge/db", DbPing),
    (r"/bridge/unawaited", Unawaited),
    (r"/bridge/json", JsonEcho),
    *websocket_routes,
]
