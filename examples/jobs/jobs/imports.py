"""Starting an import: save the upload, then queue its task without blocking the loop.

Shared by the upload form's view and the JSON API (``jobsite/routes.py``).
"""

from typing import Any

from django.core.files.uploadedfile import UploadedFile

import hybrid
import hybrid.tasks
from jobs.models import Job
from jobs.tasks import import_contacts

#: What the user reads when the broker is down (with a 503).
UNAVAILABLE = (
    "The job queue is unavailable right now, so the file was not imported. "
    "Nothing was queued: try again in a minute."
)


def save_upload(owner: Any, upload: UploadedFile) -> Job:
    """The new job, with its file in ``MEDIA_ROOT`` (sync: storage and ORM)."""
    job = Job(owner=owner, filename=upload.name[:255])
    job.file.save(upload.name, upload, save=False)
    job.save()
    return job


def discard(job: Job) -> None:
    """Forget a job that could not be queued, file and all (sync)."""
    job.file.delete(save=False)
    job.delete()


async def start_import(owner: Any, upload: UploadedFile) -> tuple[Job, Any]:
    """Save ``upload`` as a new job of ``owner`` and queue its import; returns the job and
    the task's ``AsyncResult``. Raises ``hybrid.TasksUnavailable`` (the job and its file
    are gone again) when the broker is down."""
    job = await hybrid.run_sync(save_upload, owner, upload)
    try:
        # Published from hybrid's own threads, no retry: with the broker down this raises
        # within about two seconds instead of holding the worker's loop.
        result = await hybrid.tasks.delay(import_contacts, job.pk)
    except hybrid.TasksUnavailable:
        await hybrid.run_sync(discard, job)
        raise
    job.task_id = result.id
    await Job.objects.filter(pk=job.pk).aupdate(task_id=result.id)
    return job, result
