"""IOLoop lag while N commands run: target p99 < 10 ms with 200 in flight.

    python scripts/bench/process_lag.py --commands 200 --rounds 3 [--json]

Standalone: one asyncio loop, no HTTP server. ``scripts/bench/run`` runs it with
``--json`` next to its in-worker measurement (``/h/lag/probe`` of the benchmark project).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from hybrid.process import run_command, set_max_concurrent


async def one_round(n: int, duration: float) -> list[float]:
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(max(0.0, time.monotonic() - before - 0.005))

    probing = asyncio.ensure_future(probe())
    await asyncio.gather(*(run_command(["sleep", str(duration)], timeout=30) for _ in range(n)))
    stop.set()
    await probing
    return sorted(lags)


def quantile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object, all rounds")
    options = parser.parse_args()
    set_max_concurrent(options.commands)
    every: list[float] = []
    for n in range(options.rounds):
        lags = await one_round(options.commands, options.duration)
        every += lags
        if not options.json:
            print(
                f"round {n}: {options.commands} commands, loop lag"
                f" p50 {quantile(lags, 0.5):.1f} ms, p99 {quantile(lags, 0.99):.1f} ms,"
                f" max {lags[-1] * 1000:.1f} ms"
            )
    if options.json:
        every.sort()
        summary = {
            "commands": options.commands,
            "command": f"sleep {options.duration}",
            "rounds": options.rounds,
            "samples": len(every),
            "p50_ms": quantile(every, 0.5),
            "p99_ms": quantile(every, 0.99),
            "max_ms": every[-1] * 1000,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
