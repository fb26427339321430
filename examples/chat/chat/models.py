from typing import Any

from django.conf import settings
from django.db import models

#: What a room may be called: it becomes part of a URL and of a group name (``chat.NAME``).
ROOM_NAME = r"[A-Za-z0-9_-]{1,50}"
#: The longest message a user may send, in characters.
MAX_LENGTH = 2000


class Message(models.Model):
    """One line said in a room."""

    room = models.CharField(max_length=50)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["room", "id"], name="chat_room_id")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}: {self.text[:40]}"

    def as_frame(self) -> dict[str, Any]:
        """The message as the socket sends it (``user`` must be loaded already)."""
        return {
            "id": self.pk,
            "room": self.room,
            "user": self.user.get_username(),
            "text": self.text,
            "created": self.created.isoformat(),
        }
