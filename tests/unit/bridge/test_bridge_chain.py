"""The flat middleware chain (hybrid/bridge/chain.py): the same hooks in the same order and
the same response as Django's nested chain, through short-circuits and failures."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings
from django.utils.deprecation import MiddlewareMixin
from testproject.settings import DJANGO_MIDDLEWARE

from hybrid._compat import django as dj
from hybrid.bridge.chain import FlatChain
from hybrid.bridge.lifecycle import make_handler_chain
from hybrid.bridge.middleware import Rules

#: (layer, hook) -> what it does: "answer" (returns a response) or "raise".
Plan = dict[tuple[str, str], str]


def layers(plan: Plan, log: list[str]) -> list[type]:
    """Three middleware classes A, B, C that log their hooks and follow ``plan``."""

    def make(name: str) -> type:
        def process_request(self: Any, request: HttpRequest) -> HttpResponse | None:
            log.append(f"{name}.request")
            action = plan.get((name, "request"))
            if action == "raise":
                raise ValueError(f"{name} failed in process_request")
            if action == "answer":
                return HttpResponse(f"from {name}", status=299)
            return None

        def process_response(
            self: Any, request: HttpRequest, response: HttpResponse
        ) -> HttpResponse:
            log.append(f"{name}.response({response.status_code})")
            if plan.get((name, "response")) == "raise":
                raise ValueError(f"{name} failed in process_response")
            response[f"X-{name}"] = "seen"
            return response

        return type(
            name,
            (MiddlewareMixin,),
            {
                "process_request": process_request,
                "process_response": process_response,
                "hybrid_rules": Rules(),
            },
        )

    return [make(name) for name in "ABC"]


def view_for(plan: Plan, log: list[str]) -> Any:
    async def view(request: HttpRequest) -> HttpResponse:
        log.append("view")
        if plan.get(("view", "")) == "raise":
            raise ValueError("the view failed")
        return HttpResponse("from the view")

    return view


def nested(classes: list[type], inner: Any) -> Any:
    """Django's construction (BaseHandler.load_middleware) for async middleware."""
    handler = convert_exception_to_response(inner)
    for cls in reversed(classes):
        handler = convert_exception_to_response(cls(handler))
    return handler


def flat(classes: list[type], inner: Any) -> Any:
    """The same instances, run flat."""
    instances = []
    handler = convert_exception_to_response(inner)
    for cls in reversed(classes):
        instances.append(cls(handler))
    instances.reverse()
    return FlatChain(instances, inner)


PLANS: list[Plan] = [
    {},
    {("B", "request"): "answer"},
    {("A", "request"): "answer"},
    {("C", "request"): "answer"},
    {("B", "request"): "raise"},
    {("A", "request"): "raise"},
    {("view", ""): "raise"},
    {("B", "response"): "raise"},
    {("A", "response"): "raise"},
    {("C", "response"): "raise", ("view", ""): "raise"},
    {("B", "request"): "answer", ("A", "response"): "raise"},
]


@pytest.mark.gen_test
@pytest.mark.parametrize("plan", PLANS, ids=lambda plan: repr(plan) if plan else "plain")
async def test_flat_chain_runs_the_hooks_django_runs(plan: Plan) -> None:
    outcomes = []
    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"]):
        for build in (nested, flat):
            log: list[str] = []
            chain = build(layers(plan, log), view_for(plan, log))
            response = await chain(RequestFactory().get("/"))
            outcomes.append((log, response.status_code, response.content, sorted(response.items())))
    assert outcomes[1] == outcomes[0]


def test_default_middleware_runs_flat_and_a_project_class_keeps_djangos_chain() -> None:
    with override_settings(MIDDLEWARE=DJANGO_MIDDLEWARE):
        chain = make_handler_chain()
        chain.load_middleware(is_async=True)
        assert isinstance(dj.middleware_chain(chain), FlatChain)
    own = [*DJANGO_MIDDLEWARE, f"{__name__}.ProjectMiddleware"]
    with override_settings(MIDDLEWARE=own):
        chain = make_handler_chain()
        chain.load_middleware(is_async=True)
        assert not isinstance(dj.middleware_chain(chain), FlatChain)


class ProjectMiddleware(MiddlewareMixin):
    """A project's own middleware: hybrid cannot know its hooks."""
