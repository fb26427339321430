from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

import hybrid
from jobs.forms import UploadForm
from jobs.imports import UNAVAILABLE, start_import
from jobs.models import Heartbeat, Job


def jobs_page(request, form, status=200, unavailable=""):
    """The job list with the upload form (sync: it queries)."""
    context = {
        "form": form,
        "jobs": Job.objects.filter(owner=request.user)[:50],
        "heartbeat": Heartbeat.objects.filter(name="housekeeping").first(),
        "unavailable": unavailable,
    }
    return render(request, "jobs/index.html", context, status=status)


@login_required
def index(request):
    """Your jobs, newest first, and the form to upload the next file."""
    return jobs_page(request, UploadForm())


@require_POST
@login_required
async def upload(request):
    """An async view, on the worker's loop: save the file, queue its import, and go to
    the job's page; 503 with the form again when the broker is down."""
    request.user = await request.auser()  # resolved: the sync code below reads it
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return await hybrid.run_sync(jobs_page, request, form, 400)
    try:
        job, _ = await start_import(request.user, form.cleaned_data["file"])
    except hybrid.TasksUnavailable:
        return await hybrid.run_sync(jobs_page, request, form, 503, UNAVAILABLE)
    return redirect("job", pk=job.pk)


@login_required
def job(request, pk):
    """One job: its state as of now; the page's WebSocket keeps it current."""
    job = get_object_or_404(Job, pk=pk, owner=request.user)
    return render(request, "jobs/job.html", {"job": job})
