"""The benchmark endpoints as Django views: sync (gunicorn) and async (uvicorn)."""

import asyncio
import random
import subprocess
import time

from django.http import HttpResponse, JsonResponse

from benchapp.models import QUERY_SECONDS, ROWS, Row, slow_query

HELLO = b"Hello, World!"


def hello(request):
    return HttpResponse(HELLO, content_type="text/plain")


def row(request):
    return JsonResponse(Row.objects.get(pk=random.randint(1, ROWS)).as_dict())


def rows(request):
    return JsonResponse({"rows": [r.as_dict() for r in Row.objects.order_by("pk")[:20]]})


def query(request):
    return JsonResponse({"slept": slow_query().get()})


def io(request):
    time.sleep(QUERY_SECONDS)
    return HttpResponse(b"slept", content_type="text/plain")


def cmd(request):
    code = subprocess.run(["true"], timeout=5).returncode
    return JsonResponse({"returncode": code})


async def ahello(request):
    return HttpResponse(HELLO, content_type="text/plain")


async def arow(request):
    return JsonResponse((await Row.objects.aget(pk=random.randint(1, ROWS))).as_dict())


async def arows(request):
    return JsonResponse({"rows": [r.as_dict() async for r in Row.objects.order_by("pk")[:20]]})


async def aquery(request):
    return JsonResponse({"slept": await slow_query().aget()})


async def aio(request):
    await asyncio.sleep(QUERY_SECONDS)
    return HttpResponse(b"slept", content_type="text/plain")


async def acmd(request):
    proc = await asyncio.create_subprocess_exec("true")
    return JsonResponse({"returncode": await asyncio.wait_for(proc.wait(), 5)})
