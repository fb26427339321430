"""The live side of a job page: one WebSocket per open page, ``/ws/jobs/ID``.

Protocol (JSON text frames, server → client only):

* ``state``: the job as the database has it when the socket opens (``job``, ``state``,
  ``total``, ``current``, ``imported``, ``rejected``, ``reasons``, ``error``), so a page
  loaded late, or reconnected, starts right;
* ``progress``: every ``JOBS_PROGRESS_EVERY`` rows (``current``, ``total``,
  ``imported``, ``rejected`` and the ``reasons`` of the rows rejected since the last one);
* ``done``: the job's final state (as ``state``), ``failed`` (``error``) when the task
  raised.

The Celery worker sends them (``hybrid.tasks.progress`` and ``connect_signals``) to the
task's group through Redis; this socket joined it.
"""

from typing import Any

import hybrid
import hybrid.tasks
from jobs.models import Job


class JobSocket(hybrid.DjangoWebSocketHandler):
    login_required = True  # anonymous handshakes get 403; no socket is opened

    async def open(self, pk: str) -> None:
        jobs = Job.objects.filter(pk=int(pk), owner=self.django_request.user)
        job = await jobs.afirst()
        if job is None:
            self.close(4404, "no such job")
            return
        # Join first, then read the state: progress sent in between arrives both ways, and
        # the page keeps the furthest, rather than missing it.
        if job.task_id:
            await self.group_add(hybrid.tasks.task_group(job.task_id))
        job = await jobs.aget()
        self.write_message({"type": "state", **job.as_frame()})

    def on_message(self, message: str | bytes) -> None:
        pass  # nothing to say to the server

    def task_progress(self, message: dict[str, Any]) -> None:
        """``hybrid.tasks.progress()`` in the import task."""
        self.write_message({**message, "type": "progress"})

    def task_done(self, message: dict[str, Any]) -> None:
        """The task returned: its result is the job's final state (``summary()``)."""
        self.write_message({"type": "done", **(message.get("result") or {})})

    def task_failed(self, message: dict[str, Any]) -> None:
        self.write_message({"type": "failed", "error": message.get("error", "")})
