"""The live side of the chat: one WebSocket per open room page.

Protocol (JSON text frames). Client → server: ``{"text": "hello"}``. Server → client:
``hello`` (pid of the worker, user, room), ``history`` (the room's last messages, oldest
first), ``message`` (id, room, user, text, created, pid of the sender's worker) and
``error`` (message).
"""

import json
import os
from typing import Any

import hybrid
from chat.models import MAX_LENGTH, Message

#: How many earlier messages a socket gets when it joins a room.
HISTORY = 50


class ChatSocket(hybrid.DjangoWebSocketHandler):
    login_required = True  # anonymous handshakes get 403; no socket is opened

    async def open(self, room: str) -> None:
        self.room = room
        self.group = f"chat.{room}"
        self.user = self.django_request.user
        # Join first, then read the history: a message sent in between arrives both ways,
        # and the page keeps one of each id, rather than missing it.
        await self.group_add(self.group)
        self.write_message(
            {"type": "hello", "pid": os.getpid(), "user": self.user.get_username(), "room": room}
        )
        latest = Message.objects.filter(room=room).select_related("user").order_by("-pk")
        history = [message.as_frame() async for message in latest[:HISTORY]]
        self.write_message({"type": "history", "messages": history[::-1]})

    async def on_message(self, data: str | bytes) -> None:
        try:
            text = json.loads(data)["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, TypeError, KeyError):
            self.error('send JSON like {"text": "hello"}')
            return
        text = text.strip()
        if not text:
            return
        if len(text) > MAX_LENGTH:
            self.error(f"a message has at most {MAX_LENGTH} characters")
            return
        message = await Message.objects.acreate(room=self.room, user=self.user, text=text)
        try:
            await hybrid.group_send(
                self.group, {"type": "chat.message", **message.as_frame(), "pid": os.getpid()}
            )
        except hybrid.GroupsUnavailable:
            self.error("saved, but live delivery is down: the others see it when they reload")

    def chat_message(self, message: dict[str, Any]) -> None:
        """A message of the room, from any worker (``group_send`` of ``chat.message``)."""
        self.write_message({**message, "type": "message"})

    def error(self, text: str) -> None:
        self.write_message({"type": "error", "message": text})
