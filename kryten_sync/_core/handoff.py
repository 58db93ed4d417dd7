"""A bounded hand-off from the event loop to one worker thread.

Once full, the loop side waits until the worker has taken the queue down to half
(a low-water mark) instead of waking for every freed slot. janus wakes the loop once
per item in that state. With the queue full (a handler falling behind: exactly when it
matters) this hand-off moved 2.8-6.6x as many items per second on a 2-core machine when
the consumer computes, 1.6x when it blocks per item like a handler doing I/O, and the
same as janus when the queue is not full (``python bench/handoff.py``; bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class HandoffClosed(Exception):
    """Raised by :meth:`Handoff.get` once the hand-off is shut down and empty."""


class Handoff(Generic[T]):
    """Loop thread puts, one worker thread gets; FIFO; at most ``maxsize`` items."""

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._maxsize = maxsize
        self._low = maxsize // 2
        self._loop = loop
        self._space = asyncio.Event()
        self._space.set()
        self._blocked = False  # the loop waits for space (guarded by _cond)
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> bool:
        """Add ``item``, waiting while full (loop thread). False once shut down."""
        while True:
            with self._cond:
                if self._closed:
                    return False
                if len(self._items) < self._maxsize:
                    self._items.append(item)
                    self._cond.notify()
                    return True
                self._blocked = True
                self._space.clear()
            await self._space.wait()

    def put_nowait(self, item: T) -> bool:
        """Add ``item`` if there is room; False when full or shut down."""
        with self._cond:
            if self._closed or len(self._items) >= self._maxsize:
                return False
            self._items.append(item)
            self._cond.notify()
            return True

    def get(self) -> T:
        """The next item (worker thread); blocks while empty, HandoffClosed at the end."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise HandoffClosed
                self._cond.wait()
            item = self._items.popleft()
            if self._blocked and len(self._items) <= self._low:
                self._blocked = False
                self._loop.call_soon_threadsafe(self._space.set)
            return item

    def shutdown(self, *, drop: bool = False) -> int:
        """No more puts; the worker gets what is left (nothing if ``drop``), then
        HandoffClosed; returns how many items were dropped. Callable from any thread."""
        with self._cond:
            self._closed = True
            dropped = 0
            if drop:
                dropped = len(self._items)
                self._items.clear()
            self._cond.notify_all()
        # Wake a put() waiting for space so it sees _closed.
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody waits
            self._loop.call_soon_threadsafe(self._space.set)
        return dropped
