"""LoopThread, the loop on its own thread and the blocking bridge into it
(kryten_sync/_core/loop.py): cancellation, refusals, stop and a loop that died.

No nats-server: plain coroutines run on a real LoopThread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from kryten_sync._core import loop as loop_module
from kryten_sync._core.loop import LoopThread
from kryten_sync.errors import (
    ClientClosedError,
    ForkedProcessError,
    KrytenTimeoutError,
    LoopDiedError,
    NotConnectedError,
    WrongThreadError,
)

WAIT = 5.0  # bound on every wait; the tests finish in milliseconds
PROMPT = 0.5  # "promptly": well under the call timeouts used below


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    thread = LoopThread()
    thread.start()
    yield thread
    thread.stop(WAIT)
    assert not thread.thread.is_alive()


class Sleeper:
    """A coroutine that sleeps until cancelled, and reports that it started and that it
    saw CancelledError."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def run(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def call_in_thread(
    lt: LoopThread, coro: Coroutine[Any, Any, Any], timeout: float
) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``lt.call(coro, timeout)`` on a helper thread; its errors land in the list."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            lt.call(coro, timeout, "test call")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def on_loop(lt: LoopThread, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the loop thread and return (or raise) what it did."""
    box: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            box.set_result(fn())
        except BaseException as exc:
            box.set_exception(exc)

    lt.call_soon(run)
    return box.result(WAIT)


def test_call_returns_the_result_and_raises_the_coroutines_own_error(lt: LoopThread) -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise ValueError("from the coroutine")

    assert lt.call(answer(), WAIT, "answer") == 42
    with pytest.raises(ValueError, match="from the coroutine"):
        lt.call(fail(), WAIT, "fail")


def test_call_timeout_cancels_the_coroutine(lt: LoopThread) -> None:
    sleeper = Sleeper()
    started = time.monotonic()
    with pytest.raises(KrytenTimeoutError, match=r"sleeper timed out after 0\.05 s"):
        lt.call(sleeper.run(), 0.05, "sleeper")
    assert time.monotonic() - started < PROMPT
    assert sleeper.started.is_set()
    assert sleeper.cancelled.wait(WAIT), "the coroutine was left running after the timeout"

    async def running_tasks() -> int:
        me = asyncio.current_task()
        return sum(1 for t in asyncio.all_tasks() if t is not me and not t.done())

    assert lt.call(running_tasks(), WAIT, "count tasks") == 0


def test_interrupted_wait_cancels_the_coroutine(
    lt: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C in the calling thread surfaces as KeyboardInterrupt out of the wait.
    sleeper = Sleeper()
    caller = threading.current_thread()
    real_wait = concurrent.futures.wait

    def interrupted_wait(fs: Any, timeout: float | None = None, **kw: Any) -> Any:
        if threading.current_thread() is caller:
            assert sleeper.started.wait(WAIT)
            raise KeyboardInterrupt
        return real_wait(fs, timeout, **kw)

    monkeypatch.setattr(concurrent.futures, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        lt.call(sleeper.run(), WAIT, "sleeper")
    monkeypatch.undo()
    assert sleeper.cancelled.wait(WAIT), "the coroutine was left running after Ctrl-C"


def test_blocking_call_on_the_loop_thread_is_refused_and_the_coroutine_closed(
    lt: LoopThread,
) -> None:
    async def never_awaited() -> None:
        raise AssertionError("must not run")

    coro = never_awaited()
    with pytest.raises(WrongThreadError, match="own event-loop thread"):
        on_loop(lt, lambda: lt.call(coro, WAIT, "from the loop"))
    # Closed, so no "coroutine was never awaited" warning later.
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert lt.alive


def test_call_after_stop_raises_not_connected_promptly(lt: LoopThread) -> None:
    lt.stop(WAIT)
    sleeper = Sleeper()
    coro = sleeper.run()
    started = time.monotonic()
    with pytest.raises(NotConnectedError, match="not running"):
        lt.call(coro, 10.0, "after stop")
    assert time.monotonic() - started < PROMPT
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_call_on_a_closing_loop_raises_client_closed(lt: LoopThread) -> None:
    lt.closing = True
    coro = Sleeper().run()
    with pytest.raises(ClientClosedError, match="closed"):
        lt.call(coro, 10.0, "while closing")
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_stop_while_a_call_waits_wakes_it_with_client_closed(lt: LoopThread) -> None:
    sleeper = Sleeper()
    thread, errors = call_in_thread(lt, sleeper.run(), 10.0)
    assert sleeper.started.wait(WAIT)
    started = time.monotonic()
    lt.stop(WAIT)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert time.monotonic() - started < PROMPT
    assert len(errors) == 1
    assert isinstance(errors[0], ClientClosedError), errors
    assert "closed while waiting" in str(errors[0])
    assert sleeper.cancelled.is_set()


def kill(lt: LoopThread, cause: BaseException) -> None:
    """End the loop the way an escaped SystemExit/KeyboardInterrupt does."""

    def raise_it() -> None:
        raise cause

    lt.call_soon(raise_it)
    lt.thread.join(WAIT)
    assert not lt.thread.is_alive()


def test_call_waiting_when_the_loop_dies_raises_loop_died_with_the_cause(
    lt: LoopThread,
) -> None:
    sleeper = Sleeper()
    thread, errors = call_in_thread(lt, sleeper.run(), 10.0)
    assert sleeper.started.wait(WAIT)
    cause = SystemExit("raised by a callback")
    started = time.monotonic()
    kill(lt, cause)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert time.monotonic() - started < PROMPT
    assert len(errors) == 1
    assert isinstance(errors[0], LoopDiedError), errors
    assert errors[0].__cause__ is cause
    assert lt.death is cause
    assert not lt.alive


def test_call_after_the_loop_died_raises_loop_died_with_the_cause(lt: LoopThread) -> None:
    cause = KeyboardInterrupt()
    kill(lt, cause)
    coro = Sleeper().run()
    with pytest.raises(LoopDiedError, match="event-loop thread died") as caught:
        lt.call(coro, 10.0, "after death")
    assert caught.value.__cause__ is cause
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    with pytest.raises(LoopDiedError):
        lt.check_usable()  # the cheap guard on every publish sees it too


def test_use_after_fork_raises_forked_process_error(
    lt: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the at-fork hook does in a child process.
    monkeypatch.setattr(loop_module, "_fork_generation", loop_module._fork_generation + 1)
    coro = Sleeper().run()
    with pytest.raises(ForkedProcessError):
        lt.call(coro, WAIT, "after fork")
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
