"""Counters behind ``health()`` and the metrics.

Each counter has one writer thread (the loop, or one worker), so plain ``+=`` is safe
and the hot paths take no lock; readers only ever see a slightly old value.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from .subjects import normalize_token

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


#: Distinct event names counted one by one per channel; the rest count as OTHER_EVENTS.
MAX_EVENT_NAMES = 200
OTHER_EVENTS = "(other)"


@dataclass
class SourceStats:
    """One event channel or raw subscription."""

    received: int = 0  # written by its worker
    malformed: int = 0  # written by its worker
    dropped: int = 0  # written by the loop (slow consumer, or arrived while closing)
    by_event: dict[str, int] = field(default_factory=dict)  # written by its worker
    event_seconds: float = 0.0  # written by its worker: time spent on events (decode + handlers)
    last_event: float = 0.0  # written by its worker: time.time() of the last event
    # Durable events only, written by its worker: deliveries after the first, events
    # skipped after their last delivery failed, repeats dropped by correlation id.
    redelivered: int = 0
    skipped: int = 0
    duplicates: int = 0

    def count_event(self, name: str) -> None:
        """Count one event of ``name``; past MAX_EVENT_NAMES names, as OTHER_EVENTS (so
        whoever can publish on the channel cannot grow this without bound)."""
        counts = self.by_event
        count = counts.get(name)
        if count is None:
            if len(counts) >= MAX_EVENT_NAMES:
                name = OTHER_EVENTS
            count = counts.get(name, 0)
        counts[name] = count + 1


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


class ChannelStatus(str):
    """One configured channel with its delivery counters (immutable).

    It is also the string ``"domain/channel"``: kryten-py's ``health().channels`` holds
    such strings, so ``", ".join(health.channels)`` and ``"cytu.be/lounge" in
    health.channels`` work. Compared with another ChannelStatus every field counts; with a
    plain str only the text. ``ChannelInfo`` is the same class under kryten-py's name:
    ``subscribed``, ``events_received`` (= ``received``) and ``model_dump()`` are its
    fields and method. ``redelivered``, ``skipped`` and ``duplicates`` count only in
    durable mode.
    """

    domain: str
    channel: str
    token: str
    received: int
    malformed: int
    pending: int
    dropped: int
    subscribed: bool
    redelivered: int
    skipped: int
    duplicates: int
    _FIELDS = (
        "domain",
        "channel",
        "token",
        "received",
        "malformed",
        "pending",
        "dropped",
        "subscribed",
        "redelivered",
        "skipped",
        "duplicates",
    )

    def __new__(  # noqa: PLR0917 - the dataclass-like positional order of its fields
        cls,
        domain: str,
        channel: str,
        token: str | None = None,
        received: int = 0,
        malformed: int = 0,
        pending: int = 0,
        dropped: int = 0,
        subscribed: bool = False,
        redelivered: int = 0,
        skipped: int = 0,
        duplicates: int = 0,
        *,
        events_received: int | None = None,
    ) -> ChannelStatus:
        self = super().__new__(cls, f"{domain}/{channel}")
        values = (
            domain,
            channel,
            normalize_token(channel) if token is None else token,
            received if events_received is None else events_received,
            malformed,
            pending,
            dropped,
            subscribed,
            redelivered,
            skipped,
            duplicates,
        )
        for name, value in zip(cls._FIELDS, values, strict=True):
            object.__setattr__(self, name, value)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ChannelStatus is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ChannelStatus is immutable: cannot delete {name!r}")

    def as_tuple(self) -> tuple[object, ...]:
        """The fields, in order."""
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChannelStatus):
            return self.as_tuple() == other.as_tuple()
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"ChannelStatus({inner})"

    def __reduce__(self) -> tuple[type[ChannelStatus], tuple[object, ...]]:
        return (type(self), self.as_tuple())

    @property
    def events_received(self) -> int:
        """kryten-py's name of :attr:`received`."""
        return self.received

    def to_dict(self) -> dict[str, Any]:
        """Every field (and ``events_received``) as a JSON-ready dict."""
        return {
            **dict(zip(self._FIELDS, self.as_tuple(), strict=True)),
            "events_received": self.received,
        }

    def model_dump(self) -> dict[str, Any]:
        """kryten-py's ChannelInfo fields first (``domain``, ``channel``, ``subscribed``,
        ``events_received``), then kryten-sync's counters."""
        data = self.to_dict()
        first = ("domain", "channel", "subscribed", "events_received")
        return {**{key: data[key] for key in first}, **data}

    @classmethod
    def of(
        cls,
        domain: str,
        channel: str,
        token: str,
        source: _SourceLike | None,
        subscribed: bool = False,
    ) -> ChannelStatus:
        if source is None:
            return cls(domain, channel, token, subscribed=subscribed)
        stats = source.stats
        return cls(
            domain,
            channel,
            token,
            stats.received,
            stats.malformed,
            source.worker.pending,
            stats.dropped + source.worker.dropped,
            subscribed,
            stats.redelivered,
            stats.skipped,
            stats.duplicates,
        )


#: kryten-py's name for a configured channel's status (``client.channels``).
ChannelInfo = ChannelStatus


class _WorkerLike(Protocol):
    dropped: int

    @property
    def pending(self) -> int: ...


class _SourceLike(Protocol):
    stats: SourceStats

    @property
    def worker(self) -> _WorkerLike: ...


class _ConnectionLike(Protocol):
    connected_at: float
    reconnects: int
    last_gap_seconds: float

    @property
    def disconnected_seconds(self) -> float: ...

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
    lost: int
    commands_lost: int
    unconfirmed: int
    commands_unconfirmed: int

    @property
    def buffered(self) -> int: ...


@dataclass(frozen=True)
class HealthStatus:
    """A snapshot of one client: ``health()`` returns it, ``/health`` serves it.

    kryten-py's fields are all here (``avg_event_latency_ms``: mean time per received
    event, decoding and in-order handlers, since connecting; ``handlers_registered``: the
    ``on()`` registrations), and :meth:`model_dump` gives kryten-py's shape.
    """

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
    avg_event_latency_ms: float = 0.0
    last_event_time: datetime | None = None
    handlers_registered: int = 0
    # Accepted (the call returned) but never sent: buffered when the client closed
    # while disconnected or gave up reconnecting, or refused by nats-py. Never counted
    # in messages_published / commands_sent.
    messages_lost: int = 0
    commands_lost: int = 0
    # Written to a connection that dropped before the server confirmed them: may be lost.
    messages_unconfirmed: int = 0
    commands_unconfirmed: int = 0
    messages_buffered: int = 0  # accepted, waiting for the connection
    events_dropped: int = 0  # events the client discarded (handlers too slow, or closing)
    disconnected_seconds: float = 0.0  # time disconnected since connecting
    last_disconnect_seconds: float = 0.0  # the last outage that ended in a reconnect

    @property
    def errors(self) -> int:
        """Every error counted: handler exceptions, malformed events, failed publishes
        and accepted messages never sent."""
        return (
            self.handler_errors + self.malformed_events + self.publish_errors + self.messages_lost
        )

    @classmethod
    def disconnected(cls, channels: list[ChannelStatus], handlers_registered: int) -> HealthStatus:
        return cls(
            False,
            "disconnected",
            0.0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0.0,
            0.0,
            0,
            channels,
            handlers_registered=handlers_registered,
        )

    @classmethod
    def of(
        cls,
        conn: _ConnectionLike,
        channels: list[ChannelStatus],
        handlers: HandlerStats,
        sources: list[SourceStats],
        handlers_registered: int,
    ) -> HealthStatus:
        mean = handlers.total_seconds / handlers.calls if handlers.calls else 0.0
        # Two configured channels may share one subscription (same token): count it once.
        unique = {c.token: c for c in channels}.values()
        received = sum(s.received + s.malformed for s in sources)
        last = max((s.last_event for s in sources), default=0.0)
        publisher = conn.publisher
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
            avg_event_latency_ms=(
                sum(s.event_seconds for s in sources) / received * 1000 if received else 0.0
            ),
            last_event_time=datetime.fromtimestamp(last, UTC) if last else None,
            handlers_registered=handlers_registered,
            messages_lost=publisher.lost,
            commands_lost=publisher.commands_lost,
            messages_unconfirmed=publisher.unconfirmed,
            commands_unconfirmed=publisher.commands_unconfirmed,
            messages_buffered=publisher.buffered,
            events_dropped=sum(c.dropped for c in unique),
            disconnected_seconds=conn.disconnected_seconds,
            last_disconnect_seconds=conn.last_gap_seconds,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (as served on ``/health``): channels as dicts, times as ISO text."""
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["channels"] = [c.to_dict() for c in self.channels]
        last = self.last_event_time
        data["last_event_time"] = last.isoformat() if last is not None else None
        data["errors"] = self.errors
        return data

    def model_dump(self) -> dict[str, object]:
        """kryten-py's HealthStatus fields first (``channels`` as ``"domain/channel"``
        strings, ``last_event_time`` a datetime), then kryten-sync's."""
        first = {
            "connected": self.connected,
            "state": self.state,
            "uptime_seconds": self.uptime_seconds,
            "channels": [str.__str__(c) for c in self.channels],
            "events_received": self.events_received,
            "commands_sent": self.commands_sent,
            "errors": self.errors,
            "avg_event_latency_ms": self.avg_event_latency_ms,
            "last_event_time": self.last_event_time,
            "handlers_registered": self.handlers_registered,
        }
        rest = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in first}
        return {**first, **rest}
