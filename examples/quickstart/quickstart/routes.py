"""Async Tornado handlers, served by hybrid before Django's URLconf (HYBRID_ROUTES)."""

import os

from tornado.web import RequestHandler

from quickstart.models import Greeting


class HelloHandler(RequestHandler):
    async def get(self) -> None:
        # Django's async ORM, straight from a Tornado coroutine.
        count = await Greeting.objects.acount()
        latest = await Greeting.objects.afirst()
        self.write(
            {
                "hello": "from hybrid",
                "pid": os.getpid(),
                "port": self.application.port,
                "greetings": count,
                "latest": latest.name if latest else None,
            }
        )

    async def post(self) -> None:
        name = self.get_body_argument("name", "").strip()
        if not name or len(name) > 100:
            self.set_status(400)
            self.write({"error": "send a form field 'name' of 1 to 100 characters"})
            return
        greeting = await Greeting.objects.acreate(name=name)
        self.set_status(201)
        self.write({"id": greeting.pk, "name": greeting.name})


routes = [
    (r"/hello", HelloHandler),
]
