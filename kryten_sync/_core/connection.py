"""One live NATS connection: its loop thread, publisher, subscriptions and workers.

A :class:`Connection` lives from ``connect()`` to ``disconnect()``; the client makes a
new one for each connect. It moves bytes: what they mean is up to the features plugged
into it (:mod:`kryten_sync._core.feature`), in the order given, the
:class:`~kryten_sync._core.dispatch.Dispatcher` first. Methods without an ``a`` prefix are
called from user threads, ``a*`` coroutines run on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from kryten_sync.config import KrytenConfig
from kryten_sync.errors import (
    ClientClosedError,
    ForkedProcessError,
    KrytenConnectionError,
    KrytenError,
    KrytenTimeoutError,
    describe_connect_error,
    is_fatal_connect_error,
    raise_translated,
)
from kryten_sync.raw import LostReason, Message, Subscription
from kryten_sync.stats import HandlerStats, RateLimitedLog, SourceStats

from .dispatch import Dispatcher
from .feature import Feature
from .loop import LoopThread
from .publish import Publisher, _Item, confirmed_flush, lost_messages
from .workers import Worker, invoke

T = TypeVar("T")
Item = TypeVar("Item")
_CONNECT_GRACE = 0.25  # seconds to wait for a more telling error once every server failed


@dataclass
class _Source:
    """One subscription feeding one worker."""

    name: str
    worker: Worker[Any]
    stats: SourceStats
    handler_stats: HandlerStats
    sub: Any = None  # nats.aio.subscription.Subscription


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Connection:
    """See module docstring. Implements :class:`~kryten_sync._core.feature.Link`."""

    def __init__(
        self,
        config: KrytenConfig,
        logger: logging.Logger,
        dispatcher: Dispatcher,
        features: tuple[Feature, ...],
        closed_for_good: Callable[[], None],
    ) -> None:
        self.config = config
        self.logger = logger
        self.log = RateLimitedLog(logger)
        self.loop = LoopThread()
        self.publisher = Publisher(
            self.loop, self.log, config.request_timeout, config.nats.reconnect_buffer_size
        )
        self.publisher.on_refused = lambda items: self._report_lost(items, "not sent")
        self.dispatcher = dispatcher
        self.features: tuple[Feature, ...] = (dispatcher, *features)
        self._closed_for_good = closed_for_good
        self._nc: NATS | None = None
        self.sources: list[_Source] = []
        self._by_sid: dict[int, SourceStats] = {}
        self._workers: list[Worker[Any]] = []  # started through start_worker()
        self.control: Worker[Callable[[], None]] | None = None
        self._control_stats = HandlerStats()  # disconnect/reconnect callbacks
        self._opening = True
        self.closing = False
        self.connected_at = 0.0
        # Loop-owned counters.
        self.reconnects = 0
        self.last_gap_seconds = 0.0  # how long the last completed outage lasted
        self._gaps_total = 0.0
        self._down_since: float | None = None
        self._state = "connecting"

    @property
    def nc(self) -> NATS:
        """The nats-py client (loop thread only; set once connected)."""
        nc = self._nc
        assert nc is not None, "not connected yet"
        return nc

    @property
    def loop_thread(self) -> threading.Thread:
        return self.loop.thread

    # -- opening (caller thread, then loop) ------------------------------------

    def open(self) -> None:
        """Connect and subscribe; raises KrytenConnectionError with a readable cause."""
        options = self.config.nats.connect_options()
        self.loop.start()
        budget = self._connect_budget() + 2.0  # a backstop behind _aopen's own wait
        try:
            self.loop.call(self._aopen(options), budget, "connect")
        except BaseException as exc:
            self.loop.closing = True
            self.loop.stop(2.0)
            if isinstance(exc, KrytenConnectionError) or not isinstance(exc, Exception):
                raise
            # Whatever failed (a subscription, a feature such as the metrics port, the
            # backstop timeout), connect() failed: one error type to catch.
            raise KrytenConnectionError(f"connect failed: {exc or type(exc).__name__}") from exc
        self.connected_at = time.monotonic()

    def _connect_budget(self) -> float:
        """How long the first connection may take: one attempt per server, plus one."""
        nats_config = self.config.nats
        return nats_config.connect_timeout * (len(nats_config.servers) + 1)

    async def _aopen(self, options: dict[str, Any]) -> None:
        servers = self.config.nats.servers_for_display  # for messages: no credentials
        failures: list[BaseException] = []
        gave_up = asyncio.Event()

        async def error_cb(exc: Exception) -> None:
            if not self._opening:
                self._jitter_reconnect_wait(nc)
                self._on_nats_error(exc)
                return
            failures.append(exc)
            if is_fatal_connect_error(exc):
                gave_up.set()
            elif len(failures) == len(servers):
                # Every server failed once. A moment's grace: a refused login often shows
                # first as a reset, with the authorization error just behind it.
                asyncio.get_running_loop().call_later(_CONNECT_GRACE, gave_up.set)

        nc = NATS()
        self._nc = nc
        connecting = asyncio.ensure_future(
            nc.connect(
                **options,
                error_cb=error_cb,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
            )
        )
        giving_up = asyncio.ensure_future(gave_up.wait())
        try:
            await asyncio.wait(
                {connecting, giving_up},
                timeout=self._connect_budget(),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            giving_up.cancel()
        raised = connecting.exception() if connecting.done() else None
        if not connecting.done() or raised is not None:
            # What error_cb saw says more than connect()'s own NoServersError.
            fatal = [f for f in failures if is_fatal_connect_error(f)]
            cause = (fatal or failures or [raised or TimeoutError()])[-1]
            connecting.cancel()
            connecting.add_done_callback(_retrieve)  # no "exception never retrieved"
            await self._close_nc_quietly(nc)
            raise KrytenConnectionError(describe_connect_error(cause, servers)) from cause
        self._opening = False
        self._state = "connected"
        self.publisher.nc = nc
        self.control = Worker("control", self._run_control, 1000)
        try:
            for feature in self.features:
                await feature.on_open(self)
            # connect() returns once the server has every subscription: an event
            # published right after it is not missed.
            await confirmed_flush(nc, self.config.request_timeout)
        except BaseException:
            self.closing = True
            await self._close_nc_quietly(nc)
            self._abandon_workers()
            self._after_close()
            raise

    @staticmethod
    async def _close_nc_quietly(nc: NATS) -> None:
        # Bounded: nats-py's close() can hang after a failed connect without reconnects.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)

    # -- nats-py callbacks (loop thread) ----------------------------------------

    def _jitter_reconnect_wait(self, nc: NATS) -> None:
        # nats-py has no jitter of its own. It calls error_cb after each failed attempt
        # and reads the wait from its options before the next one: a fresh random wait
        # each time keeps clients restarted together from retrying in lockstep.
        nats_config = self.config.nats
        jitter = random.uniform(0.0, nats_config.reconnect_jitter)
        nc.options["reconnect_time_wait"] = nats_config.reconnect_time_wait + jitter

    def _on_nats_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            stats = self._by_sid.get(exc.sid)
            if stats is not None:
                stats.dropped += 1
            self.log.limited(
                f"slow-consumer-{exc.sid}",
                "handlers for %r fall behind: nats-py dropped a message (slow consumer)",
                exc.subject,
            )
            return
        self.log.limited("nats-error", "NATS error: %r", exc)

    async def _on_disconnected(self) -> None:
        if self._opening or self.closing:
            return
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._state = "reconnecting"
        unconfirmed = self.publisher.connection_lost()
        if unconfirmed:
            self.logger.warning(
                "disconnected from NATS; reconnecting. %d message(s) written just before "
                "were not confirmed by the server and may be lost (counted as unconfirmed)",
                len(unconfirmed),
            )
            self._report_lost(unconfirmed, "unconfirmed")
        else:
            self.logger.warning("disconnected from NATS; reconnecting")
        self._each_feature("on_disconnect", lambda f: f.on_disconnect(self))

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self._state = "connected"
        gap = 0.0
        if self._down_since is not None:
            gap = time.monotonic() - self._down_since
            self._down_since = None
            self._gaps_total += gap
            self.last_gap_seconds = gap
        url = self._nc.connected_url if self._nc is not None else None
        if url is not None:  # hostname:port, not netloc: that would carry user:password@
            self.logger.info(
                "reconnected to %s:%s after %.2f s disconnected (events published "
                "meanwhile were not received)",
                url.hostname,
                url.port,
                gap,
            )
        self.publisher.resume()
        self._each_feature("on_reconnect", lambda f: f.on_reconnect(self))

    async def _on_closed(self) -> None:
        self._state = "closed"
        if not self._opening and not self.closing:
            not_sent, unconfirmed = self.publisher.close()
            self.logger.error(
                "NATS connection closed for good (reconnect attempts exhausted)%s",
                _unsent_note(len(not_sent)),
            )
            self._report_lost(not_sent, "not sent")
            self._report_lost(unconfirmed, "unconfirmed")
            self._closed_for_good()

    @property
    def disconnected_seconds(self) -> float:
        """Time spent disconnected since connecting, the current outage included."""
        down_since = self._down_since
        ongoing = time.monotonic() - down_since if down_since is not None else 0.0
        return self._gaps_total + ongoing

    def _report_lost(self, items: list[_Item], reason: LostReason, *, here: bool = False) -> None:
        """Hand written-off messages to the on_lost hook: on the control worker, or
        ``here`` on the calling (user) thread."""
        hook = self.dispatcher.lost_hook
        if not items or hook is None:
            return
        messages = lost_messages(items, reason)
        if here:
            self.invoke(hook, messages, self._control_stats)
        elif not self.run_job(lambda: hook(messages)):
            self.log.limited("control-full", "control queue full; an on_lost call was skipped")

    def _each_feature(self, hook: str, call: Callable[[Feature], None]) -> None:
        for feature in self.features:
            try:
                call(feature)
            except Exception:
                self.logger.exception("%s hook of %s failed", hook, type(feature).__name__)

    # -- what features use (Link) ------------------------------------------------

    def run_job(self, job: Callable[[], None]) -> bool:
        """Run ``job()`` on the control worker (loop thread); False when full."""
        control = self.control
        return control is not None and control.put_nowait(job)

    def _run_control(self, job: Callable[[], None]) -> None:
        self.invoke(lambda _: job(), None, self._control_stats)

    def invoke(self, fn: Callable[[Any], None], arg: Any, stats: HandlerStats) -> bool:
        """Call user code on the current worker thread (see :func:`workers.invoke`)."""
        return invoke(
            fn,
            arg,
            stats=stats,
            log=self.log,
            on_error=self.dispatcher.error_hook,
            slow_after=self.config.handler_timeout,
        )

    def start_worker(self, name: str, process: Callable[[Item], None]) -> Worker[Item]:
        worker: Worker[Item] = Worker(name, process, self.config.handler_queue_size)
        self._workers.append(worker)
        return worker

    async def astop_worker(self, worker: Worker[Any], caller: threading.Thread | None) -> None:
        with contextlib.suppress(ValueError):
            self._workers.remove(worker)
        await worker.finish(self.config.shutdown_timeout, caller)

    async def asubscribe(
        self,
        subject: str,
        name: str,
        process: Callable[[_Source, Item], None],
        item: Callable[[Msg], Item],
        *,
        queue: str = "",
        confirm: bool = True,
    ) -> _Source:
        """Subscribe ``subject`` with its own worker thread running ``process``;
        ``confirm`` waits until the server has the subscription."""
        nc = self.nc
        source = self.start_source(name, process)
        worker = source.worker

        async def cb(msg: Msg) -> None:
            if not await worker.put(item(msg)):
                source.stats.dropped += 1  # arrived while closing: never handled

        try:
            source.sub = await nc.subscribe(
                subject,
                queue=queue,
                cb=cb,
                pending_msgs_limit=self.config.nats.pending_msgs_limit,
                pending_bytes_limit=self.config.nats.pending_bytes_limit,
            )
        except BaseException:
            self.sources.remove(source)
            worker.abandon()
            raise
        self._by_sid[source.sub._id] = source.stats
        if confirm:
            await confirmed_flush(nc, self.config.request_timeout)
        return source

    def start_source(self, name: str, process: Callable[[_Source, Item], None]) -> _Source:
        """A worker thread with counters, counted in health and finished at close."""
        source: _Source
        worker: Worker[Item] = Worker(
            name, lambda x: process(source, x), self.config.handler_queue_size
        )
        source = _Source(name, worker, SourceStats(), HandlerStats())
        self.sources.append(source)
        return source

    # -- user threads -----------------------------------------------------------------

    def subscribe(
        self, subject: str, handler: Callable[[Message], None], queue: str
    ) -> Subscription:
        """A raw subscription whose messages reach ``handler`` on its own worker thread."""

        def process(source: _Source, msg: Message) -> None:
            source.stats.received += 1
            self.invoke(handler, msg, source.handler_stats)

        def to_message(msg: Msg) -> Message:
            return Message(msg.subject, msg.data, msg.reply, msg.headers, self.respond)

        source = self.call(
            self.asubscribe(subject, f"sub-{subject}", process, to_message, queue=queue),
            f"subscribe to {subject!r}",
        )
        return Subscription(subject, queue, functools.partial(self._unsubscribe, source))

    def _unsubscribe(self, source: _Source) -> None:
        caller = threading.current_thread()

        async def unsubscribe() -> None:
            await source.sub.unsubscribe()
            self.sources.remove(source)
            await source.worker.finish(self.config.shutdown_timeout, caller)

        self.call(unsubscribe(), f"unsubscribe from {source.sub.subject!r}")

    def call(self, coro: Coroutine[Any, Any, T], what: str, timeout: float | None = None) -> T:
        """Run ``coro`` on the loop; nats-py errors become kryten-sync errors (in the
        caller's thread, so nothing wraps the coroutine and a refused call closes it)."""
        try:
            return self.loop.call(coro, timeout or self.config.request_timeout, what)
        except (KrytenError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise_translated(exc, what)

    def respond(self, reply: str, payload: bytes) -> None:
        self.publisher.publish(reply, payload, None, None)

    def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> Message:
        """Send a request and wait for its reply (NoRespondersError / KrytenTimeoutError)."""

        async def arequest() -> Message:
            await self.publisher.drain()
            msg = await self.nc.request(subject, payload, timeout=timeout, headers=headers)
            return Message(msg.subject, msg.data, msg.reply, msg.headers)

        # The loop's own deadline is a backstop; nats-py's timeout fires first and
        # names the subject.
        return self.call(arequest(), f"request to {subject!r}", timeout + 1.0)

    def flush(self, timeout: float) -> None:
        """Wait until the server has everything published so far; never succeeds while
        disconnected (nats-py's flush would)."""
        publisher = self.publisher

        async def aflush() -> None:
            nc = self.nc
            deadline = time.monotonic() + timeout
            while True:
                while not nc.is_connected:
                    if nc.is_closed:
                        raise ClientClosedError(
                            f"flush: the connection is closed{_unsent_note(publisher.lost)}"
                        )
                    if time.monotonic() >= deadline:
                        raise KrytenTimeoutError(
                            f"flush: still disconnected after {timeout:g} s; "
                            f"{publisher.buffered} messages wait to be sent"
                        )
                    await asyncio.sleep(0.02)
                await publisher.drain()
                remaining = max(0.0, deadline - time.monotonic())
                if await asyncio.wait_for(publisher.confirm(), remaining):
                    return

        self.call(aflush(), "flush (nothing flushed unless connected)", timeout + 1.0)

    # -- closing -------------------------------------------------------------------

    def close(self, reason: str, timeout: float) -> int:
        """Drain and close; bounded by ``timeout``; callable from any user thread.

        Returns how many accepted messages were never sent (buffered while disconnected,
        or refused); they go to the on_lost hook on this thread before it returns.
        """
        loop = self.loop
        caller = threading.current_thread()
        try:
            loop.check_usable()
        except ForkedProcessError:
            # The parent still owns the connection and its buffered messages.
            loop.closing = True
            self._abandon_workers()
            self._after_close()
            return 0
        except Exception:
            loop.closing = True
            loop.cancel_inflight()
            loop.stop(0.5)
            self._abandon_workers()
            self._after_close()
            return self._write_off_at_close()
        self.closing = True
        deadline = time.monotonic() + timeout
        fut = asyncio.run_coroutine_threadsafe(self._aclose(reason, deadline, caller), loop.loop)
        loop.closing = True
        loop.cancel_inflight()
        try:
            fut.result(max(0.0, deadline - time.monotonic()) + 0.25)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self.logger.warning("disconnect did not finish within %.1f s", timeout)
        except Exception:
            self.logger.exception("error while disconnecting")
        loop.stop(max(0.1, deadline - time.monotonic()) + 1.0)
        return self._write_off_at_close()

    def _write_off_at_close(self) -> int:
        """What the closed connection never sent or confirmed: counted, logged and
        reported on this thread (the loop has stopped); the number never sent."""
        not_sent, unconfirmed = self.publisher.close()
        if not_sent:
            self.logger.warning("closed while disconnected%s", _unsent_note(len(not_sent)))
        if unconfirmed:
            self.logger.warning(
                "closed: %d messages were not confirmed by the server and may be lost",
                len(unconfirmed),
            )
        self._report_lost(not_sent, "not sent", here=True)
        self._report_lost(unconfirmed, "unconfirmed", here=True)
        return self.publisher.lost

    def _abandon_workers(self) -> None:
        """End the worker threads without the loop (it is gone)."""
        for worker in self._all_workers():
            worker.abandon()

    def _all_workers(self) -> list[Worker[Any]]:
        workers = [s.worker for s in self.sources] + self._workers
        return workers if self.control is None else [*workers, self.control]

    def _after_close(self) -> None:
        self._each_feature("after_close", lambda f: f.after_close(self))

    async def _aclose(self, reason: str, deadline: float, caller: threading.Thread) -> None:
        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        for feature in self.features:
            try:
                await asyncio.wait_for(feature.before_close(self, reason), remaining())
            except Exception:
                self.logger.exception("shutdown hook of %s failed", type(feature).__name__)
        nc = self._nc
        if nc is not None:
            try:
                if nc.is_connected:
                    await self.publisher.drain()
                    # Confirmed now, so nothing sent is counted "unconfirmed" at close.
                    await asyncio.wait_for(self.publisher.confirm(), remaining())
                    await asyncio.wait_for(nc.drain(), remaining())
            except Exception as exc:
                self.logger.warning("draining the NATS connection failed: %r", exc)
            finally:
                if not nc.is_closed:
                    await self._close_nc_quietly(nc)
        # One after another: the threads finish in parallel anyway, the deadline is
        # shared, and nothing is left pending (a gather cancelled at the deadline left
        # a "_GatheringFuture exception was never retrieved" behind).
        ended = [await w.finish(remaining(), caller) for w in self._all_workers()]
        dropped = sum(s.worker.dropped for s in self.sources)
        if dropped or not all(ended):
            self.logger.warning(
                "disconnect: handlers still running at its time bound were abandoned; "
                "%d received events were not handled (counted as dropped)",
                dropped,
            )
        self._after_close()

    # -- health --------------------------------------------------------------------

    def handler_stats(self) -> HandlerStats:
        """Handler counters of every subscription's worker."""
        total = HandlerStats()
        for source in self.sources:
            total.merge(source.handler_stats)
        return total

    @property
    def state(self) -> str:
        """connecting, connected, reconnecting, closed, or failed (loop thread died)."""
        return "failed" if self.loop.death is not None else self._state

    @property
    def is_connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected and not self.closing and self.loop.alive


def _unsent_note(count: int) -> str:
    """``": N messages were not sent (...)"``, or nothing when ``count`` is 0."""
    if not count:
        return ""
    return f": {count} accepted messages were not sent (counted as lost, passed to on_lost)"
