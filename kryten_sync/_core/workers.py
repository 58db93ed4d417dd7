"""Running user code on worker threads.

Each event channel, raw subscription and key-value watch gets one :class:`Worker`: a
daemon thread fed from the loop through a bounded :class:`Handoff`, so one source's
items are handled in the order they arrived and a slow source stalls only itself.
Handlers registered with ``concurrent=True`` go to a small :class:`ConcurrentPool`
instead (no order). :func:`invoke` is how every piece of user code is called.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kryten_sync.stats import HandlerStats, RateLimitedLog

from .handoff import Handoff, HandoffClosed

T = TypeVar("T")
_STOP: Any = object()  # ends a pool thread
_worker_ids = itertools.count(1)

ErrorHook = Callable[[BaseException, Any], None]


def check_sync_callable(fn: object, what: str) -> None:
    """Refuse what cannot be called as a plain function on a worker thread."""
    if not callable(fn):
        raise TypeError(f"{what} must be callable, got {type(fn).__name__}")
    target = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target):
        raise TypeError(
            f"{what} {getattr(fn, '__qualname__', fn)!r} is an async function; kryten-sync "
            "runs handlers on worker threads, so write it as a plain `def` (blocking calls "
            "such as client.send_chat() are fine inside it)"
        )


def invoke(
    fn: Callable[[T], None],
    arg: T,
    *,
    stats: HandlerStats,
    log: RateLimitedLog,
    on_error: ErrorHook | None,
    slow_after: float,
) -> bool:
    """Call one handler: errors are logged with traceback, counted and passed to on_error.

    Returns whether the handler returned normally.
    """
    start = time.perf_counter()
    try:
        fn(arg)
    except BaseException as exc:
        stats.errors += 1
        log.logger.error(
            "handler %s raised %s",
            getattr(fn, "__qualname__", fn),
            type(exc).__name__,
            exc_info=exc,
        )
        if on_error is not None:
            try:
                on_error(exc, arg)
            except BaseException:
                log.logger.exception("on_error hook raised while handling %r", exc)
        return False
    else:
        return True
    finally:
        elapsed = time.perf_counter() - start
        stats.observe(elapsed)
        if elapsed > slow_after:
            log.limited(
                "slow-handler",
                "handler %s took %.1f s (handler_timeout is %.1f s)",
                getattr(fn, "__qualname__", fn),
                elapsed,
                slow_after,
            )


class Worker(Generic[T]):
    """A daemon thread that processes the items of one bounded hand-off, in order."""

    def __init__(self, name: str, process: Callable[[T], None], maxsize: int) -> None:
        # Construct on the loop thread: the hand-off wakes that loop.
        self.queue: Handoff[T] = Handoff(maxsize, asyncio.get_running_loop())
        self._process = process
        self.dropped = 0  # items discarded unprocessed at shutdown
        self.thread = threading.Thread(
            target=self._run, name=f"kryten-sync-{name}-{next(_worker_ids)}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        get = self.queue.get
        process = self._process
        while True:
            try:
                item = get()
            except HandoffClosed:
                return
            process(item)

    @property
    def pending(self) -> int:
        return len(self.queue)

    async def put(self, item: T) -> bool:
        """Hand one item over (loop thread), waiting while the queue is full.

        False when the worker is shutting down and the item was not taken.
        """
        return await self.queue.put(item)

    def put_nowait(self, item: T) -> bool:
        """Hand one item over without waiting (loop thread); False when full or closed."""
        return self.queue.put_nowait(item)

    async def finish(self, timeout: float, caller: threading.Thread | None) -> bool:
        """Let the worker process what is queued, then end it (loop thread).

        Past ``timeout`` the rest of the queue is dropped; returns whether it ended.
        ``caller`` is the thread that asked (not waited for: it may be this worker).
        """
        self.queue.shutdown()
        if self.thread is not caller:
            await _join_thread(self.thread, timeout)
            if self.thread.is_alive():
                self.abandon()  # stuck handler: drop the rest
        return not self.thread.is_alive()

    def abandon(self) -> None:
        """End without processing what is queued (counted in ``dropped``); any thread."""
        self.dropped += self.queue.shutdown(drop=True)


async def _join_thread(thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


class ConcurrentPool:
    """Daemon threads for ``concurrent=True`` handlers: bounded, no order, and never
    holding interpreter exit (unlike a ThreadPoolExecutor). Each thread owns its stats.

    Threads are started as calls need them (a call finding no idle thread starts one,
    up to ``size``) and stay until :meth:`close`, so a large ``size`` costs nothing until
    that many handlers really run at once.
    """

    def __init__(self, size: int, maxsize: int) -> None:
        self._size = size
        self._queue: queue.Queue[Callable[[HandlerStats], object]] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call
        self._waiting = 0  # calls submitted and not yet taken by a thread
        self._closed = False
        self.stats: list[HandlerStats] = []  # appended only, under the lock
        self.threads: list[threading.Thread] = []

    def _grow(self) -> None:
        """Start one more thread when the idle ones cannot take every waiting call (under
        the lock; both counts change there, so no call is left without a thread)."""
        if self._closed or len(self.threads) >= self._size or self._idle >= self._waiting:
            return
        stats = HandlerStats()
        thread = threading.Thread(
            target=self._loop,
            args=(stats,),
            name=f"kryten-sync-pool-{next(_worker_ids)}",
            daemon=True,
        )
        self.stats.append(stats)
        self.threads.append(thread)
        self._idle += 1  # counted before it runs: the next submit must not start another
        thread.start()

    def _loop(self, stats: HandlerStats) -> None:
        while True:
            job = self._queue.get()
            with self._lock:
                self._idle -= 1
                if job is not _STOP:
                    self._waiting -= 1
            if job is _STOP:
                return
            job(stats)
            with self._lock:
                self._idle += 1

    def submit(self, job: Callable[[HandlerStats], object]) -> None:
        """Queue one call; blocks the (worker) caller while the pool is saturated."""
        with self._lock:
            self._waiting += 1
            self._grow()
        self._queue.put(job)

    def close(self) -> None:
        """End the threads once the queued calls have run."""
        with self._lock:
            self._closed = True
            count = len(self.threads)
        for _ in range(count):
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:  # stuck handlers: the daemon threads are abandoned
                return


class Latch:
    """Waits until every pool job it wrapped has run; ``wait()`` says whether all of
    them returned True."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._ok = True

    def wrap(self, job: Callable[[HandlerStats], bool]) -> Callable[[HandlerStats], None]:
        with self._cond:
            self._open += 1

        def run(stats: HandlerStats) -> None:
            ok = False
            try:
                ok = job(stats)
            finally:
                with self._cond:
                    self._open -= 1
                    self._ok = self._ok and ok
                    self._cond.notify_all()

        return run

    def wait(self) -> bool:
        with self._cond:
            while self._open:
                self._cond.wait()
            return self._ok
