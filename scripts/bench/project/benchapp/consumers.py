"""The chat of the groups benchmark, Channels' side (``benchproject.channels_asgi``): the
consumer of Channels' tutorial, ``AsyncWebsocketConsumer`` on ``channels_redis``'
``RedisChannelLayer``.

``/ws/room/N`` joins group ``room-N`` in ``connect()``, accepts, and says
``{"joined": N}``; a text message ``{"send": TEXT, "t": STAMP}`` goes to the room with
``channel_layer.group_send``, and every member (the sender too) gets ``{"send": TEXT, "t":
STAMP}`` from ``chat_message``. The same chat as ``benchapp.rooms.Room`` (hybrid).
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        room = self.scope["url_route"]["kwargs"]["room"]
        self.room = f"room-{room}"
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        await self.send(text_data=json.dumps({"joined": room}))

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        data = json.loads(text_data)
        await self.channel_layer.group_send(
            self.room, {"type": "chat.message", "send": data["send"], "t": data["t"]}
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"send": event["send"], "t": event["t"]}))
