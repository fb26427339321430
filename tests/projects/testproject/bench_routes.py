"""The DB-read endpoint pair of scripts/bench/bridge_overhead.py."""

from shop.models import Item
from tornado.web import RequestHandler

from hybrid import DjangoHandler
from testproject.routes import routes as base_routes


class BridgedRead(DjangoHandler):
    """One row through the async ORM, inside settings.MIDDLEWARE, on a lane."""

    async def get(self) -> None:
        item = await Item.objects.aget(pk=int(self.get_argument("pk", "1")))
        self.write({"id": item.pk, "name": item.name})


class BridgedHello(DjangoHandler):
    """Plain text through settings.MIDDLEWARE, no database."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write("hello")


class PlainHello(RequestHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write("hello")


class PlainRead(RequestHandler):
    """The same read from a plain Tornado handler: no middleware, no lane, no signals."""

    async def get(self) -> None:
        item = await Item.objects.aget(pk=int(self.get_argument("pk", "1")))
        self.write({"id": item.pk, "name": item.name})


routes = [
    *base_routes,
    (r"/bench/bridged", BridgedRead),
    (r"/bench/plain", PlainRead),
    (r"/bench/bridged-hello", BridgedHello),
    (r"/bench/plain-hello", PlainHello),
]
