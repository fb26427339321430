import os

from django.shortcuts import render

from quickstart.models import Greeting


def index(request):
    """A plain sync Django view: hybrid runs it off the IOLoop."""
    return render(
        request,
        "quickstart/index.html",
        {"greetings": Greeting.objects.all()[:10], "pid": os.getpid()},
    )
