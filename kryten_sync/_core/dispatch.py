"""Routing bridge events to user handlers, and running user code on worker threads.

The :class:`Dispatcher` owns routing: it subscribes each configured channel, decodes
each event once, matches handlers by name, channel and domain, and runs them. Each event
channel and each raw subscription gets one :class:`Worker`: a daemon thread fed from the
loop through a bounded :class:`Handoff`, so one source's events are handled in the order
they arrived and a slow source stalls only itself. Handlers registered with
``concurrent=True`` are handed on to a small :class:`ConcurrentPool` instead (no order).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kryten_sync.config import KrytenConfig
from kryten_sync.errors import MalformedEventError
from kryten_sync.events import parse_envelope, to_typed_event
from kryten_sync.stats import ChannelStatus, HandlerStats, HealthStatus, RateLimitedLog
from kryten_sync.subjects import channel_events_wildcard, normalize_token

from .feature import Feature, Link, Source
from .handoff import Handoff, HandoffClosed

T = TypeVar("T")
_STOP: Any = object()  # ends a pool thread
_worker_ids = itertools.count(1)

ErrorHook = Callable[[BaseException, Any], None]


@dataclass(frozen=True, slots=True)
class Handler:
    """One registration of ``client.on(...)``."""

    fn: Callable[[Any], None]
    event: str  # lowercased event name, or "*"
    channel: str | None  # normalised channel token
    domain: str | None  # normalised domain token
    concurrent: bool = False


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


class HandlerRegistry:
    """The registered handlers, looked up per event name (copy-on-write, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: tuple[Handler, ...] = ()
        self._by_event: dict[str, tuple[Handler, ...]] = {}

    def add(self, handler: Handler) -> None:
        with self._lock:
            self._handlers = (*self._handlers, handler)
            self._by_event = {}

    def remove(self, handler: Handler) -> None:
        with self._lock:
            self._handlers = tuple(h for h in self._handlers if h is not handler)
            self._by_event = {}

    @property
    def handlers(self) -> tuple[Handler, ...]:
        return self._handlers

    def for_event(self, event_lower: str) -> tuple[Handler, ...]:
        """Handlers for one event name (and ``"*"``), in registration order."""
        cache = self._by_event  # read before _handlers: see the check below
        found = cache.get(event_lower)
        if found is None:
            found = tuple(h for h in self._handlers if h.event in ("*", event_lower))
            with self._lock:
                # Cache only if no add()/remove() happened meanwhile; otherwise a stale
                # list would outlive the change.
                if self._by_event is cache:
                    cache[event_lower] = found
        return found


def invoke(
    fn: Callable[[T], None],
    arg: T,
    *,
    stats: HandlerStats,
    log: RateLimitedLog,
    on_error: ErrorHook | None,
    slow_after: float,
) -> None:
    """Call one handler: errors are logged with traceback, counted and passed to on_error."""
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
                self.queue.shutdown(drop=True)  # stuck handler: drop the rest
        return not self.thread.is_alive()


async def _join_thread(thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


class ConcurrentPool:
    """Daemon threads for ``concurrent=True`` handlers: bounded, no order, and never
    holding interpreter exit (unlike a ThreadPoolExecutor). Each thread owns its stats."""

    def __init__(self, size: int, maxsize: int) -> None:
        self._queue: queue.Queue[Callable[[HandlerStats], None]] = queue.Queue(maxsize)
        self.stats = [HandlerStats() for _ in range(size)]
        self.threads = [
            threading.Thread(
                target=self._loop,
                args=(stats,),
                name=f"kryten-sync-pool-{next(_worker_ids)}",
                daemon=True,
            )
            for stats in self.stats
        ]
        for thread in self.threads:
            thread.start()

    def _loop(self, stats: HandlerStats) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            job(stats)

    def submit(self, job: Callable[[HandlerStats], None]) -> None:
        """Queue one call; blocks the (worker) caller while the pool is saturated."""
        self._queue.put(job)

    def close(self) -> None:
        """End the threads once the queued calls have run."""
        for _ in self.threads:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:  # stuck handlers: the daemon threads are abandoned
                return


class Dispatcher(Feature):
    """The event-dispatch feature: the handler registry, the ``on_error`` hook and the
    disconnect/reconnect callbacks (per client), and each connection's channel
    subscriptions and concurrent pool."""

    def __init__(self, config: KrytenConfig) -> None:
        self.config = config
        self.registry = HandlerRegistry()
        self.error_hook: ErrorHook | None = None
        self.disconnect_callbacks: tuple[Callable[[], None], ...] = ()
        self.reconnect_callbacks: tuple[Callable[[], None], ...] = ()
        # Per connection.
        self._link: Link | None = None
        self.channel_sources: dict[str, Source] = {}  # by channel token
        self._pool: ConcurrentPool | None = None
        self._pool_lock = threading.Lock()

    # -- feature hooks (loop thread) ---------------------------------------------------

    async def on_open(self, link: Link) -> None:
        self._link = link
        sources: dict[str, Source] = {}
        for channel in self.config.channels:
            token = normalize_token(channel.channel)
            if token in sources:  # two configured names, one subject
                continue
            sources[token] = await link.asubscribe(
                channel_events_wildcard(channel.channel),
                f"events-{token}",
                self._process_event,
                _msg_data,
                confirm=False,  # connect() confirms once, after every feature
            )
        self.channel_sources = sources

    def on_disconnect(self, link: Link) -> None:
        self._run_callbacks(link, self.disconnect_callbacks)

    def on_reconnect(self, link: Link) -> None:
        self._run_callbacks(link, self.reconnect_callbacks)

    def after_close(self, link: Link) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        self.channel_sources = {}
        self._link = None

    @staticmethod
    def _run_callbacks(link: Link, callbacks: tuple[Callable[[], None], ...]) -> None:
        for callback in callbacks:
            if not link.run_job(callback):
                link.log.limited("control-full", "control queue full; a callback was skipped")

    # -- a channel's worker ------------------------------------------------------------

    def _process_event(self, source: Source, data: bytes) -> None:
        """Decode one bridge event and run its handlers (on the channel's worker)."""
        link = self._link
        if link is None:
            return
        stats = source.stats
        try:
            raw = parse_envelope(data)
        except MalformedEventError as exc:
            stats.malformed += 1
            link.log.limited(
                "malformed", "dropped a malformed event on %s: %s", source.name, exc.reason
            )
            return
        stats.received += 1
        name = raw.event_name.lower()
        stats.by_event[raw.event_name] = stats.by_event.get(raw.event_name, 0) + 1
        handlers = self.registry.for_event(name)
        if not handlers:
            return
        event = to_typed_event(raw)
        channel = domain = None
        for handler in handlers:
            if handler.channel is not None:
                channel = channel if channel is not None else normalize_token(raw.channel)
                if handler.channel != channel:
                    continue
            if handler.domain is not None:
                domain = domain if domain is not None else normalize_token(raw.domain)
                if handler.domain != domain:
                    continue
            if handler.concurrent:
                self._concurrent_pool().submit(functools.partial(link.invoke, handler.fn, event))
            else:
                link.invoke(handler.fn, event, source.handler_stats)

    def _concurrent_pool(self) -> ConcurrentPool:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ConcurrentPool(
                        self.config.max_concurrent_handlers, self.config.handler_queue_size
                    )
                pool = self._pool
        return pool

    # -- counters (any thread) -----------------------------------------------------------

    def handler_stats(self, link: Link | None) -> HandlerStats:
        """Handler counters of every worker of ``link`` and of the concurrent pool."""
        total = link.handler_stats() if link is not None else HandlerStats()
        pool = self._pool
        for stats in pool.stats if pool is not None else []:
            total.merge(stats)
        return total

    def channel_statuses(self) -> list[ChannelStatus]:
        """The configured channels with their delivery counters."""
        sources = self.channel_sources
        result = []
        for cfg in self.config.channels:
            token = normalize_token(cfg.channel)
            result.append(ChannelStatus.of(cfg.domain, cfg.channel, token, sources.get(token)))
        return result

    def health(self, link: Link | None) -> HealthStatus:
        """A snapshot of the connection state and the counters."""
        channels = self.channel_statuses()
        if link is None:
            return HealthStatus.disconnected(channels)
        return HealthStatus.of(link, channels, self.handler_stats(link))


def _msg_data(msg: Any) -> bytes:
    data: bytes = msg.data
    return data
