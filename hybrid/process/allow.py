"""Allow-lists: the only commands (and argument shapes) a request may cause to run.

A request never names an executable or passes an argv. It names a :class:`CommandSpec`,
whose fixed ``argv`` the developer wrote, and supplies arguments that must each match a
regular expression (``re.fullmatch``) and, unless ``allow_dash=True``, must not start with
``-`` (so ``?arg=--output=/etc/passwd`` cannot turn into an option of the command).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid.process.argv import DEFAULT_MAX_OUTPUT
from hybrid.process.commands import CommandStream, run_command, stream_command
from hybrid.process.errors import CommandNotAllowed
from hybrid.process.limits import Limits
from hybrid.process.result import CommandResult

__all__ = ["AllowList", "CommandSpec"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class CommandSpec:
    """One command a request may run.

    ``argv``: the fixed start, e.g. ``("ping", "-c", "3")``. ``args``: one pattern per
    required user argument, in order. ``varargs``: pattern for optional further arguments,
    at most ``max_args`` user arguments in all. ``end_of_options=True`` inserts ``--``
    before the user arguments for commands that understand it. The remaining fields are
    the defaults the command runs with (a caller may override them per call).
    """

    name: str
    argv: Sequence[str]
    args: Sequence[str] = ()
    varargs: str | None = None
    max_args: int = 16
    allow_dash: bool = False
    end_of_options: bool = False
    timeout: float = 10.0
    max_output: int | None = DEFAULT_MAX_OUTPUT
    limits: Limits | None = None
    cwd: str | None = None
    env: Mapping[str, str] | None = None
    text: bool = False
    description: str = ""
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _varargs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"CommandSpec name {self.name!r} must match {_NAME.pattern}")
        if isinstance(self.argv, str) or not self.argv:
            raise ValueError(
                f"CommandSpec {self.name!r}: argv must be a non-empty list like ['ping', '-c', "
                f"'3'], not {self.argv!r}"
            )
        if isinstance(self.args, str):
            raise ValueError(
                f"CommandSpec {self.name!r}: args is a list of patterns, one "
                "per argument; wrap a single pattern in a list"
            )
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "args", tuple(self.args))
        if len(self.args) > self.max_args:
            raise ValueError(f"CommandSpec {self.name!r}: max_args is below len(args)")
        try:
            object.__setattr__(self, "_patterns", tuple(re.compile(p) for p in self.args))
            varargs = re.compile(self.varargs) if self.varargs is not None else None
        except re.error as exc:
            raise ValueError(f"CommandSpec {self.name!r}: bad argument pattern: {exc}") from exc
        object.__setattr__(self, "_varargs", varargs)

    def build(self, user_args: Sequence[str] = ()) -> list[str]:
        """The argv for ``user_args``, or :class:`CommandNotAllowed` naming what is wrong."""
        if isinstance(user_args, str):
            raise TypeError("user_args is a list of arguments; wrap a single one in a list")
        user_args = list(user_args)
        required = len(self._patterns)
        if len(user_args) < required or (self._varargs is None and len(user_args) > required):
            raise self._refuse(f"takes {self._arity()}, got {len(user_args)}")
        if len(user_args) > self.max_args:
            raise self._refuse(f"takes at most {self.max_args} arguments, got {len(user_args)}")
        for index, value in enumerate(user_args):
            pattern = self._patterns[index] if index < required else self._varargs
            assert pattern is not None
            if not isinstance(value, str):
                raise self._refuse(f"argument {index + 1} is not a string", argument=str(value))
            if value.startswith("-") and not self.allow_dash:
                raise self._refuse(
                    f"argument {index + 1} {value!r} starts with '-' and could be read as an "
                    "option; the spec must set allow_dash=True to accept that",
                    argument=value,
                    public=f"argument {index + 1} may not start with '-'",
                )
            if not pattern.fullmatch(value):
                raise self._refuse(
                    f"argument {index + 1} {value!r} does not match {pattern.pattern!r}",
                    argument=value,
                    public=f"argument {index + 1} is not accepted",
                )
        separator = ["--"] if self.end_of_options and user_args else []
        return [*self.argv, *separator, *user_args]

    def _arity(self) -> str:
        required = len(self._patterns)
        if self._varargs is not None:
            return f"{required} to {self.max_args} arguments"
        return f"exactly {required} argument{'s' if required != 1 else ''}"

    def _refuse(
        self, reason: str, argument: str | None = None, public: str | None = None
    ) -> CommandNotAllowed:
        """``public``: what the client is told instead of ``reason`` when that names a
        pattern or a spec setting (the server's log gets ``reason``)."""
        return CommandNotAllowed(
            f"command {self.name!r} refused: {reason}",
            name=self.name,
            argument=argument,
            public=f"command {self.name!r}: {public or reason}",
        )


class AllowList:
    """The set of :class:`CommandSpec` a project exposes, looked up by name."""

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._specs: dict[str, CommandSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"AllowList: command name {spec.name!r} is listed twice")
            self._specs[spec.name] = spec

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def get(self, name: str) -> CommandSpec:
        """The spec called ``name``, or :class:`CommandNotAllowed`."""
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise CommandNotAllowed(
                f"command {name!r} is not in the allow-list; add a CommandSpec for it",
                name=str(name),
                public=f"no command named {name!r}",
            ) from None

    def build(self, name: str, user_args: Sequence[str] = ()) -> list[str]:
        """The argv ``name`` runs with ``user_args``, after every check."""
        return self.get(name).build(user_args)

    async def run(
        self, name: str, user_args: Sequence[str] = (), **overrides: Any
    ) -> CommandResult[Any]:
        """Check, then :func:`run_command` with the spec's defaults (``overrides`` win)."""
        spec = self.get(name)
        argv = spec.build(user_args)
        result: CommandResult[Any] = await run_command(argv, **{**_defaults(spec), **overrides})
        return result

    def stream(
        self, name: str, user_args: Sequence[str] = (), **overrides: Any
    ) -> CommandStream[Any]:
        """Check, then :func:`stream_command` with the spec's defaults (``overrides`` win)."""
        spec = self.get(name)
        argv = spec.build(user_args)
        options = _defaults(spec)
        options.pop("max_output")
        stream: CommandStream[Any] = stream_command(argv, **{**options, **overrides})
        return stream


def _defaults(spec: CommandSpec) -> dict[str, Any]:
    return {
        "timeout": spec.timeout,
        "max_output": spec.max_output,
        "limits": spec.limits,
        "cwd": spec.cwd,
        "env": spec.env,
        "text": spec.text,
    }
