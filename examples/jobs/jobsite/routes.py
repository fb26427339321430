"""The async side, served by hybrid before Django's URLconf: the job page's WebSocket and
a small JSON API (upload, optionally waiting for the result; a job's state)."""

from typing import Any

from jobs.forms import UploadForm
from jobs.imports import UNAVAILABLE, start_import
from jobs.models import Job
from jobs.sockets import JobSocket

import hybrid
import hybrid.tasks

#: The longest ``?wait=`` the API takes, in seconds.
MAX_WAIT = 60.0


class JobsAPI(hybrid.DjangoHandler):
    """``POST /api/jobs`` (multipart, field ``file``; CSRF token as for a form): 202 with
    the job, or with ``?wait=SECONDS`` 200 with its final state once the task returned (202
    if it is still running then); 400 for a bad file, 503 when the broker is down."""

    @hybrid.login_required
    async def post(self) -> None:
        user = await self.django_request.auser()
        form = UploadForm(self.django_request.POST, self.django_request.FILES)
        if not form.is_valid():
            self.set_status(400)
            self.write({"errors": form.errors.get_json_data()})
            return
        try:
            wait = min(MAX_WAIT, float(self.get_query_argument("wait", "0")))
        except ValueError:
            wait = 0.0
        try:
            job, result = await start_import(user, form.cleaned_data["file"])
        except hybrid.TasksUnavailable as exc:
            self.set_status(503)
            self.set_header("Retry-After", "60")
            self.write({"error": UNAVAILABLE, "reason": exc.reason})
            return
        if wait > 0:
            try:
                # The task's return value, on hybrid's Redis subscriber: no thread, no poll.
                self.write(await hybrid.tasks.wait(result, timeout=wait))
                return
            except hybrid.TaskTimeout:
                pass  # still running: say where it is
        self.set_status(202)
        self.write(await job_state(job.pk))


class JobAPI(hybrid.DjangoHandler):
    """``GET /api/jobs/ID``: the job's state (as the WebSocket's ``state`` frame)."""

    @hybrid.login_required
    async def get(self, pk: str) -> None:
        user = await self.django_request.auser()
        if not await Job.objects.filter(pk=int(pk), owner=user).aexists():
            self.set_status(404)
            self.write({"error": "no such job"})
            return
        self.write(await job_state(int(pk)))


async def job_state(pk: int) -> dict[str, Any]:
    job = await Job.objects.aget(pk=pk)
    return {**job.as_frame(), "task_id": job.task_id, "url": f"/jobs/{pk}/"}


routes = [
    (r"/ws/jobs/([0-9]{1,18})", JobSocket),
    (r"/api/jobs", JobsAPI),
    (r"/api/jobs/([0-9]{1,18})", JobAPI),
]
