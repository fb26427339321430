"""The async side, served by hybrid before Django's URLconf."""

from console.sockets import RunSocket

routes = [
    (r"/ws/run", RunSocket),
]
