"""Plain Django views for tests/unit/bridge/test_parity.py: each answers the same through
Django's test Client and through hybrid."""

from django.http import (
    Http404,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def text(request):
    return HttpResponse("plain text, ünïcode\n", content_type="text/plain; charset=utf-8")


def json_view(request):
    return JsonResponse({"numbers": [1, 2, 3], "nested": {"ok": True}, "text": "é"})


def redirect_view(request):
    return redirect("/parity/text?from=redirect")


def missing(request):
    raise Http404("not here")


@csrf_exempt
def form(request):
    if request.method != "POST":
        return HttpResponse("post only", status=405)
    return JsonResponse(
        {"fields": {key: request.POST.getlist(key) for key in sorted(request.POST)}},
        status=201,
    )


def cookies(request):
    response = HttpResponse("cookies")
    response.set_cookie("plain", "1")
    response.set_cookie("flags", "two words", path="/parity/", httponly=True, samesite="Lax")
    response.set_cookie("sec", "s", secure=True, samesite="Strict")
    response.delete_cookie("gone")
    return response


def headers(request):
    response = HttpResponse(status=202, headers={"X-Custom": "value", "Cache-Control": "no-cache"})
    response["X-Echo-Agent"] = request.headers.get("X-Agent", "")
    response["Content-Language"] = "fr"
    return response


def template(request):
    context = {"title": "Parity", "items": ["a", "b"], "unsafe": "<script>"}
    return render(request, "parity/page.html", context)


def query(request):
    return JsonResponse(
        {key: request.GET.getlist(key) for key in sorted(request.GET)}
        | {"_raw": request.META["QUERY_STRING"], "_path": request.path}
    )


def stream(request):
    return StreamingHttpResponse(
        (f"line {n}\n".encode() for n in range(5)), content_type="text/plain"
    )


def empty(request):
    return HttpResponse(status=204)


urlpatterns = [
    path("text", text),
    path("json", json_view),
    path("redirect", redirect_view),
    path("missing", missing),
    path("form", form),
    path("cookies", cookies),
    path("headers", headers),
    path("template", template),
    path("query", query),
    path("stream", stream),
    path("empty", empty),
]
