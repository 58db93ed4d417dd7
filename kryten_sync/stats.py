"""Counters behind ``health()`` and the metrics.

Each counter has one writer thread (the loop, or one worker), so plain ``+=`` is safe
and the hot paths take no lock; readers only ever see a slightly old value.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Protocol

# Handler latency histogram bucket upper bounds, in seconds (Prometheus style).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class HandlerStats:
    """Handler calls of one worker thread: count, errors and a latency histogram."""

    calls: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        self.calls += 1
        self.total_seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def merge(self, other: HandlerStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.total_seconds += other.total_seconds
        self.max_seconds = max(self.max_seconds, other.max_seconds)
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


@dataclass
class SourceStats:
    """One event channel or raw subscription."""

    received: int = 0  # written by its worker
    malformed: int = 0  # written by its worker
    dropped: int = 0  # written by the loop (nats-py slow-consumer reports)
    by_event: dict[str, int] = field(default_factory=dict)  # written by its worker
    # Durable events only, written by its worker: deliveries after the first, events
    # skipped after their last delivery failed, repeats dropped by correlation id.
    redelivered: int = 0
    skipped: int = 0
    duplicates: int = 0


class RateLimitedLog:
    """A logger wrapper that emits each kind of warning at most once per interval,
    with the number suppressed in between."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self.logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def limited(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        self.logger.warning(msg, *args)


@dataclass(frozen=True)
class ChannelStatus:
    """One configured channel and its delivery counters (``redelivered``, ``skipped``
    and ``duplicates`` count only in durable mode)."""

    domain: str
    channel: str
    token: str
    received: int = 0
    malformed: int = 0
    pending: int = 0
    dropped: int = 0
    redelivered: int = 0
    skipped: int = 0
    duplicates: int = 0

    @classmethod
    def of(cls, domain: str, channel: str, token: str, source: _SourceLike | None) -> ChannelStatus:
        if source is None:
            return cls(domain, channel, token)
        stats = source.stats
        return cls(
            domain,
            channel,
            token,
            stats.received,
            stats.malformed,
            source.worker.pending,
            stats.dropped,
            stats.redelivered,
            stats.skipped,
            stats.duplicates,
        )


class _WorkerLike(Protocol):
    @property
    def pending(self) -> int: ...


class _SourceLike(Protocol):
    stats: SourceStats

    @property
    def worker(self) -> _WorkerLike: ...


class _ConnectionLike(Protocol):
    connected_at: float
    reconnects: int

    @property
    def state(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def publisher(self) -> _PublisherLike: ...


class _PublisherLike(Protocol):
    sent: int
    errors: int
    sent_by_tag: dict[str, int]


@dataclass(frozen=True)
class HealthStatus:
    """A snapshot of one client: ``health()`` returns it, ``/health`` serves it."""

    connected: bool
    state: str  # "connected", "reconnecting", "closed", "disconnected", "connecting"
    uptime_seconds: float
    events_received: int
    malformed_events: int
    messages_published: int
    commands_sent: int
    publish_errors: int
    handler_calls: int
    handler_errors: int
    handler_latency_mean_ms: float
    handler_latency_max_ms: float
    reconnects: int
    channels: list[ChannelStatus]

    @property
    def errors(self) -> int:
        """Every error counted: handler exceptions, malformed events, failed publishes."""
        return self.handler_errors + self.malformed_events + self.publish_errors

    @classmethod
    def disconnected(cls, channels: list[ChannelStatus]) -> HealthStatus:
        return cls(False, "disconnected", 0.0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, channels)

    @classmethod
    def of(
        cls, conn: _ConnectionLike, channels: list[ChannelStatus], handlers: HandlerStats
    ) -> HealthStatus:
        mean = handlers.total_seconds / handlers.calls if handlers.calls else 0.0
        # Two configured channels may share one subscription (same token): count it once.
        unique = {c.token: c for c in channels}.values()
        return cls(
            connected=conn.is_connected,
            state=conn.state,
            uptime_seconds=time.monotonic() - conn.connected_at if conn.connected_at else 0.0,
            events_received=sum(c.received for c in unique),
            malformed_events=sum(c.malformed for c in unique),
            messages_published=conn.publisher.sent,
            commands_sent=sum(conn.publisher.sent_by_tag.values()),
            publish_errors=conn.publisher.errors,
            handler_calls=handlers.calls,
            handler_errors=handlers.errors,
            handler_latency_mean_ms=mean * 1000,
            handler_latency_max_ms=handlers.max_seconds * 1000,
            reconnects=conn.reconnects,
            channels=channels,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (as served on ``/health``)."""
        data = asdict(self)
        data["errors"] = self.errors
        return data
