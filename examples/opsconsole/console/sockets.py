"""The live side of the console: run a command, stream its output, cancel it.

Protocol (JSON text frames). Client → server: ``{"action": "run", "command": "uptime"}``,
``{"action": "cancel"}``. Server → client: ``hello`` (user, commands), ``started`` (run id),
``output`` (stream, data), ``done`` (status, exit status, duration), ``error`` (message).
"""

import asyncio
import contextvars
import json
import time
from typing import Any

from tornado.websocket import WebSocketClosedError

from console.commands import COMMANDS, MAX_STORED_OUTPUT
from console.models import Run
from hybrid import CommandError, CommandNotAllowed, DjangoWebSocketHandler
from hybrid.lanes import lane_context


class RunSocket(DjangoWebSocketHandler):
    login_required = True  # anonymous handshakes get 403; no socket is opened

    def initialize(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.stream: Any = None
        self.cancelled = False

    async def open(self) -> None:
        self.send(
            type="hello",
            user=self.django_request.user.get_username(),
            commands=[{"name": s.name, "description": s.description} for s in COMMANDS],
        )

    async def on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
            action = data["action"]
        except (ValueError, TypeError, KeyError):
            self.send(type="error", message='send JSON like {"action": "run", "command": "uptime"}')
            return
        if action == "cancel":
            if self.stream is not None:
                self.cancelled = True
                self.stream.cancel()
            return
        if action != "run":
            self.send(type="error", message=f"unknown action {action!r}")
            return
        if self.task is not None and not self.task.done():
            self.send(type="error", message="a command is already running; cancel it first")
            return
        name = str(data.get("command", ""))
        try:
            COMMANDS.build(name)
        except CommandNotAllowed as exc:
            self.send(type="error", message=exc.public)  # str(exc) is for the log
            return
        run = await Run.objects.acreate(user=self.django_request.user, command=name)
        self.cancelled = False
        self.send(type="started", run=run.pk, command=name)
        # The command outlives this on_message call (so "cancel" can arrive meanwhile): run
        # it in a task of its own, outside this message's database thread lease.
        self.task = asyncio.get_running_loop().create_task(
            self._run(run, name), context=contextvars.Context()
        )

    def on_close(self) -> None:
        if self.stream is not None:
            self.cancelled = True
            self.stream.cancel()

    async def _run(self, run: Run, name: str) -> None:
        started = time.monotonic()
        output: list[str] = []
        size = 0
        try:
            async with COMMANDS.stream(name, lines=True) as stream:
                self.stream = stream
                async for event in stream:
                    self.send(type="output", stream=event.stream, data=event.data)
                    if size < MAX_STORED_OUTPUT:
                        output.append(event.data)
                    size += len(event.data)
        except CommandError as exc:  # e.g. the program is not installed on this machine
            self.stream = None
            async with lane_context():
                await Run.objects.filter(pk=run.pk).aupdate(
                    status=Run.Status.FAILED, output=str(exc), duration=0
                )
            self.send(type="error", message=str(exc))
            self.send(
                type="done", run=run.pk, status=Run.Status.FAILED, exit_status=None, duration=0
            )
            return
        self.stream = None
        result = stream.result
        if self.cancelled:
            status = Run.Status.CANCELLED
        elif result.timed_out:
            status = Run.Status.TIMED_OUT
        else:
            status = Run.Status.SUCCEEDED if result.returncode == 0 else Run.Status.FAILED
        duration = round(time.monotonic() - started, 3)
        async with lane_context():  # a database thread for the history write
            await Run.objects.filter(pk=run.pk).aupdate(
                status=status,
                exit_status=result.returncode,
                duration=duration,
                output="".join(output)[:MAX_STORED_OUTPUT],
                output_truncated=size > MAX_STORED_OUTPUT,
            )
        self.send(
            type="done", run=run.pk, status=status, exit_status=result.returncode, duration=duration
        )

    def send(self, **message: Any) -> None:
        try:
            self.write_message(json.dumps(message))
        except WebSocketClosedError:
            pass  # the browser went away; the command is being cancelled
