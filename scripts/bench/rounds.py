"""Alternating rounds of two ways to do the same work, and the medians and ratios that
compare them: on a shared machine the rate swings with the neighbours' load, so each round
runs both ways back to back and the medians are compared."""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


async def alternate(
    repeat: int, first: Callable[[], Awaitable[T]], second: Callable[[], Awaitable[T]]
) -> tuple[list[T], list[T]]:
    """``repeat`` rounds of ``first`` then ``second``: the results of each, in order."""
    firsts: list[T] = []
    seconds: list[T] = []
    for _ in range(repeat):
        firsts.append(await first())
        seconds.append(await second())
    return firsts, seconds


@dataclass(frozen=True)
class Comparison:
    """The medians of two ways' (requests per second, CPU microseconds per request)."""

    first_rate: float
    second_rate: float
    first_cpu_us: float
    second_cpu_us: float

    @property
    def rate_ratio(self) -> float:
        """How many times the second way's throughput the first way has."""
        return self.first_rate / self.second_rate

    @property
    def cpu_ratio(self) -> float:
        """How many times the first way's CPU per request the second way spends."""
        return self.second_cpu_us / self.first_cpu_us


def compare(
    first: Sequence[tuple[float, float]], second: Sequence[tuple[float, float]]
) -> Comparison:
    """The medians of each way's (rate, CPU per request) rounds."""
    return Comparison(
        first_rate=statistics.median(rate for rate, _ in first),
        second_rate=statistics.median(rate for rate, _ in second),
        first_cpu_us=statistics.median(cpu for _, cpu in first),
        second_cpu_us=statistics.median(cpu for _, cpu in second),
    )
