"""The chat of the groups benchmark, hybrid's side (``benchproject.settings_groups``).

``/h/room/N`` joins group ``room-N`` in ``open()`` and says ``{"joined": N}``; a text
message ``{"send": TEXT, "t": STAMP}`` goes to the room with ``hybrid.group_send``, and
every member (the sender too) gets ``{"send": TEXT, "t": STAMP}`` from ``chat_message``.
The same chat as ``benchapp.consumers.ChatConsumer`` (Channels). ``/h/ping`` answers the
harness's readiness probe.
"""

import json

import hybrid
from benchapp.handlers import Ping


class Room(hybrid.DjangoWebSocketHandler):
    async def open(self, room):
        self.room = f"room-{room}"
        await self.group_add(self.room)
        self.write_message({"joined": room})

    async def on_message(self, message):
        data = json.loads(message)
        await hybrid.group_send(
            self.room, {"type": "chat.message", "send": data["send"], "t": data["t"]}
        )

    def chat_message(self, message):
        self.write_message(json.dumps({"send": message["send"], "t": message["t"]}))


routes = [
    (r"/h/room/(\d+)", Room),
    (r"/h/ping", Ping),
]
