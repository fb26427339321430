"""DjangoWebSocketHandler routes for tests/unit/bridge/test_bridge_websocket.py."""

import threading

from shop.models import Item

from hybrid import DjangoWebSocketHandler, run_sync
from hybrid.lanes import current_lane


def _thread() -> str:
    return threading.current_thread().name


class Echo(DjangoWebSocketHandler):
    """Greets with the user and session, answers each message with ORM results."""

    async def open(self) -> None:
        request = self.django_request
        user = await request.auser()
        sync_user = request.user  # resolved at the handshake: no query on the loop
        assert sync_user is user
        self.write_message(
            {
                "hello": user.get_username() if user.is_authenticated else None,
                "session": request.session.get("colour"),
                "thread": await run_sync(_thread),
            }
        )

    async def on_message(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode()
        if text == "boom":
            raise RuntimeError("boom from on_message")
        if text.startswith("add "):
            await Item.objects.acreate(name=text[4:])
        count = await Item.objects.filter(name__startswith="ws-").acount()
        leased = current_lane() is not None
        self.write_message({"count": count, "thread": await run_sync(_thread), "leased": leased})


class Members(Echo):
    login_required = True


class Ping(DjangoWebSocketHandler):
    """Answers without touching the database: says whether a lane was leased."""

    async def on_message(self, message: str | bytes) -> None:
        lane = current_lane()
        self.write_message({"pong": True, "leased": lane is not None and lane.lane is not None})


routes = [
    (r"/ws/echo", Echo),
    (r"/ws/members", Members),
    (r"/ws/ping", Ping),
]
