"""The async side, served by hybrid before Django's URLconf."""

from chat.models import ROOM_NAME
from chat.sockets import ChatSocket

routes = [
    (rf"/ws/chat/({ROOM_NAME})", ChatSocket),
]
