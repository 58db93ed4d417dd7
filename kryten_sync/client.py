"""The blocking, thread-safe :class:`KrytenClient`."""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType, TracebackType
from typing import Any, TypeVar, overload

from ._core import exit as _exit
from ._core.connection import Connection, Hooks
from ._core.dispatch import ErrorHook, Handler, HandlerRegistry, check_sync_callable
from ._ratelimit import RateLimiter
from .bridge import BridgeMixin
from .commands import CommandsMixin, CommandSpec
from .config import KrytenConfig
from .errors import (
    KrytenError,
    KrytenValidationError,
    NotConnectedError,
    PublishError,
    WrongThreadError,
)
from .events import Event
from .kv import KeyValueMixin
from .raw import Message, Payload, Subscription, encode_message
from .service.lifecycle import ServiceLifecycle
from .service.metrics import MetricsServer
from .stats import ChannelStatus, HandlerStats, HealthStatus
from .streams import EventStream, Predicate
from .subjects import command_subject, normalize_token, token

F = TypeVar("F", bound=Callable[..., None])


def _close_abandoned(conn: Connection, name: str) -> None:
    """Finalizer of a connected client that was garbage-collected."""
    conn.logger.warning(
        "%s was garbage-collected while connected; closing its connection "
        "(call disconnect() or use `with KrytenClient(...)`)",
        name,
    )
    # Close from a thread of its own: a finalizer may run on any thread, the loop's too.
    threading.Thread(
        target=conn.close,
        args=("Client garbage-collected", conn.config.shutdown_timeout),
        name="kryten-sync-close",
        daemon=True,
    ).start()


def _check_subject(subject: object) -> str:
    # Plain `in` tests: this runs on every publish.
    if (
        not isinstance(subject, str)
        or not subject
        or " " in subject
        or "\t" in subject
        or "\r" in subject
        or "\n" in subject
    ):
        raise KrytenValidationError(f"invalid NATS subject {subject!r}")
    return subject


class KrytenClient(CommandsMixin, BridgeMixin, KeyValueMixin):
    """A synchronous Kryten client, safe to share between threads.

    The NATS connection lives on a daemon thread running an asyncio loop; every method
    here blocks its caller (with a finite timeout) and handlers run on worker threads,
    one per channel, in the order events arrived. Use ``with KrytenClient(cfg) as c:``
    or ``connect()`` / ``disconnect()``.
    """

    def __init__(
        self, config: KrytenConfig | Mapping[str, Any], logger: logging.Logger | None = None
    ) -> None:
        self.config = KrytenConfig.coerce(config)
        if logger is None:
            logger = logging.getLogger("kryten_sync")
            logger.setLevel(self.config.log_level)
        self.logger = logger
        self._registry = HandlerRegistry()
        self._stop_event = threading.Event()
        self._hooks = Hooks(registry=self._registry, stop_run=self._stop_event.set)
        self._conn: Connection | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.RLock()
        self._stop_signal: str | None = None
        self._chat_limiter = RateLimiter(self.config.chat_burst, self.config.chat_min_delay)
        self._metrics_server = MetricsServer(self)
        self.lifecycle = ServiceLifecycle(self)

    def __repr__(self) -> str:
        channels = ", ".join(f"{c.domain}/{c.channel}" for c in self.config.channels)
        return f"<KrytenClient [{channels}] {self.health().state}>"

    # -- connection lifecycle ----------------------------------------------------------

    def connect(self) -> None:
        """Connect to NATS and subscribe to the configured channels.

        Returns once connected (a no-op if already connected); raises
        KrytenConnectionError with a readable cause otherwise.
        """
        with self._lock:
            if self._conn is not None:
                return
            conn = Connection(self.config, self._hooks, self.logger)
            conn.open()
            self._conn = conn
            self._stop_event.clear()
            _exit.track(self)
            # A client dropped while connected (a re-run notebook cell) is closed, not
            # leaked: nothing on the connection's threads refers back to it.
            self._finalizer = weakref.finalize(self, _close_abandoned, conn, repr(self))
            self._finalizer.atexit = False
        self.logger.info("connected to %s", ", ".join(self.config.nats.servers_for_display))

    def disconnect(self, reason: str = "Normal shutdown", timeout: float | None = None) -> None:
        """Drain and close the connection; idempotent, callable from any thread.

        Events already received still reach handlers and buffered publishes are sent,
        within ``timeout`` (default ``shutdown_timeout``). Later calls raise
        NotConnectedError.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            if conn.loop.in_loop_thread():
                raise WrongThreadError(
                    "disconnect() called on the client's event-loop thread; it would stall "
                    "the loop it waits for"
                )
            self._conn = None
            if self._finalizer is not None:
                self._finalizer.detach()
        _exit.untrack(self)
        self._stop_event.set()
        conn.close(reason, self.config.shutdown_timeout if timeout is None else timeout)
        self.logger.info("disconnected: %s", reason)

    close = disconnect

    def _close_at_exit(self) -> None:
        self.disconnect("Interpreter exit", self.config.exit_timeout)

    def __enter__(self) -> KrytenClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect("Normal shutdown" if exc_type is None else f"{exc_type.__name__} raised")

    def run(self) -> None:
        """Block until :meth:`stop`, SIGINT/SIGTERM (main thread only) or a permanent
        connection loss; connects first if needed.

        Ended by a signal, it disconnects with the signal's name as the reason.
        """
        self.connect()
        self._stop_signal = None
        with self._signals_stop_run():
            while not self._stop_event.wait(0.2):
                pass
        if self._stop_signal is not None:
            self.disconnect(f"Received {self._stop_signal}")

    def stop(self) -> None:
        """Make :meth:`run` return (from any thread, including a handler)."""
        self._stop_event.set()

    @contextmanager
    def _signals_stop_run(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop_signal = signal.Signals(signum).name
            self._stop_event.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _require(self) -> Connection:
        conn = self._conn
        if conn is None:
            raise NotConnectedError("the client is not connected: call connect() first")
        return conn

    @property
    def is_connected(self) -> bool:
        """True while the NATS connection is up (False while reconnecting)."""
        conn = self._conn
        return conn is not None and conn.is_connected

    # -- handlers ----------------------------------------------------------------------

    @overload
    def on(
        self,
        event: str,
        channel: str | None = None,
        domain: str | None = None,
        *,
        concurrent: bool = False,
        handler: None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def on(
        self,
        event: str,
        channel: str | None = None,
        domain: str | None = None,
        *,
        concurrent: bool = False,
        handler: F,
    ) -> F: ...

    def on(
        self,
        event: str,
        channel: str | None = None,
        domain: str | None = None,
        *,
        concurrent: bool = False,
        handler: F | None = None,
    ) -> Callable[[F], F] | F:
        """Register a plain-function handler for ``event`` (``"*"`` for every event).

        Decorator (``@client.on("chatMsg")``) or call (``client.on("chatMsg",
        handler=fn)``). Names match case-insensitively; ``channel``/``domain`` filters
        compare after normalisation. Handlers for one channel run one at a time in arrival
        order on that channel's thread; ``concurrent=True`` runs this handler on a pool
        instead (no order). Works before and after connect.
        """

        def register(fn: F) -> F:
            check_sync_callable(fn, "handler")
            self._registry.add(self._handler(event, channel, domain, fn, concurrent))
            return fn

        return register if handler is None else register(handler)

    @staticmethod
    def _handler(
        event: str,
        channel: str | None,
        domain: str | None,
        fn: Callable[[Any], None],
        concurrent: bool,
    ) -> Handler:
        if not isinstance(event, str) or not event.strip():
            raise KrytenValidationError("on(): event name must be a non-empty string")
        return Handler(
            fn,
            event.strip().lower(),
            token(channel, "channel filter") if channel is not None else None,
            token(domain, "domain filter") if domain is not None else None,
            concurrent,
        )

    def remove_handler(self, fn: Callable[..., None]) -> None:
        """Unregister every registration of ``fn``."""
        for handler in [h for h in self._registry.handlers if h.fn == fn]:
            self._registry.remove(handler)

    def on_error(self, hook: ErrorHook) -> ErrorHook:
        """Set the hook called as ``hook(exc, event)`` when a handler raises (decorator)."""
        check_sync_callable(hook, "on_error hook")
        self._hooks.error_hook = hook
        return hook

    def on_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on a worker thread when the connection drops."""
        check_sync_callable(callback, "disconnect callback")
        self._hooks.on_disconnect.append(callback)
        return callback

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on a worker thread after a reconnect."""
        check_sync_callable(callback, "reconnect callback")
        self._hooks.on_reconnect.append(callback)
        return callback

    # -- blocking consumption ----------------------------------------------------------

    def events(
        self,
        event: str = "*",
        *,
        channel: str | None = None,
        domain: str | None = None,
        predicate: Predicate | None = None,
        maxsize: int = 10_000,
    ) -> EventStream:
        """A context-managed blocking iterator over matching events from now on.

        ``with client.events("chatMsg") as stream: for ev in stream: ...``
        """
        self._require()
        stream = EventStream(lambda: self._conn is not None, predicate, maxsize)
        handler = self._handler(event, channel, domain, stream._push, False)
        stream.detach = functools.partial(self._registry.remove, handler)
        self._registry.add(handler)
        return stream

    def wait_for(
        self,
        event: str,
        *,
        channel: str | None = None,
        domain: str | None = None,
        predicate: Predicate | None = None,
        timeout: float = 30.0,
    ) -> Event:
        """Block until the next matching event and return it (KrytenTimeoutError after
        ``timeout`` seconds)."""
        with self.events(
            event, channel=channel, domain=domain, predicate=predicate, maxsize=1
        ) as stream:
            return stream.get(timeout)

    # -- raw NATS ------------------------------------------------------------------

    def publish(
        self, subject: str, data: Payload = None, *, headers: dict[str, str] | None = None
    ) -> None:
        """Publish bytes, str (UTF-8) or a dict/list (JSON) on ``subject``.

        Returns once handed to the connection (order kept per thread); raises
        PublishError for what can be known now (closed, too large, buffer full while
        reconnecting). Use :meth:`flush` to wait for the server.
        """
        conn = self._require()
        conn.publisher.put(_check_subject(subject), encode_message(data), headers, None)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the server has processed everything published so far."""
        self._require().flush(self.config.request_timeout if timeout is None else timeout)

    def subscribe(
        self, subject: str, handler: Callable[[Message], None], *, queue: str = ""
    ) -> Subscription:
        """Subscribe ``subject`` (wildcards allowed); ``handler(msg)`` runs on the
        subscription's own worker thread, in order. ``queue`` joins a queue group."""
        check_sync_callable(handler, "handler")
        return self._require().subscribe(_check_subject(subject), handler, queue)

    def request_message(
        self,
        subject: str,
        data: Payload = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Message:
        """Send a request and return the reply message.

        Raises NoRespondersError when nobody listens, KrytenTimeoutError (a
        TimeoutError) when no reply comes within ``timeout``.
        """
        conn = self._require()
        wait = self.config.request_timeout if timeout is None else timeout
        return conn.request(_check_subject(subject), encode_message(data), wait, headers)

    def request(
        self,
        subject: str,
        data: Payload = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Like :meth:`request_message`, returning the reply decoded from JSON."""
        msg = self.request_message(subject, data, timeout=timeout, headers=headers)
        try:
            return msg.json()
        except ValueError as exc:
            raise KrytenError(f"reply on {subject!r} is not JSON: {msg.data[:80]!r}") from exc

    # -- commands ------------------------------------------------------------------------

    def _send_command(
        self, spec: CommandSpec, channel: str, data: dict[str, Any], domain: str | None
    ) -> str:
        # `domain` is validated by the mixin but not sent: the bridge's command subjects
        # carry the literal "cytube" and the body has no domain (PROTOCOL.md section 2).
        conn = self._require()
        correlation_id = str(uuid.uuid4())
        body = {
            "action": spec.action,
            "data": data,
            "correlation_id": correlation_id,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        subject = command_subject(channel, spec.action)
        if spec.rate_limited:
            self._chat_limiter.acquire()
        attempt = 0
        while True:
            try:
                conn.publisher.put(subject, payload, None, spec.action)
                return correlation_id
            except PublishError as exc:
                # Only errors raised before nats-py took the message are retried, so a
                # command that was accepted is never sent twice.
                if not exc.retryable or attempt >= self.config.retry_attempts:
                    raise
                time.sleep(self.config.retry_delay * 2**attempt)
                attempt += 1

    # -- health ------------------------------------------------------------------------

    @property
    def channels(self) -> list[ChannelStatus]:
        """The configured channels with their delivery counters."""
        conn = self._conn
        result = []
        for cfg in self.config.channels:
            tok = normalize_token(cfg.channel)
            source = conn.channel_sources.get(tok) if conn is not None else None
            result.append(ChannelStatus.of(cfg.domain, cfg.channel, tok, source))
        return result

    def health(self) -> HealthStatus:
        """A snapshot of the connection state and the counters."""
        conn = self._conn
        if conn is None:
            return HealthStatus.disconnected(self.channels)
        return HealthStatus.of(conn, self.channels, conn.handler_stats() or HandlerStats())

    # -- lifecycle, health and metrics (lifecycle.py, metrics.py) -------------------------

    def on_group_restart(
        self, callback: Callable[[dict[str, Any]], None]
    ) -> Callable[[dict[str, Any]], None]:
        """Call ``callback(notice)`` on a worker thread for each group restart notice."""
        return self.lifecycle.on_group_restart(callback)

    def publish_group_restart(self, reason: str, delay_seconds: float = 5) -> None:
        """Ask every Kryten service to restart in ``delay_seconds`` seconds."""
        self.lifecycle.publish_group_restart(reason, delay_seconds)

    def add_health_check(self, name: str, check: Callable[[], object]) -> Callable[[], object]:
        """Show ``check()`` (a bool or a dict) in ``/health``; a failing check gives 503."""
        return self._metrics_server.add_health_check(name, check)

    @property
    def metrics_registry(self) -> MetricsServer.Registry:
        """This client's private prometheus_client registry, served on ``/metrics``."""
        return self._metrics_server.registry

    @property
    def health_url(self) -> str | None:
        """The URL of ``/health`` while it is served, else None."""
        return self._metrics_server.url("health")

    @property
    def metrics_url(self) -> str | None:
        """The URL of ``/metrics`` while it is served, else None."""
        return self._metrics_server.url("metrics")
