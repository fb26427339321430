"""A GenericSubprocess-style callback API, ``Subprocess(callback, timeout=..., args=[...])``,
on asyncio.

A Tornado-era ``GenericSubprocess`` polls non-blocking pipes from the IOLoop and sends
SIGKILL to the child only. This keeps its contract (callback once with
``(status, stdout, stderr, has_timed_out)``; a timeout <= 0 means no limit; starting twice
raises RuntimeError; a missing executable raises at ``start()``) and gets everything else
from :func:`hybrid.run_command`: process-group kill, reaping, capped output, scrubbed env.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop

from hybrid.log import gen_log
from hybrid.process.argv import Command, Prepared, prepare
from hybrid.process.commands import execute
from hybrid.process.errors import CommandError
from hybrid.process.result import CommandResult
from hybrid.process.runner import Execution

__all__ = ["Subprocess"]

#: ``callback(status, stdout, stderr, has_timed_out)``
Callback = Callable[[int, Any, Any, bool], object]

_OPTIONS = frozenset(
    {
        "input",
        "cwd",
        "env",
        "text",
        "encoding",
        "errors",
        "shell",
        "max_output",
        "limits",
        "kill_grace",
        "queue_timeout",
        "user",
        "group",
        "extra_groups",
    }
)


class Subprocess:
    """Run ``args`` in the background and call ``callback`` once when it has finished.

    ``timeout``: wall-clock seconds before the command's process group is killed; <= 0 (the
    default, as in GenericSubprocess) means no limit. Other keyword options are those of
    :func:`hybrid.run_command` (``cwd``, ``env``, ``input``, ``text``, ``limits``...);
    Popen-only ones (``stdout=``, ``close_fds=``...) are refused because the runner owns
    them. Output is bytes unless ``text=True``.

    A command stopped with :meth:`cancel` reports its signal as a negative status
    (``-15``); cancelled before it even started (still queued), ``-15`` and empty output.
    """

    def __init__(
        self,
        callback: Callback,
        timeout: float = -1,
        args: Command = (),
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise TypeError(
                f"Subprocess() got unsupported option(s) {', '.join(unknown)}; the runner "
                f"manages pipes and fds itself; supported: {', '.join(sorted(_OPTIONS))}"
            )
        self.callback = callback
        self.timeout = timeout
        self.args = args
        self.options = options
        self.result: CommandResult[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._execution: Execution | None = None
        self._cancelled = False
        self._done_callback = False

    def start(self) -> None:
        """Validate and spawn. RuntimeError if already started; CommandNotFound if missing.

        Needs an event loop: the running one (in a handler or coroutine) or, as in a
        GenericSubprocess-era script, Tornado's current IOLoop before it is started.
        """
        if self._task is not None:
            raise RuntimeError("Cannot start task twice; create a new Subprocess")
        prep = prepare(
            self.args, timeout=self.timeout if self.timeout > 0 else None, **self.options
        )
        self._task = _loop().create_task(self._run(prep))

    def cancel(self) -> None:
        """Kill the command's process group (TERM, grace, KILL); the callback still runs."""
        self._cancelled = True
        if self._execution is not None:
            self._execution.cancel()

    @property
    def status(self) -> int | None:
        return self.result.returncode if self.result is not None else None

    @property
    def stdout(self) -> Any:
        return self.result.stdout if self.result is not None else None

    @property
    def stderr(self) -> Any:
        return self.result.stderr if self.result is not None else None

    @property
    def has_timed_out(self) -> bool:
        return self.result.timed_out if self.result is not None else False

    async def _run(self, prep: Prepared) -> None:
        empty: Any = "" if prep.encoding is not None else b""
        try:
            if self._cancelled:
                self._finish(-signal.SIGTERM, empty, empty, False)
                return
            self.result = await execute(prep, on_spawn=self._on_spawn)
        except CommandError as exc:
            gen_log.error("Subprocess %r could not run: %s", list(prep.argv), exc)
            message: Any = str(exc) if prep.encoding is not None else str(exc).encode()
            self._finish(127, empty, message, False)
            return
        self._finish(
            self.result.returncode, self.result.stdout, self.result.stderr, self.result.timed_out
        )

    def _on_spawn(self, execution: Execution) -> None:
        self._execution = execution
        if self._cancelled:
            execution.cancel()

    def _finish(self, status: int, stdout: Any, stderr: Any, timed_out: bool) -> None:
        if self._done_callback:
            return
        self._done_callback = True
        asyncio.get_running_loop().call_soon(self.callback, status, stdout, stderr, timed_out)


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    io_loop = IOLoop.current(instance=False)
    if io_loop is None:
        raise RuntimeError(
            "Subprocess.start() needs an event loop: call it from a handler or coroutine, "
            "or create the IOLoop first (IOLoop.current())"
        )
    loop: asyncio.AbstractEventLoop = io_loop.asyncio_loop  # type: ignore[attr-defined]
    return loop
