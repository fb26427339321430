"""Django's access decorators for :class:`~hybrid.DjangoHandler` methods.

Each decorator only marks the handler method; when a request comes, the view that
:class:`~hybrid.DjangoHandler` hands to Django's middleware chain is wrapped in Django's own
decorator of the same name (``django.contrib.auth.decorators``, async-aware since Django
5.1). So the behaviour is Django's exactly: ``login_required`` redirects anonymous users to
``settings.LOGIN_URL?next=...``; ``permission_required`` redirects (or answers 403 with
``raise_exception=True``); ``csrf_exempt`` is seen by ``CsrfViewMiddleware.process_view``.
Nothing here imports Django, so ``import hybrid`` stays Django-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

__all__ = ["csrf_exempt", "login_required", "permission_required", "view_decorators"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: Attribute on a handler method: Django view decorators to apply, innermost first.
_MARK = "_hybrid_view_decorators"


def _mark(function: F, decorator: Callable[[Any], Any]) -> F:
    previous = getattr(function, _MARK, ())
    setattr(function, _MARK, (*previous, decorator))
    return function


def view_decorators(method: object) -> tuple[Callable[[Any], Any], ...]:
    """The Django decorators marked on a handler method, innermost first."""
    return tuple(getattr(method, _MARK, ()))


@overload
def login_required(function: F) -> F: ...
@overload
def login_required(
    function: None = None, *, login_url: str | None = None, redirect_field_name: str = "next"
) -> Callable[[F], F]: ...
def login_required(
    function: F | None = None,
    *,
    login_url: str | None = None,
    redirect_field_name: str = "next",
) -> F | Callable[[F], F]:
    """Only logged-in users reach this handler method; others are redirected to log in.

    ``@login_required`` or ``@login_required(login_url="/accounts/login/")``, as Django's.
    """

    def decorate(method: F) -> F:
        def apply(view: Any) -> Any:
            from django.contrib.auth.decorators import login_required as django_login_required

            return django_login_required(
                view, login_url=login_url, redirect_field_name=redirect_field_name
            )

        return _mark(method, apply)

    return decorate(function) if function is not None else decorate


def permission_required(
    perm: str | Iterable[str], *, login_url: str | None = None, raise_exception: bool = False
) -> Callable[[F], F]:
    """Only users with ``perm`` (``"app.codename"``, or several) reach this method.

    Others are redirected to log in, or get 403 with ``raise_exception=True``; as Django's.
    """
    perms = perm if isinstance(perm, str) else tuple(perm)

    def decorate(method: F) -> F:
        def apply(view: Any) -> Any:
            from django.contrib.auth.decorators import (
                permission_required as django_permission_required,
            )

            return django_permission_required(
                perms, login_url=login_url, raise_exception=raise_exception
            )(view)

        return _mark(method, apply)

    return decorate


def csrf_exempt(target: T) -> T:
    """Exempt a handler class, or one handler method, from ``CsrfViewMiddleware``.

    Unsafe methods (POST, PUT, PATCH, DELETE) of a :class:`~hybrid.DjangoHandler` need a CSRF
    token, as Django views do, unless exempt. ``DjangoHandler.csrf_exempt = True`` on a
    class does the same as decorating it.
    """
    setattr(target, "csrf_exempt", True)  # noqa: B010  # any class or function
    return target
