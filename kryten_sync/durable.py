"""Durable events: a JetStream stream over the bridge's events, consumed through one
durable consumer per channel and group (``events.durable``; docs/production.md).

:class:`DurableFeed` is the Dispatcher's :class:`~kryten_sync._core.dispatch.ChannelFeed`
in durable mode. At connect it binds the stream ``events.stream`` over
``kryten.events.cytube.>``, or creates it with the configured retention bounds, and
raises :class:`~kryten_sync.errors.StreamConfigError` when what the server has conflicts
with the settings. Each channel then gets the push consumer ``{group}@{token}``, which
delivers to ``kryten.durable.{group}.{token}``; every instance of the group subscribes
there in the queue group ``{group}``, so the instances share one consumer.

Order: the consumer lets one event at a time be unacknowledged (``max_ack_pending=1``),
so a channel's events are handled in stream order, each after the previous one finished,
whichever instance handles them. An event is acknowledged once its handlers ran (its
ack deadline is extended while they run); when one raises, the event comes again after
0.1 s, then 0.2 s, ... (at most 5 s) until ``max_deliver`` deliveries, then it is logged,
counted and terminated, and the channel's later events flow. Delivery is at least once:
an event whose acknowledgement was lost comes again, and repeats of the last
``recent_ids`` events handled by this instance are dropped by ``correlation_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors
import nats.js.errors as jse
from nats.js import api

from ._core.dispatch import ChannelFeed, Dispatcher
from ._core.feature import Link, Source
from .errors import KrytenConnectionError, KrytenError, StreamConfigError
from .subjects import EVENTS_PREFIX, channel_events_wildcard

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from .config import EventsConfig, KrytenConfig

T = TypeVar("T")

#: What the events stream must capture.
EVENTS_SUBJECTS = f"{EVENTS_PREFIX}.>"
_STREAM_IN_USE = 10058  # JetStream: the stream name exists with another configuration
_SUBJECTS_OVERLAP = 10065  # JetStream: another stream already captures the subjects
_FIRST_RETRY = 0.1  # seconds before the second delivery of a failed event, then doubling
_LAST_RETRY = 5.0
_BOUNDS = ("max_age", "max_bytes", "max_msgs", "replicas")


class _Outcome(enum.Enum):
    ACK = "ack"  # handled (or a repeat)
    NAK = "nak"  # a handler raised: deliver again after a delay
    TERM = "term"  # never deliver again: malformed, or failed on its last delivery


class RecentIds:
    """The last ``size`` ids added, to drop repeats with bounded memory (one thread)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._order)

    def add(self, item: str) -> None:
        if self.size == 0 or item in self._ids:
            return
        self._ids.add(item)
        self._order.append(item)
        if len(self._order) > self.size:
            self._ids.discard(self._order.popleft())


def covers(pattern: str, subject: str) -> bool:
    """Whether every subject matching ``subject`` (wildcards allowed) matches ``pattern``."""
    have, want = pattern.split("."), subject.split(".")
    for index, part in enumerate(have):
        if part == ">":
            return len(want) > index
        if index >= len(want) or (part == "*" and want[index] == ">"):
            return False
        if part not in ("*", want[index]):
            return False
    return len(have) == len(want)


def _seconds(value: float | None) -> str:
    return "unlimited" if not value else f"{value:g} s"


async def _guarded(coro: Coroutine[Any, Any, T], what: str) -> T:
    """``coro``, with JetStream's errors turned into kryten-sync errors naming ``what``."""
    try:
        return await coro
    except (KrytenError, asyncio.CancelledError):
        raise
    except (nats.errors.NoRespondersError, jse.ServiceUnavailableError) as exc:
        raise KrytenConnectionError(
            f"{what}: JetStream is not available on the NATS server (events.durable needs "
            "a server started with JetStream enabled)"
        ) from exc
    except jse.APIError as exc:
        detail = exc.description or type(exc).__name__
        raise KrytenConnectionError(f"{what}: {detail} (JetStream error {exc.err_code})") from exc


async def ensure_stream(js: JetStreamContext, settings: EventsConfig, filters: list[str]) -> None:
    """Bind the events stream, or create it with the configured bounds; StreamConfigError
    when it exists but cannot feed ``filters`` or differs from a bound set explicitly."""
    name = settings.stream
    try:
        info = await js.stream_info(name)
    except jse.NotFoundError:
        config = api.StreamConfig(
            name=name,
            description="Bridge events kept for kryten-sync durable consumers",
            subjects=[EVENTS_SUBJECTS],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=settings.max_age,
            max_bytes=settings.max_bytes,
            max_msgs=settings.max_msgs,
            num_replicas=settings.replicas,
        )
        try:
            await js.add_stream(config)
            return
        except jse.BadRequestError as exc:
            if exc.err_code == _SUBJECTS_OVERLAP:
                owner = await js.find_stream_name_by_subject(EVENTS_SUBJECTS)
                raise StreamConfigError(
                    f"cannot create the events stream {name!r}: stream {owner!r} already "
                    f"captures {EVENTS_SUBJECTS}; set events.stream to {owner!r} to use it"
                ) from exc
            if exc.err_code != _STREAM_IN_USE:
                raise
        info = await js.stream_info(name)  # another instance created it meanwhile
    _check_stream(info.config, settings, filters)


def _check_stream(config: api.StreamConfig, settings: EventsConfig, filters: list[str]) -> None:
    name = settings.stream
    problems: list[str] = []
    if config.retention == api.RetentionPolicy.WORK_QUEUE:
        problems.append("it is a work queue (acknowledged events are deleted for every reader)")
    subjects = config.subjects or []
    missing = [f for f in filters if not any(covers(s, f) for s in subjects)]
    if missing:
        problems.append(f"its subjects {subjects} do not capture {', '.join(missing)}")
    have = {
        "max_age": config.max_age or None,
        "max_bytes": config.max_bytes if config.max_bytes and config.max_bytes > 0 else None,
        "max_msgs": config.max_msgs if config.max_msgs and config.max_msgs > 0 else None,
        "replicas": config.num_replicas or 1,
    }
    for key in sorted(settings.model_fields_set & set(_BOUNDS)):
        want, got = getattr(settings, key), have[key]
        same = got is not None and math.isclose(got, want) if key == "max_age" else got == want
        if not same:
            shown = _seconds(got) if key == "max_age" else ("unlimited" if got is None else got)
            wanted = _seconds(want) if key == "max_age" else want
            problems.append(f"its {key} is {shown}, events.{key} is {wanted}")
    if problems:
        raise StreamConfigError(
            f"the events stream {name!r} exists but {'; '.join(problems)}: change the "
            "events settings to match it, or name another stream in events.stream"
        )


def consumer_config(
    settings: EventsConfig, group: str, token: str, subject: str
) -> api.ConsumerConfig:
    """The durable push consumer of one channel (``subject``: its events, ``token``:
    its subject token) for the instances of ``group``."""
    name = f"{group}@{token}"
    return api.ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"kryten-sync: events of {token} for the instances of {group}",
        deliver_subject=f"kryten.durable.{group}.{token}",
        deliver_group=group,
        filter_subject=subject,
        deliver_policy=api.DeliverPolicy.NEW,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=settings.max_deliver,
        max_ack_pending=1,
    )


_FIXED = ("filter_subject", "deliver_subject", "deliver_group", "ack_policy", "max_ack_pending")


async def ensure_consumer(js: JetStreamContext, stream: str, want: api.ConsumerConfig) -> None:
    """Create the consumer, or bind it (updating ``ack_wait``/``max_deliver``);
    StreamConfigError when a consumer of that name serves something else."""
    name = want.durable_name or ""
    try:
        info = await js.consumer_info(stream, name)
    except jse.NotFoundError:
        await js.add_consumer(stream, want)
        return
    have = info.config
    wrong = [key for key in _FIXED if getattr(have, key) != getattr(want, key)]
    if wrong:
        found = ", ".join(f"{key} {getattr(have, key)!r}" for key in wrong)
        made = ", ".join(f"{key} {getattr(want, key)!r}" for key in wrong)
        raise StreamConfigError(
            f"the consumer {name!r} of stream {stream!r} exists with {found}, where "
            f"kryten-sync needs {made}: delete it, or set events.group to another name"
        )
    if have.max_deliver != want.max_deliver or not math.isclose(
        have.ack_wait or 0.0, want.ack_wait or 0.0
    ):
        await js.add_consumer(stream, want)


class DurableFeed(ChannelFeed):
    """Durable events for the Dispatcher (see the module docstring)."""

    def __init__(self, config: KrytenConfig) -> None:
        group = config.event_group
        if group is None:  # the config's validator makes this impossible
            raise ValueError("durable events need events.group or service.name")
        self.config = config
        self.settings = config.events
        self.group = group
        # Per connection (loop thread).
        self._js: JetStreamContext | None = None
        self._consumers: list[_ChannelConsumer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Per client: a repeat may come after a disconnect() and connect().
        self.recent: dict[str, RecentIds] = {}

    def _filters(self) -> list[str]:
        return sorted({channel_events_wildcard(c.channel) for c in self.config.channels})

    async def on_open(self, link: Link) -> None:
        self._consumers = []
        self._js = js = link.nc.jetstream(timeout=link.config.request_timeout)
        await _guarded(
            ensure_stream(js, self.settings, self._filters()),
            f"durable events: stream {self.settings.stream!r}",
        )
        self._spawn(self._keep_alive())

    async def subscribe(
        self, link: Link, token: str, subject: str, dispatcher: Dispatcher
    ) -> Source:
        assert self._js is not None
        want = consumer_config(self.settings, self.group, token, subject)
        await _guarded(
            ensure_consumer(self._js, self.settings.stream, want),
            f"durable events: consumer {want.durable_name!r}",
        )
        consumer = _ChannelConsumer(self, link, dispatcher, token, want)
        await consumer.start()
        self._consumers.append(consumer)
        return consumer.source

    def on_reconnect(self, link: Link) -> None:
        # The server may have come back without its JetStream state (a new store):
        # without a consumer nothing would be delivered, and nothing would say so.
        self._spawn(self._recheck(link))

    async def before_close(self, link: Link, reason: str) -> None:
        # The keep-alive runs on: the events in flight are still being handled.
        await asyncio.gather(*(c.stop() for c in self._consumers))
        for task in list(self._tasks):
            task.cancel()

    def after_close(self, link: Link) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._consumers = []
        self._js = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_alive(self) -> None:
        """Extend the ack deadline of every event in flight while its handlers run."""
        while True:
            await asyncio.sleep(self.settings.ack_wait / 3)
            for consumer in self._consumers:
                await consumer.in_progress()

    async def _recheck(self, link: Link) -> None:
        js, delay = self._js, 0.1
        while js is not None and not link.closing:
            try:
                await ensure_stream(js, self.settings, self._filters())
                for consumer in self._consumers:
                    await ensure_consumer(js, self.settings.stream, consumer.want)
                return
            except StreamConfigError as exc:
                link.logger.error("durable events stopped after a reconnect: %s", exc)
                return
            except Exception as exc:  # JetStream not ready yet after a server restart
                link.log.limited(
                    "durable-recheck", "durable events: cannot check the stream yet: %r", exc
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class _ChannelConsumer:
    """One channel's durable consumer on one connection."""

    def __init__(
        self,
        feed: DurableFeed,
        link: Link,
        dispatcher: Dispatcher,
        token: str,
        want: api.ConsumerConfig,
    ) -> None:
        self.feed = feed
        self.link = link
        self.dispatcher = dispatcher
        self.token = token
        self.want = want
        self.max_deliver = feed.settings.max_deliver
        # Used by the channel's worker only (one at a time, connection after connection).
        self.recent = feed.recent.setdefault(token, RecentIds(feed.settings.recent_ids))
        self.inflight: dict[int, Msg] = {}  # loop thread only
        self.idle = asyncio.Event()
        self.idle.set()
        self.settling: set[asyncio.Task[None]] = set()
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self.source: Source
        self.sub: Any = None

    async def start(self) -> None:
        link = self.link
        self.source = link.start_source(f"events-{self.token}", self._process)
        self.sub = await link.nc.subscribe(
            self.want.deliver_subject or "",
            queue=self.feed.group,
            cb=self._on_msg,
            pending_msgs_limit=link.config.nats.pending_msgs_limit,
            pending_bytes_limit=link.config.nats.pending_bytes_limit,
        )

    # -- loop thread ------------------------------------------------------------------

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply.startswith("$JS.ACK."):  # not from JetStream: the worker counts it
            await self.source.worker.put(msg)
            return
        if self.closing:
            await self._settle(msg, _Outcome.NAK, 0.0)  # to another instance at once
            return
        self.inflight[id(msg)] = msg
        self.idle.clear()
        if not await self.source.worker.put(msg):
            self._settled(msg, _Outcome.NAK, 0.0)

    def _settled(self, msg: Msg, outcome: _Outcome, delay: float) -> None:
        self.inflight.pop(id(msg), None)
        task = self.loop.create_task(self._settle(msg, outcome, delay))
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)
        if not self.inflight:
            self.idle.set()

    async def _settle(self, msg: Msg, outcome: _Outcome, delay: float) -> None:
        try:
            if outcome is _Outcome.ACK:
                await msg.ack()
            elif outcome is _Outcome.NAK:
                await msg.nak(delay=delay or None)
            else:
                await msg.term()
        except Exception as exc:
            self.link.log.limited(
                f"durable-settle-{self.token}",
                "could not %s an event of %s (it will come again): %r",
                outcome.value,
                self.token,
                exc,
            )

    async def in_progress(self) -> None:
        for msg in list(self.inflight.values()):
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def stop(self) -> None:
        """Stop taking events, then let the one in flight finish and be acknowledged."""
        self.closing = True
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.drain()  # events already sent our way go back (closing)
        await self.idle.wait()
        if self.settling:
            await asyncio.gather(*self.settling)

    # -- the channel's worker -----------------------------------------------------------

    def _process(self, source: Source, msg: Msg) -> None:
        if not msg.reply.startswith("$JS.ACK."):
            source.stats.malformed += 1
            self.link.log.limited(
                "durable-foreign",
                "ignored a message on %s that JetStream did not send",
                msg.subject,
            )
            return
        outcome, delay = self._handle(source, msg)
        with contextlib.suppress(RuntimeError):  # loop gone: the server delivers it again
            self.loop.call_soon_threadsafe(self._settled, msg, outcome, delay)

    def _handle(self, source: Source, msg: Msg) -> tuple[_Outcome, float]:
        stats = source.stats
        delivered = msg.metadata.num_delivered
        if delivered > 1:
            stats.redelivered += 1
        raw = self.dispatcher.decode(source, msg.data)
        if raw is None:
            return _Outcome.TERM, 0.0  # malformed (counted and logged): never again
        correlation_id = raw.correlation_id
        if correlation_id and correlation_id in self.recent:
            stats.duplicates += 1
            return _Outcome.ACK, 0.0
        if self.dispatcher.deliver(source, raw, wait=True):
            if correlation_id:
                self.recent.add(correlation_id)
            return _Outcome.ACK, 0.0
        if delivered < self.max_deliver:
            return _Outcome.NAK, min(_FIRST_RETRY * 2 ** (delivered - 1), _LAST_RETRY)
        stats.skipped += 1
        if correlation_id:
            self.recent.add(correlation_id)
        self.link.logger.error(
            "skipped the %s event %s on %s (stream sequence %d): its handlers raised on "
            "each of %d deliveries (events.max_deliver)",
            raw.event_name,
            correlation_id or "without correlation id",
            self.token,
            msg.metadata.sequence.stream,
            delivered,
        )
        return _Outcome.TERM, 0.0


__all__ = ["EVENTS_SUBJECTS", "DurableFeed", "RecentIds", "covers"]
