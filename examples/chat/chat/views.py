from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.shortcuts import redirect, render

from chat.forms import RoomForm
from chat.models import Message


@login_required
def lobby(request):
    """The rooms that have messages, and a form to enter any room by name."""
    form = RoomForm(request.GET or None)
    if form.is_valid():
        return redirect("room", name=form.cleaned_data["name"])
    rooms = (
        Message.objects.values("room")
        .annotate(messages=Count("id"), last=Max("created"))
        .order_by("-last")[:20]
    )
    return render(request, "chat/lobby.html", {"form": form, "rooms": rooms})


@login_required
def room(request, name):
    """The room's page; its history and live messages come over the WebSocket."""
    return render(request, "chat/room.html", {"room": name})
