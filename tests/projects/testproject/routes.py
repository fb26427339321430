import asyncio
import os
import subprocess
import time

from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from testproject import group_routes

#: Memory held on purpose by GrowHandler (the --max-rss tests).
_ballast: list[bytes] = []


class PidHandler(RequestHandler):
    async def get(self) -> None:
        self.write({"pid": os.getpid(), "port": self.application.port})

    async def post(self) -> None:
        self.write({"pid": os.getpid(), "got": len(self.request.body)})


class GcHandler(RequestHandler):
    """The worker's garbage collector settings (hybrid.worker.tune_gc)."""

    def get(self) -> None:
        import gc

        self.write({"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()})


class LoopHandler(RequestHandler):
    """The class of the event loop this request runs on (``--loop``)."""

    async def get(self) -> None:
        loop = type(asyncio.get_running_loop())
        self.write({"loop": f"{loop.__module__}.{loop.__qualname__}", "pid": os.getpid()})


class SleepHandler(RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s", "1")))
        self.write({"slept": True, "pid": os.getpid()})


class BlockHandler(RequestHandler):
    """Blocks the whole IOLoop: what the heartbeat must catch."""

    def get(self) -> None:
        time.sleep(float(self.get_argument("s", "60")))
        self.write({"blocked": True})


class SpawnHandler(RequestHandler):
    """Starts a long `sleep` in a session of its own, as a command runner would."""

    def get(self) -> None:
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        self.write({"pid": proc.pid, "worker": os.getpid()})


class GrowHandler(RequestHandler):
    def get(self) -> None:
        _ballast.append(os.urandom(int(self.get_argument("mb", "50")) * 1024 * 1024))
        self.write({"pid": os.getpid()})


class CommandHandler(RequestHandler):
    """Runs `sleep S` through hybrid's command runner (`as_me=1`: with user= this worker's
    own user, which every event loop accepts)."""

    async def get(self) -> None:
        from hybrid import run_command

        user = os.getuid() if self.get_argument("as_me", "") else None
        result = await run_command(["sleep", self.get_argument("s", "1")], timeout=120, user=user)
        self.write({"returncode": result.returncode, "timed_out": result.timed_out})


class WriteHandler(RequestHandler):
    """Appends the posted id to $WRITE_LOG: the chaos test counts duplicated writes."""

    def post(self) -> None:
        line = self.request.body.decode() + "\n"
        fd = os.open(os.environ["WRITE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        self.write({"pid": os.getpid(), "written": True})


class EchoSocket(WebSocketHandler):
    """A plain Tornado WebSocket: the drain tests check it is closed with 1001."""

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


routes = [
    (r"/hybrid/echo", EchoSocket),
    (r"/hybrid/write", WriteHandler),
    (r"/hybrid/command", CommandHandler),
    (r"/hybrid/pid", PidHandler),
    (r"/hybrid/gc", GcHandler),
    (r"/hybrid/loop", LoopHandler),
    (r"/hybrid/sleep", SleepHandler),
    (r"/hybrid/block", BlockHandler),
    (r"/hybrid/spawn", SpawnHandler),
    (r"/hybrid/grow", GrowHandler),
    *group_routes.routes,
]
