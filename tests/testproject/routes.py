import asyncio
import os

from tornado.web import RequestHandler


class PidHandler(RequestHandler):
    async def get(self) -> None:
        self.write({"pid": os.getpid(), "port": self.application.settings["hybrid_port"]})


class SleepHandler(RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s", "1")))
        self.write({"slept": True, "pid": os.getpid()})


routes = [
    (r"/hybrid/pid", PidHandler),
    (r"/hybrid/sleep", SleepHandler),
]
