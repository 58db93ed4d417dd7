"""Routing bridge events to user handlers.

The :class:`Dispatcher` owns routing: it subscribes each configured channel (one worker
thread each, :mod:`.workers`), decodes each event once, matches handlers by name,
channel and domain, and runs them in order on the channel's worker, or on the concurrent
pool for ``concurrent=True`` handlers.

Where a channel's events come from is a :class:`ChannelFeed` the Dispatcher is given:
core NATS by default (:class:`CoreFeed`; a queue group when instances share the work),
or a durable JetStream consumer (:mod:`kryten_sync.durable`). A feed hands each message
to :meth:`Dispatcher.decode` and :meth:`Dispatcher.deliver`; routing stays here.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kryten_sync.config import KrytenConfig
from kryten_sync.errors import MalformedEventError
from kryten_sync.events import RawEvent, parse_envelope, to_typed_event
from kryten_sync.raw import LostMessage
from kryten_sync.stats import ChannelStatus, HandlerStats, HealthStatus
from kryten_sync.subjects import channel_events_wildcard, normalize_token

from .feature import Feature, Link, Source
from .workers import ConcurrentPool, ErrorHook, Latch

_MAX_CACHED = 256  # event names whose handler list is cached


@dataclass(frozen=True, slots=True)
class Handler:
    """One registration of ``client.on(...)``."""

    fn: Callable[[Any], None]
    event: str  # lowercased event name, or "*"
    channel: str | None  # normalised channel token
    domain: str | None  # normalised domain token
    concurrent: bool = False
    consumer: bool = False  # the library's own (events()/wait_for()): not a handler call


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
                # Cache only if no add()/remove() happened meanwhile (a stale list would
                # outlive the change), and only so many names: they come from the wire.
                if self._by_event is cache and len(cache) < _MAX_CACHED:
                    cache[event_lower] = found
        return found


class ChannelFeed(Feature):
    """Where the Dispatcher gets one channel's events. Its feature hooks are called by
    the Dispatcher (first in ``on_open``, before any :meth:`subscribe`)."""

    async def subscribe(
        self, link: Link, token: str, subject: str, dispatcher: Dispatcher
    ) -> Source:
        """Start feeding the events of ``subject`` (one channel, token ``token``) to
        ``dispatcher``; the source whose counters health reports (loop thread)."""
        raise NotImplementedError


class CoreFeed(ChannelFeed):
    """Core NATS: every event while connected; with ``queue``, each event goes to one
    member of that queue group (no order between members)."""

    def __init__(self, queue: str = "") -> None:
        self.queue = queue

    async def subscribe(
        self, link: Link, token: str, subject: str, dispatcher: Dispatcher
    ) -> Source:
        return await link.asubscribe(
            subject,
            f"events-{token}",
            dispatcher.process_event,
            _msg_data,
            queue=self.queue,
            confirm=False,  # connect() confirms once, after every feature
        )


class Dispatcher(Feature):
    """The event-dispatch feature: the handler registry, the ``on_error`` and ``on_lost``
    hooks and the disconnect/reconnect callbacks (per client), and each connection's channel
    subscriptions (through ``feed``, core NATS by default) and concurrent pool."""

    def __init__(self, config: KrytenConfig, feed: ChannelFeed | None = None) -> None:
        self.config = config
        self.feed = feed if feed is not None else CoreFeed(config.event_group or "")
        self.registry = HandlerRegistry()
        self.error_hook: ErrorHook | None = None
        self.lost_hook: Callable[[list[LostMessage]], None] | None = None
        self.disconnect_callbacks: tuple[Callable[[], None], ...] = ()
        self.reconnect_callbacks: tuple[Callable[[], None], ...] = ()
        # Per connection.
        self._link: Link | None = None
        self.channel_sources: dict[str, Source] = {}  # by channel token
        # Per channel worker (its only writer): calls of consumer handlers, never reported.
        self._consumer_stats: dict[str, HandlerStats] = {}
        self._pool: ConcurrentPool | None = None
        self._pool_lock = threading.Lock()

    # -- feature hooks (loop thread) ---------------------------------------------------

    async def on_open(self, link: Link) -> None:
        self._link = link
        await self.feed.on_open(link)
        sources: dict[str, Source] = {}
        for channel in self.config.channels:
            token = normalize_token(channel.channel)
            if token in sources:  # two configured names, one subject
                continue
            subject = channel_events_wildcard(channel.channel)
            sources[token] = await self.feed.subscribe(link, token, subject, self)
        self.channel_sources = sources
        self._consumer_stats = {source.name: HandlerStats() for source in sources.values()}

    def on_disconnect(self, link: Link) -> None:
        self.feed.on_disconnect(link)
        self._run_callbacks(link, self.disconnect_callbacks)

    def on_reconnect(self, link: Link) -> None:
        self.feed.on_reconnect(link)
        self._run_callbacks(link, self.reconnect_callbacks)

    async def before_close(self, link: Link, reason: str) -> None:
        await self.feed.before_close(link, reason)

    def after_close(self, link: Link) -> None:
        self.feed.after_close(link)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        # channel_sources stay until the next on_open: the final counters of a closed
        # connection (what was dropped at disconnect) are still read from them.
        self._consumer_stats = {}
        self._link = None

    @staticmethod
    def _run_callbacks(link: Link, callbacks: tuple[Callable[[], None], ...]) -> None:
        for callback in callbacks:
            if not link.run_job(callback):
                link.log.limited("control-full", "control queue full; a callback was skipped")

    # -- a channel's worker ------------------------------------------------------------

    def process_event(self, source: Source, data: bytes) -> None:
        """Decode one bridge event and run its handlers (on the channel's worker); timed
        for ``health().avg_event_latency_ms``."""
        if self._link is None:
            return  # closed: a late item is neither handled nor counted
        start = time.perf_counter()
        raw = self.decode(source, data)
        if raw is not None:
            self.deliver(source, raw)
        stats = source.stats
        stats.event_seconds += time.perf_counter() - start
        stats.last_event = time.time()

    def decode(self, source: Source, data: bytes) -> RawEvent | None:
        """The event in ``data``, counted; None (counted, logged) when malformed."""
        stats = source.stats
        try:
            raw = parse_envelope(data)
        except MalformedEventError as exc:
            stats.malformed += 1
            link = self._link
            if link is not None:
                link.log.limited(
                    "malformed", "dropped a malformed event on %s: %s", source.name, exc.reason
                )
            return None
        stats.received += 1
        stats.count_event(raw.event_name)
        return raw

    def deliver(self, source: Source, raw: RawEvent, *, wait: bool = False) -> bool:
        """Run the handlers matching ``raw``; whether none raised. ``concurrent=True``
        handlers run on the pool; ``wait`` waits for them too (and counts them)."""
        link = self._link
        if link is None:
            return True
        handlers = self.registry.for_event(raw.event_name.lower())
        if not handlers:
            return True
        event = to_typed_event(raw)
        channel = domain = None
        latch = Latch() if wait else None
        ok = True
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
                job = functools.partial(link.invoke, handler.fn, event)
                self._concurrent_pool().submit(job if latch is None else latch.wrap(job))
            elif handler.consumer:
                uncounted = self._consumer_stats.get(source.name) or HandlerStats()
                ok = link.invoke(handler.fn, event, uncounted) and ok
            else:
                ok = link.invoke(handler.fn, event, source.handler_stats) and ok
        return ok if latch is None else latch.wait() and ok

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
        link = self._link
        subscribed = link is not None and link.is_connected
        result = []
        for cfg in self.config.channels:
            token = normalize_token(cfg.channel)
            source = sources.get(token)
            result.append(
                ChannelStatus.of(
                    cfg.domain, cfg.channel, token, source, subscribed and source is not None
                )
            )
        return result

    def handlers_registered(self) -> int:
        """How many ``on()`` registrations there are (event streams not counted)."""
        return sum(not h.consumer for h in self.registry.handlers)

    def health(self, link: Link | None) -> HealthStatus:
        """A snapshot of the connection state and the counters."""
        channels = self.channel_statuses()
        registered = self.handlers_registered()
        if link is None:
            return HealthStatus.disconnected(channels, registered)
        sources = [source.stats for source in list(self.channel_sources.values())]
        return HealthStatus.of(link, channels, self.handler_stats(link), sources, registered)


def _msg_data(msg: Any) -> bytes:
    data: bytes = msg.data
    return data
