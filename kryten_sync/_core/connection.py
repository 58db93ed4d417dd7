"""One live NATS connection: its loop thread, publisher, event workers and subscriptions.

A :class:`Connection` lives from ``connect()`` to ``disconnect()``; the client makes a
new one for each connect. Methods without ``a`` prefix are called from user threads,
``_a*`` coroutines run on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from kryten_sync.config import KrytenConfig
from kryten_sync.errors import KrytenConnectionError, KrytenError, raise_translated
from kryten_sync.events import MalformedEventError, parse_envelope, to_typed_event
from kryten_sync.raw import Message, Subscription
from kryten_sync.stats import HandlerStats, RateLimitedLog, SourceStats
from kryten_sync.subjects import channel_events_wildcard, normalize_token

from .dispatch import ConcurrentPool, ErrorHook, HandlerRegistry, Worker, invoke
from .loop import LoopThread
from .publish import Publisher

T = TypeVar("T")
_CONNECT_GRACE = 0.25  # seconds to wait for a more telling error once every server failed


@dataclass
class Hooks:
    """What the client lets the connection call back into (set before open()).

    Nothing here may refer to the client itself: the connection's threads would then
    keep an abandoned client alive, and it could never be closed when collected.
    """

    registry: HandlerRegistry
    stop_run: Callable[[], None]  # the connection is closed for good
    error_hook: ErrorHook | None = None
    on_disconnect: list[Callable[[], None]] = field(default_factory=list)
    on_reconnect: list[Callable[[], None]] = field(default_factory=list)
    # Run on the loop thread after connecting / before draining, with the connection
    # (loop-side code may use ``conn.nc`` directly) and, for closing, the reason.
    after_open: list[Callable[[Connection], Awaitable[None]]] = field(default_factory=list)
    before_close: list[Callable[[Connection, str], Awaitable[None]]] = field(default_factory=list)


@dataclass
class _Source:
    """One subscription feeding one worker."""

    name: str
    worker: Worker[Any]
    stats: SourceStats
    handler_stats: HandlerStats
    sub: Any = None  # nats.aio.subscription.Subscription


async def confirmed_flush(nc: NATS, timeout: float) -> None:
    """``nc.flush()`` that really follows everything sent before it.

    nats-py 2.16's ``flush()`` writes its PING straight to the socket, ahead of commands
    still in its pending buffer (SUBs, PUBs), so the PONG can come back before the server
    has seen them (measured: 17 of 300 messages published right after a subscribe were
    missed). Push the pending buffer out first.
    """
    await nc._flush_pending(force_flush=True)
    await nc.flush(max(1, math.ceil(timeout)))


def _describe_connect_error(exc: BaseException, servers: list[str]) -> str:
    where = ", ".join(servers)
    text = str(exc)
    if isinstance(exc, ConnectionResetError):
        return (
            f"{where} closed the connection during the handshake (wrong credentials, or "
            "TLS expected on one side only?)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (is nats-server running on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {where}: {exc.strerror}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if "authorization violation" in text.lower() or isinstance(exc, nats.errors.AuthorizationError):
        return (
            f"{where} refused the credentials (authorization violation): check user/"
            "password, token, nkey seed or creds file"
        )
    if isinstance(exc, TimeoutError):
        return f"timed out connecting to {where}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {where}: {exc.strerror}"
    return f"cannot connect to {where}: {text or type(exc).__name__}"


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _is_fatal_connect_error(exc: BaseException) -> bool:
    """Errors that retrying the same servers will not cure."""
    return (
        isinstance(exc, ssl.SSLError | nats.errors.AuthorizationError)
        or "authorization violation" in str(exc).lower()
    )


class Connection:
    """See module docstring."""

    def __init__(self, config: KrytenConfig, hooks: Hooks, logger: logging.Logger) -> None:
        self.config = config
        self.hooks = hooks
        self.logger = logger
        self.log = RateLimitedLog(logger)
        self.loop = LoopThread()
        self.publisher = Publisher(self.loop, self.log, config.request_timeout)
        self.nc: NATS | None = None
        self.sources: list[_Source] = []
        self.channel_sources: dict[str, _Source] = {}
        self._by_sid: dict[int, SourceStats] = {}
        self.pool: ConcurrentPool | None = None
        self._pool_lock = threading.Lock()
        self.control: Worker[Callable[[], None]] | None = None
        self._control_stats = HandlerStats()  # disconnect/reconnect callbacks
        # For extensions (key-value, lifecycle): their per-connection state, workers
        # finished at close, and loop-side callbacks run after each reconnect.
        self.extensions: dict[str, object] = {}
        self.extra_workers: list[Worker[Any]] = []
        self.reconnect_listeners: list[Callable[[], None]] = []
        self._opening = True
        self.closing = False
        self.connected_at = 0.0
        # Loop-owned counters.
        self.reconnects = 0
        self._state = "connecting"

    # -- opening (caller thread, then loop) ------------------------------------

    def open(self) -> None:
        """Connect and subscribe; raises KrytenConnectionError with a readable cause."""
        options = self.config.nats.connect_options()
        self.loop.start()
        budget = self._connect_budget() + 2.0  # a backstop behind _aopen's own wait
        try:
            self.loop.call(self._aopen(options), budget, "connect")
        except BaseException:
            self.loop.closing = True
            self.loop.stop(2.0)
            raise
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
                self._on_nats_error(exc)
                return
            failures.append(exc)
            if _is_fatal_connect_error(exc):
                gave_up.set()
            elif len(failures) == len(servers):
                # Every server failed once. A moment's grace: a refused login often shows
                # first as a reset, with the authorization error just behind it.
                asyncio.get_running_loop().call_later(_CONNECT_GRACE, gave_up.set)

        nc = NATS()
        self.nc = nc
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
            fatal = [f for f in failures if _is_fatal_connect_error(f)]
            cause = (fatal or failures or [raised or TimeoutError()])[-1]
            connecting.cancel()
            connecting.add_done_callback(_retrieve)  # no "exception never retrieved"
            await self._close_nc_quietly(nc)
            raise KrytenConnectionError(_describe_connect_error(cause, servers)) from cause
        self._opening = False
        self._state = "connected"
        self.publisher.nc = nc
        self.control = Worker("control", self._run_control, 1000)
        try:
            seen: set[str] = set()
            for channel in self.config.channels:
                token = normalize_token(channel.channel)
                if token in seen:
                    continue
                seen.add(token)
                source = await self._asubscribe(
                    channel_events_wildcard(channel.channel),
                    "",
                    f"events-{token}",
                    self._process_event,
                    lambda msg: msg.data,
                    confirm=False,
                )
                self.channel_sources[token] = source
            for hook in self.hooks.after_open:
                await hook(self)
            # connect() returns once the server has every subscription: an event
            # published right after it is not missed.
            await confirmed_flush(nc, self.config.request_timeout)
        except BaseException:
            self.closing = True
            await self._close_nc_quietly(nc)
            self._abandon_workers()
            raise

    @staticmethod
    async def _close_nc_quietly(nc: NATS) -> None:
        # Bounded: nats-py's close() can hang after a failed connect without reconnects.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)

    # -- nats-py callbacks (loop thread) ----------------------------------------

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
        self._state = "reconnecting"
        self.logger.warning("disconnected from NATS; reconnecting")
        self._run_user_callbacks(self.hooks.on_disconnect)

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self._state = "connected"
        url = self.nc.connected_url if self.nc is not None else None
        if url is not None:  # hostname:port, not netloc: that would carry user:password@
            self.logger.info("reconnected to %s:%s", url.hostname, url.port)
        for listener in self.reconnect_listeners:
            try:
                listener()
            except Exception:
                self.logger.exception("reconnect listener failed")
        self._run_user_callbacks(self.hooks.on_reconnect)

    async def _on_closed(self) -> None:
        self._state = "closed"
        if not self._opening and not self.closing:
            self.logger.error("NATS connection closed for good (reconnect attempts exhausted)")
            self.hooks.stop_run()

    def _run_user_callbacks(self, callbacks: list[Callable[[], None]]) -> None:
        if self.control is None:
            return
        for cb in callbacks:
            if not self.control.put_nowait(cb):
                self.log.limited("control-full", "control queue full; a callback was skipped")

    def _run_control(self, job: Callable[[], None]) -> None:
        self._invoke(lambda _: job(), None, None, self._control_stats)

    # -- subscriptions -------------------------------------------------------------

    async def _asubscribe(
        self,
        subject: str,
        queue: str,
        name: str,
        process: Callable[[_Source, Any], None],
        item: Callable[[Msg], Any],
        *,
        confirm: bool = True,
    ) -> _Source:
        """Subscribe ``subject`` with its own worker thread running ``process``;
        ``confirm`` waits until the server has the subscription."""
        assert self.nc is not None
        stats, hstats = SourceStats(), HandlerStats()
        source: _Source
        worker: Worker[Any] = Worker(
            name, lambda x: process(source, x), self.config.handler_queue_size
        )
        source = _Source(name, worker, stats, hstats)

        async def cb(msg: Msg) -> None:
            await worker.put(item(msg))

        source.sub = await self.nc.subscribe(
            subject,
            queue=queue,
            cb=cb,
            pending_msgs_limit=self.config.nats.pending_msgs_limit,
            pending_bytes_limit=self.config.nats.pending_bytes_limit,
        )
        self._by_sid[source.sub._id] = stats
        self.sources.append(source)
        if confirm:
            await confirmed_flush(self.nc, self.config.request_timeout)
        return source

    def subscribe(
        self, subject: str, handler: Callable[[Message], None], queue: str
    ) -> Subscription:
        """A raw subscription whose messages reach ``handler`` on its own worker thread."""

        def process(source: _Source, msg: Message) -> None:
            source.stats.received += 1
            self._invoke(handler, msg, self.hooks.error_hook, source.handler_stats)

        def to_message(msg: Msg) -> Message:
            return Message(msg.subject, msg.data, msg.reply, msg.headers, self.respond)

        source = self.call(
            self._asubscribe(subject, queue, f"sub-{subject}", process, to_message),
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

    # -- workers: events -----------------------------------------------------------

    def _process_event(self, source: _Source, data: bytes) -> None:
        """Decode one bridge event and run its handlers (on the channel's worker)."""
        stats = source.stats
        try:
            raw = parse_envelope(data)
        except MalformedEventError as exc:
            stats.malformed += 1
            self.log.limited(
                "malformed", "dropped a malformed event on %s: %s", source.name, exc.reason
            )
            return
        stats.received += 1
        name = raw.event_name.lower()
        stats.by_event[raw.event_name] = stats.by_event.get(raw.event_name, 0) + 1
        handlers = self.hooks.registry.for_event(name)
        if not handlers:
            return
        event = to_typed_event(raw)
        channel = domain = None
        on_error = self.hooks.error_hook
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
                self._concurrent_pool().submit(
                    functools.partial(self._invoke, handler.fn, event, on_error)
                )
            else:
                self._invoke(handler.fn, event, on_error, source.handler_stats)

    def _concurrent_pool(self) -> ConcurrentPool:
        pool = self.pool
        if pool is None:
            with self._pool_lock:
                if self.pool is None:
                    self.pool = ConcurrentPool(
                        self.config.max_concurrent_handlers, self.config.handler_queue_size
                    )
                pool = self.pool
        return pool

    def _invoke(
        self,
        fn: Callable[[Any], None],
        arg: Any,
        on_error: ErrorHook | None,
        stats: HandlerStats,
    ) -> None:
        invoke(
            fn,
            arg,
            stats=stats,
            log=self.log,
            on_error=on_error,
            slow_after=self.config.handler_timeout,
        )

    # -- blocking helpers --------------------------------------------------------------

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
        self.publisher.put(reply, payload, None, None)

    def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> Message:
        """Send a request and wait for its reply (NoRespondersError / KrytenTimeoutError)."""

        async def arequest() -> Message:
            assert self.nc is not None
            await self.publisher.drain()
            msg = await self.nc.request(subject, payload, timeout=timeout, headers=headers)
            return Message(msg.subject, msg.data, msg.reply, msg.headers)

        # The loop's own deadline is a backstop; nats-py's timeout fires first and
        # names the subject.
        return self.call(arequest(), f"request to {subject!r}", timeout + 1.0)

    def flush(self, timeout: float) -> None:
        """Wait until the server has everything published so far; never succeeds while
        disconnected (nats-py's flush would)."""

        async def aflush() -> None:
            nc = self.nc
            assert nc is not None
            await self.publisher.drain()
            deadline = time.monotonic() + timeout
            while not nc.is_connected:
                if nc.is_closed:
                    raise nats.errors.ConnectionClosedError
                if time.monotonic() >= deadline:
                    raise TimeoutError
                await asyncio.sleep(0.02)
            await confirmed_flush(nc, deadline - time.monotonic())

        self.call(aflush(), "flush (nothing flushed unless connected)", timeout + 1.0)

    # -- closing -------------------------------------------------------------------

    def close(self, reason: str, timeout: float) -> None:
        """Drain and close; bounded by ``timeout``; callable from any user thread."""
        loop = self.loop
        caller = threading.current_thread()
        try:
            loop.check_usable()
        except Exception:
            loop.closing = True
            loop.cancel_inflight()
            loop.stop(0.5)
            self._abandon_workers()
            return
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

    def _abandon_workers(self) -> None:
        """End the worker threads without the loop (it is gone)."""
        for worker in self._workers():
            worker.queue.shutdown(drop=True)
        if self.pool is not None:
            self.pool.close()

    def _workers(self) -> list[Worker[Any]]:
        workers = [s.worker for s in self.sources] + self.extra_workers
        return workers if self.control is None else [*workers, self.control]

    async def _aclose(self, reason: str, deadline: float, caller: threading.Thread) -> None:
        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        for hook in self.hooks.before_close:
            try:
                await asyncio.wait_for(hook(self, reason), remaining())
            except Exception:
                self.logger.exception("shutdown hook failed")
        await self.publisher.drain()
        nc = self.nc
        if nc is not None:
            try:
                if nc.is_connected:
                    await asyncio.wait_for(nc.drain(), remaining())
                elif nc.pending_data_size:
                    self.logger.warning(
                        "closing while disconnected: %d buffered bytes of publishes are lost",
                        nc.pending_data_size,
                    )
            except Exception as exc:
                self.logger.warning("draining the NATS connection failed: %r", exc)
            finally:
                if not nc.is_closed:
                    await self._close_nc_quietly(nc)
        results = await asyncio.gather(*(w.finish(remaining(), caller) for w in self._workers()))
        if not all(results):
            self.logger.warning("some handlers were still running at disconnect; abandoned")
        if self.pool is not None:
            self.pool.close()

    # -- health --------------------------------------------------------------------

    def handler_stats(self) -> HandlerStats:
        total = HandlerStats()
        pool_stats = self.pool.stats if self.pool is not None else []
        for stats in [s.handler_stats for s in self.sources] + pool_stats:
            total.merge(stats)
        return total

    @property
    def state(self) -> str:
        """connecting, connected, reconnecting, closed, or failed (loop thread died)."""
        return "failed" if self.loop.death is not None else self._state

    @property
    def is_connected(self) -> bool:
        nc = self.nc
        return nc is not None and nc.is_connected and not self.closing and self.loop.alive
