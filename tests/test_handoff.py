"""Handoff, the bounded queue from the event loop to one worker thread
(kryten_sync/_core/handoff.py): the low-water-mark wake-up, shutdown and FIFO order.

No nats-server: each test runs its own loop with ``asyncio.run``; the worker side is a
real thread (``asyncio.to_thread`` or a plain one).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from kryten_sync._core.handoff import Handoff, HandoffClosed

WAIT = 5.0  # bound on every wait; the tests finish in milliseconds


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), WAIT))


async def spin_loop(times: int = 5) -> None:
    """Let the loop run a few iterations: enough for a scheduled wake-up to land."""
    for _ in range(times):
        await asyncio.sleep(0)


def count_space_wakeups(loop: asyncio.AbstractEventLoop, handoff: Handoff[Any]) -> list[int]:
    """Count the consumer's calls that wake a put waiting for space (a one-item list)."""
    original = loop.call_soon_threadsafe
    count = [0]

    def spy(callback: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        # Only the hand-off's own wake-up: to_thread also reports back through here.
        if callback == handoff._space.set:
            count[0] += 1
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = spy  # type: ignore[method-assign,assignment]
    return count


def test_blocked_put_is_woken_once_at_the_low_water_mark_not_per_freed_slot() -> None:
    maxsize = 10  # low-water mark: maxsize // 2 == 5 items left

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handoff: Handoff[int] = Handoff(maxsize, loop)
        wakeups = count_space_wakeups(loop, handoff)
        for i in range(maxsize):
            assert await handoff.put(i)
        put = asyncio.create_task(handoff.put(maxsize))
        await spin_loop()
        assert not put.done(), "put on a full hand-off did not wait"

        # 10 -> 6 items: four freed slots, and the put still sleeps.
        for expected in range(4):
            assert await asyncio.to_thread(handoff.get) == expected
            await spin_loop()
            assert not put.done(), f"put woke with {len(handoff)} items queued"
        assert wakeups[0] == 0

        # 6 -> 5 items reaches the mark: exactly one wake-up, and the put lands.
        assert await asyncio.to_thread(handoff.get) == 4
        assert await asyncio.wait_for(put, WAIT) is True
        assert wakeups[0] == 1
        assert [handoff.get() for _ in range(len(handoff))] == [5, 6, 7, 8, 9, 10]

    run(main)


def test_get_on_a_hand_off_nobody_waits_on_wakes_no_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        handoff: Handoff[int] = Handoff(4, loop)
        wakeups = count_space_wakeups(loop, handoff)
        for i in range(4):
            assert await handoff.put(i)
        assert [await asyncio.to_thread(handoff.get) for _ in range(4)] == [0, 1, 2, 3]
        assert wakeups[0] == 0

    run(main)


def test_put_nowait_refuses_when_full_and_after_shutdown() -> None:
    async def main() -> None:
        handoff: Handoff[int] = Handoff(2, asyncio.get_running_loop())
        assert handoff.put_nowait(1)
        assert handoff.put_nowait(2)
        assert not handoff.put_nowait(3)
        assert handoff.get() == 1
        handoff.shutdown()
        assert not handoff.put_nowait(4)
        assert handoff.get() == 2

    run(main)


def test_shutdown_wakes_a_put_waiting_for_space_which_returns_false() -> None:
    async def main() -> None:
        handoff: Handoff[str] = Handoff(2, asyncio.get_running_loop())
        assert await handoff.put("a")
        assert await handoff.put("b")
        put = asyncio.create_task(handoff.put("c"))
        await spin_loop()
        assert not put.done()
        await asyncio.to_thread(handoff.shutdown)  # from another thread, as a worker would
        assert await asyncio.wait_for(put, WAIT) is False
        assert await handoff.put("d") is False
        # The waiting item was not taken; what was queued before still is.
        assert [handoff.get(), handoff.get()] == ["a", "b"]
        with pytest.raises(HandoffClosed):
            handoff.get()

    run(main)


def test_shutdown_with_drop_discards_what_is_queued() -> None:
    async def main() -> None:
        handoff: Handoff[int] = Handoff(8, asyncio.get_running_loop())
        for i in range(3):
            assert await handoff.put(i)
        handoff.shutdown(drop=True)
        assert len(handoff) == 0
        with pytest.raises(HandoffClosed):
            handoff.get()

    run(main)


def test_shutdown_without_drop_lets_the_worker_take_the_rest_then_closed() -> None:
    async def main() -> None:
        handoff: Handoff[int] = Handoff(8, asyncio.get_running_loop())
        for i in range(3):
            assert await handoff.put(i)
        handoff.shutdown()
        assert [handoff.get() for _ in range(3)] == [0, 1, 2]
        with pytest.raises(HandoffClosed):
            handoff.get()
        with pytest.raises(HandoffClosed):  # and again: closed stays closed
            handoff.get()

    run(main)


def test_get_blocked_on_an_empty_hand_off_raises_handoff_closed_at_shutdown() -> None:
    async def main() -> None:
        handoff: Handoff[int] = Handoff(8, asyncio.get_running_loop())
        outcome: list[BaseException] = []
        waiting = threading.Event()

        def worker() -> None:
            waiting.set()
            try:
                handoff.get()
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        assert await asyncio.to_thread(waiting.wait, WAIT)
        handoff.shutdown()
        await asyncio.to_thread(thread.join, WAIT)
        assert not thread.is_alive(), "get() still blocked after shutdown"
        assert len(outcome) == 1
        assert isinstance(outcome[0], HandoffClosed)

    run(main)


def test_shutdown_after_the_loop_closed_does_not_raise() -> None:
    loop = asyncio.new_event_loop()
    handoff: Handoff[int] = Handoff(2, loop)
    loop.close()
    handoff.shutdown()  # e.g. a worker ending after the connection's loop is gone
    with pytest.raises(HandoffClosed):
        handoff.get()


def test_fifo_under_contention_every_item_arrives_in_each_producers_order() -> None:
    producers, per_producer, maxsize = 4, 500, 8  # small: producers block and interleave
    received: list[tuple[int, int]] = []

    def consume(handoff: Handoff[tuple[int, int]]) -> None:
        while True:
            try:
                received.append(handoff.get())
            except HandoffClosed:
                return

    async def produce(handoff: Handoff[tuple[int, int]], pid: int) -> None:
        for seq in range(per_producer):
            assert await handoff.put((pid, seq))
            if seq % 7 == pid:  # yield at different points so the producers interleave
                await asyncio.sleep(0)

    async def main() -> None:
        handoff: Handoff[tuple[int, int]] = Handoff(maxsize, asyncio.get_running_loop())
        consumer = threading.Thread(target=consume, args=(handoff,), daemon=True)
        consumer.start()
        await asyncio.gather(*(produce(handoff, pid) for pid in range(producers)))
        handoff.shutdown()
        await asyncio.to_thread(consumer.join, WAIT)
        assert not consumer.is_alive()

    run(main)
    assert len(received) == producers * per_producer
    for pid in range(producers):
        assert [seq for p, seq in received if p == pid] == list(range(per_producer))
    switches = sum(a[0] != b[0] for a, b in itertools.pairwise(received))
    assert switches > producers, "the producers never interleaved: no contention tested"
