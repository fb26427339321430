"""hybrid.slots: the one fair line behind lanes, native connections and command slots.

Each test pins a property a plain ``asyncio.Semaphore``-like counter gets wrong: newcomers
overtaking waiters, a slot lost when its waiter is cancelled just after the hand-over, a
timed-out waiter left in line, one loop's state leaking into another's.
"""

from __future__ import annotations

import asyncio

import pytest

from hybrid.slots import PerLoop, Slots


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_waiters_are_served_first_come_first_served_and_newcomers_queue() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        order: list[int] = []

        async def wait(n: int) -> None:
            await slots.acquire()
            order.append(n)

        tasks = [asyncio.ensure_future(wait(n)) for n in range(3)]
        await asyncio.sleep(0)
        assert slots.waiting == 3 and slots.held == 1
        slots.release()  # handed to waiter 0, which has not run yet
        assert slots.held == 1
        assert not slots.try_acquire()  # the free moment belongs to the line, not to us
        for n in range(3):
            await asyncio.sleep(0)
            assert order == list(range(n + 1))
            slots.release()
        await asyncio.gather(*tasks)
        assert slots.held == 0 and slots.waiting == 0

    run(main())


def test_a_waiter_cancelled_after_the_handover_passes_the_slot_on() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire())
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # granted to ``first``...
        first.cancel()  # ...which gives up before it could run
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)  # the slot went on, not lost
        assert slots.held == 1 and slots.waiting == 0
        slots.release()
        assert slots.held == 0

    run(main())


def test_a_waiter_cancelled_before_its_turn_leaves_the_line() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        gone = asyncio.ensure_future(slots.acquire())
        stays = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert slots.waiting == 1
        slots.release()
        await asyncio.wait_for(stays, 1)
        assert slots.held == 1

    run(main())


def test_withdraw_after_a_grant_passes_the_slot_on() -> None:
    """The callback form (an executor's ``submit`` cannot await): a request that ends
    just after its place in line was granted must not keep the slot."""

    async def main() -> None:
        slots = Slots(1)
        assert slots.try_acquire()
        waiter = slots.enqueue()
        behind = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()
        assert waiter.done() and slots.held == 1
        slots.withdraw(waiter)
        await asyncio.wait_for(behind, 1)
        assert slots.held == 1 and slots.waiting == 0

    run(main())


def test_timeout_raises_and_keeps_nothing() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        with pytest.raises(TimeoutError):
            await slots.acquire(timeout=0.05)
        assert slots.waiting == 0 and slots.held == 1
        slots.release()
        await slots.acquire(timeout=0.05)  # free now: no wait
        assert slots.held == 1

    run(main())


def test_raising_the_limit_wakes_waiters_and_closing_fails_them() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        raised = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.limit = 2
        await asyncio.wait_for(raised, 1)
        failed = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.close(lambda: LookupError("gone"))
        with pytest.raises(LookupError, match="gone"):
            await failed
        with pytest.raises(LookupError):
            slots.try_acquire()
        slots.release()
        slots.release()
        assert slots.held == 0
        with pytest.raises(RuntimeError):
            slots.release()  # more releases than acquires is a bug, not a no-op
        with pytest.raises(ValueError):
            Slots(0)

    run(main())


def test_per_loop_values_are_made_in_each_loop_and_kept_apart() -> None:
    made: list[asyncio.AbstractEventLoop] = []

    def factory() -> list[int]:
        made.append(asyncio.get_running_loop())  # made on the loop, never at import
        return []

    registry: PerLoop[list[int]] = PerLoop(factory)
    assert registry.find() is None  # outside a loop: nothing, and nothing made

    async def use(n: int) -> list[int]:
        registry.get().append(n)
        return registry.get()

    assert run(use(1)) == [1]
    assert run(use(2)) == [2]  # a new loop starts empty
    assert len(made) == 2 and made[0] is not made[1]

    installed: PerLoop[str] = PerLoop()

    async def install() -> tuple[str | None, str | None]:
        with pytest.raises(LookupError):
            installed.get()
        installed.install("worker's")
        found = installed.find()
        return found, installed.pop()

    assert run(install()) == ("worker's", "worker's")
