"""The event-loop thread and the blocking bridge into it.

One :class:`LoopThread` per connection owns an asyncio loop on a daemon thread. Other
threads reach it through :meth:`LoopThread.call` (blocking, with a finite timeout that
cancels the coroutine) or :meth:`LoopThread.call_soon` (fire and forget).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kryten_sync.errors import (
    ClientClosedError,
    ForkedProcessError,
    KrytenTimeoutError,
    LoopDiedError,
    NotConnectedError,
    WrongThreadError,
)

T = TypeVar("T")

# Short waits so Ctrl-C is seen promptly everywhere (Windows < 3.14 ignores it in a
# blocked Future.result()) and a dead loop thread is noticed instead of waited on.
_SLICE = 0.2
_names = itertools.count(1)

# Bumped in a forked child: every LoopThread remembers the value it was started with.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class LoopThread:
    """An asyncio loop running on its own daemon thread, named ``kryten-sync-loop-N``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"kryten-sync-loop-{next(_names)}", daemon=True
        )
        self._ready = threading.Event()
        self._fork_gen = _fork_generation
        self.death: BaseException | None = None
        self.closing = False
        self._inflight: set[concurrent.futures.Future[Any]] = set()

    # -- thread ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        except BaseException as exc:
            # SystemExit/KeyboardInterrupt raised by a callback end run_forever(); keep
            # the cause so callers get an error instead of waiting on a dead loop.
            self.death = exc
            self.cancel_inflight()
        finally:
            self._finish()

    def _finish(self) -> None:
        loop = self.loop
        try:
            # Cancelled nats-py tasks may start new ones (reconnect, reader): repeat
            # until none is left, within a bound.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(
                    asyncio.wait(tasks, timeout=max(0.01, deadline - time.monotonic()))
                )
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException:  # best effort: the loop is going away
            pass
        finally:
            loop.close()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.death is None

    def in_loop_thread(self) -> bool:
        # Compare Thread objects, not idents: a dead loop thread's ident can be reused.
        return threading.current_thread() is self._thread

    def stop(self, timeout: float) -> None:
        """Stop the loop and join its thread (unless called from it)."""
        if self._thread.is_alive() and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in between
                self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout)

    # -- guards ----------------------------------------------------------------

    def check_usable(self) -> None:
        """Raise if the loop can take no more work: forked, dead or closing (cheap: it
        runs on every publish)."""
        if self._fork_gen != _fork_generation:
            raise ForkedProcessError(
                "this client was connected in the parent process and cannot be used "
                "after fork(); create a new KrytenClient in the child"
            )
        if self.death is not None:
            raise LoopDiedError(
                f"the client's event-loop thread died: {self.death!r}"
            ) from self.death
        if self.closing:
            raise ClientClosedError("the client is closed")

    def check(self) -> None:
        """Raise the matching error if a blocking call cannot be made now."""
        self.check_usable()
        if not self._thread.is_alive():
            raise NotConnectedError("the client's event-loop thread is not running")
        if self.in_loop_thread():
            raise WrongThreadError(
                "blocking kryten-sync call made on the client's own event-loop thread; "
                "it would deadlock"
            )

    # -- bridge -----------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        """Run ``coro`` on the loop and wait for its result, at most ``timeout`` seconds.

        If the wait ends early for any reason (timeout, Ctrl-C, ...) the coroutine is
        cancelled before raising.
        """
        try:
            self.check()
        except BaseException:
            coro.close()
            raise
        deadline = time.monotonic() + timeout
        fut: concurrent.futures.Future[T] | None = None
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._inflight.add(fut)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KrytenTimeoutError(f"{what} timed out after {timeout:g} s")
                done, _ = concurrent.futures.wait([fut], timeout=min(_SLICE, remaining))
                if done:
                    break
                if self.death is not None or not self._thread.is_alive():
                    self.check()
            if fut.cancelled():
                self._raise_cancelled(what)
            return fut.result()
        finally:
            # Whatever ends the wait early (timeout, Ctrl-C, SystemExit from a signal
            # handler, a dead loop) must not leave the coroutine running.
            if fut is not None:
                if not fut.done():
                    fut.cancel()
                self._inflight.discard(fut)

    def _raise_cancelled(self, what: str) -> None:
        if self.death is not None:
            raise LoopDiedError(
                f"{what}: the client's event-loop thread died: {self.death!r}"
            ) from self.death
        raise ClientClosedError(f"{what}: the client was closed while waiting")

    def cancel_inflight(self) -> None:
        """Wake every thread blocked in :meth:`call` (their calls raise ClientClosedError)."""
        for fut in list(self._inflight):
            fut.cancel()

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Schedule ``fn(*args)`` on the loop from any thread (no waiting)."""
        self.loop.call_soon_threadsafe(fn, *args)
