"""Alternating rounds of several ways to do the same work, and the medians, spreads and
ratios that compare them: on a shared machine the rate swings with the neighbours' load, so
each round runs every way back to back (hybrid, peer, peer..., then hybrid, peer... again)
and the medians are compared, a ratio counting as met only when every round meets it."""

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


def schedule(rounds: int, ways: Sequence[str]) -> list[tuple[int, str]]:
    """(round, way) in the order they run: round 1 runs every way, then round 2 every way
    again, and so on (rounds count from 1)."""
    return [(number, way) for number in range(1, rounds + 1) for way in ways]


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the rounds' values."""
    return statistics.median(values), min(values), max(values)


def every_round(
    first: Sequence[float], second: Sequence[float], meets: Callable[[float, float], bool]
) -> bool | None:
    """Whether ``meets(first[i], second[i])`` holds for every round i (round i of one way
    against round i of the other); None when there are no rounds to compare or their
    counts differ (a round of one way did not run)."""
    if not first or len(first) != len(second):
        return None
    return all(meets(a, b) for a, b in zip(first, second, strict=True))


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
