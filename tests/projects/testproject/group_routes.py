"""Group sockets and senders for the groups tests (tests/unit/groups, tests/e2e/test_groups.py).

``/hybrid/room/NAME`` joins group ``room-NAME`` and says which worker it is on; a text
message ``{"send": TEXT}`` goes to the room, ``{"join": NAME}`` / ``{"leave": NAME}`` change
rooms; ``POST /hybrid/group-send/GROUP`` sends from a plain Tornado handler.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tornado.web import RequestHandler

import hybrid


class RoomSocket(hybrid.DjangoWebSocketHandler):
    groups = ("everyone",)  # joined before open(), as a Channels consumer's

    async def open(self, room: str) -> None:
        self.room = f"room-{room}"
        await self.group_add(self.room)
        port = self.application.port  # type: ignore[attr-defined]
        self.write_message({"type": "joined", "pid": os.getpid(), "port": port, "group": self.room})

    async def on_message(self, message: str | bytes) -> None:
        data = json.loads(message)
        if "join" in data:
            await self.group_add(data["join"])
            self.write_message({"type": "joined", "pid": os.getpid(), "group": data["join"]})
        elif "leave" in data:
            await self.group_discard(data["leave"])
            self.write_message({"type": "left", "group": data["leave"]})
        elif "send" in data:
            group = data.get("group", self.room)
            try:
                await hybrid.group_send(
                    group, {"type": "chat.message", "text": data["send"], "from": os.getpid()}
                )
            except hybrid.GroupsUnavailable as exc:
                self.write_message({"type": "unavailable", "error": str(exc)})
            else:
                self.write_message({"type": "sent", "text": data["send"]})

    def chat_message(self, message: dict[str, Any]) -> None:
        self.write_message(json.dumps(message))

    async def slow_message(self, message: dict[str, Any]) -> None:
        await self.write_message(json.dumps(message))


class GroupSendHandler(RequestHandler):
    """POST a JSON message to a group: 202, 400 for a bad one, 503 when Redis is down."""

    def check_xsrf_cookie(self) -> None:
        pass

    async def post(self, group: str) -> None:
        try:
            await hybrid.group_send(group, json.loads(self.request.body))
        except hybrid.GroupError as exc:
            self.set_status(400)
            self.finish({"error": str(exc)})
        except hybrid.GroupsUnavailable as exc:
            self.set_status(503)
            self.finish({"error": str(exc)})
        else:
            self.set_status(202)
            self.finish({"backend": hybrid.groups.backend().name})


routes = [
    (r"/hybrid/room/([\w-]+)", RoomSocket),
    (r"/hybrid/group-send/([\w.-]+)", GroupSendHandler),
]
