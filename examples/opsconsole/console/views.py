from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from console.commands import COMMANDS
from console.models import Run


@login_required
def index(request):
    """The console: allow-listed commands, a live output pane, and the history."""
    runs = Run.objects.select_related("user")[:25]
    return render(request, "console/index.html", {"commands": list(COMMANDS), "runs": runs})


@login_required
def run_detail(request, pk):
    run = get_object_or_404(Run.objects.select_related("user"), pk=pk)
    return render(request, "console/run.html", {"run": run})
