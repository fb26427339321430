"""What a finished command left behind: :class:`CommandResult`, and the decoding of its
output (bytes, or text with universal newlines as ``subprocess`` text mode gives)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AnyStr, Generic

from hybrid.process.errors import CommandFailed, CommandTimeout, describe

__all__ = ["CommandResult", "decode"]


@dataclass(frozen=True)
class CommandResult(Generic[AnyStr]):
    """What a finished command left behind, like :class:`subprocess.CompletedProcess`.

    ``returncode`` is negative when a signal ended the command (``-9`` after a KILL).
    ``stdout``/``stderr`` are bytes, or str when ``text=True``/``encoding=`` was given;
    each holds at most ``max_output`` bytes of output, and ``*_truncated`` says whether
    more was produced (and discarded, so the child never blocked on a full pipe).
    """

    args: tuple[str, ...]
    returncode: int
    stdout: AnyStr
    stderr: AnyStr
    timed_out: bool
    duration: float
    pid: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out

    def check_returncode(self) -> None:
        """Raise :class:`CommandTimeout` or :class:`CommandFailed` unless :attr:`ok`."""
        if self.timed_out:
            raise CommandTimeout(
                f"command {describe(self.args)} timed out after {self.duration:.1f}s and was "
                "killed; raise timeout= or make the command faster",
                result=self,
                timeout=self.duration,
            )
        if self.returncode != 0:
            raise CommandFailed(
                f"command {describe(self.args)} exited with status {self.returncode}; "
                "see .stderr of this exception, or pass check=False to inspect the result",
                result=self,
            )


def decode(data: bytes, encoding: str | None, errors: str) -> Any:
    """Bytes as they are, or text with universal newlines as ``subprocess`` text mode gives."""
    if encoding is None:
        return data
    return data.decode(encoding, errors).replace("\r\n", "\n").replace("\r", "\n")
