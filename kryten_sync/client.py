"""The blocking, thread-safe :class:`KrytenClient`: the flat, kryten-py-shaped surface.

The client composes its parts and delegates to them: commands are built by
:mod:`kryten_sync.commands` and sent by :class:`~kryten_sync.sending.CommandSender`;
bridge queries live in :class:`~kryten_sync.bridge.Bridge`, key-value access in
:class:`~kryten_sync.kv.KeyValueFeature`, the state buckets in
:class:`~kryten_sync.state.ChannelState`; events reach handlers through the
:class:`~kryten_sync._core.dispatch.Dispatcher`. Each part that needs the connection is a
feature plugged into it (:mod:`kryten_sync._core.feature`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import signal
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from . import commands
from ._core import exit as _exit
from ._core.connection import Connection
from ._core.dispatch import Dispatcher, Handler
from ._core.feature import Feature
from ._core.workers import ErrorHook, check_sync_callable
from .bridge import Bridge
from .config import KrytenConfig
from .durable import DurableFeed
from .errors import (
    KrytenError,
    KrytenValidationError,
    NotConnectedError,
    WrongThreadError,
)
from .eventnames import unknown_event_hint
from .events import Event
from .kv import KeyValueFeature
from .raw import (
    LostMessage,
    Message,
    Payload,
    Subscription,
    check_headers,
    encode_json,
    encode_message,
)
from .sending import CommandSender
from .service.lifecycle import ServiceLifecycle
from .service.metrics import Metrics
from .state import ChannelState, Emote
from .stats import ChannelInfo, HealthStatus
from .streams import EventStream, Predicate
from .subjects import channel_token, check_subject, normalize_token, subject_piece, token

if TYPE_CHECKING:
    from ._event_overloads import EventOverloads as _EventOverloads
else:
    _EventOverloads = object

P = ParamSpec("P")
R = TypeVar("R")
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


def _command_method(
    builder: Callable[P, commands.Command],
) -> Callable[Concatenate[KrytenClient, P], str]:
    """A client method that builds a command with ``builder`` and sends it; returns
    the correlation id (the request id once confirmed, with ``commands.confirm``).
    Signature and docstring are the builder's."""

    def method(self: KrytenClient, /, *args: P.args, **kwargs: P.kwargs) -> str:
        return self._bridge.send(builder(*args, **kwargs))

    functools.update_wrapper(method, builder)
    signature = inspect.signature(builder)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()], return_annotation="str"
    )
    return method


def _delegate(
    part: str, fn: Callable[Concatenate[Any, P], R]
) -> Callable[Concatenate[KrytenClient, P], R]:
    """A client method that calls the method ``fn`` of the part ``self.<part>``; its
    signature and docstring are ``fn``'s."""
    name = fn.__name__

    def method(self: KrytenClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        bound: Callable[P, R] = getattr(getattr(self, part), name)
        return bound(*args, **kwargs)

    functools.update_wrapper(method, fn)
    return method


def _handler(
    event: str,
    channel: str | None,
    domain: str | None,
    fn: Callable[[Any], None],
    *,
    concurrent: bool = False,
    consumer: bool = False,
) -> Handler:
    if not isinstance(event, str) or not event.strip():
        raise KrytenValidationError("on(): event name must be a non-empty string")
    return Handler(
        fn,
        event.strip().lower(),
        channel_token(channel, "channel filter") if channel is not None else None,
        token(subject_piece(domain, "domain filter"), "domain filter")
        if domain is not None
        else None,
        concurrent,
        consumer,
    )


class KrytenClient(_EventOverloads):
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
        self._stop_event = threading.Event()  # set when the connection ends
        self._run_stop = threading.Event()  # set by stop(), cleared by the run() it ends
        self._stopped_by: threading.Thread | None = None  # the thread of the pending stop
        self._conn: Connection | None = None
        self._final_health: HealthStatus | None = None  # of the last connection
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.RLock()
        self._stop_signal: str | None = None
        self._warned: set[str] = set()  # names _check_names warned about
        # The parts. None refers back to the client: the loop would keep an abandoned
        # client alive, and it could never be closed when collected.
        config = self.config
        self._dispatcher = Dispatcher(
            config, DurableFeed(config) if config.events.durable else None
        )
        self._sender = CommandSender(config)
        self._bridge = Bridge(config, self._sender)
        self._kv = KeyValueFeature()
        self._state = ChannelState(self._kv, config)
        self._metrics = Metrics(config, logger, self._dispatcher)
        self._lifecycle = ServiceLifecycle(config, logger, self._metrics)
        # Plugged into each connection in this order, after the dispatcher: metrics
        # binds its ports before the lifecycle's startup message advertises them.
        self._features: tuple[Feature, ...] = (
            self._sender,
            self._bridge,
            self._kv,
            self._metrics,
            self._lifecycle,
        )

    def __repr__(self) -> str:
        channels = ", ".join(f"{c.domain}/{c.channel}" for c in self.config.channels)
        return f"<KrytenClient [{channels}] {self.health().state}>"

    # -- connection lifecycle ----------------------------------------------------------

    def connect(self) -> None:
        """Connect to NATS and subscribe to the configured channels.

        Returns once connected (a no-op if already connected); raises
        KrytenConnectionError with a readable cause otherwise.
        """
        if self._open():
            self.logger.info("connected to %s", self._servers())

    def _servers(self) -> str:
        return ", ".join(self.config.nats.servers_for_display)

    def _open(self) -> bool:
        """Connect unless connected; True if this call connected."""
        with self._lock:
            if self._conn is not None:
                return False
            conn = Connection(
                self.config,
                self.logger,
                self._dispatcher,
                self._features,
                self._stop_event.set,
            )
            conn.open()
            self._conn = conn
            self._final_health = None
            self._stop_event.clear()
            _exit.track(self._close_at_exit)
            # A client dropped while connected (a re-run notebook cell) is closed, not
            # leaked: nothing on the connection's threads refers back to it.
            self._finalizer = weakref.finalize(self, _close_abandoned, conn, repr(self))
            self._finalizer.atexit = False
        return True

    def disconnect(self, reason: str = "Normal shutdown", timeout: float | None = None) -> int:
        """Drain and close the connection; idempotent, callable from any thread, never
        raises (but WrongThreadError on the client's own loop thread).

        Events already received still reach handlers and buffered publishes are sent,
        within ``timeout`` (default ``shutdown_timeout``). Later calls raise
        NotConnectedError.

        Returns how many accepted messages (commands and publishes) this connection
        never sent: those still buffered when it closed while disconnected, or when it
        gave up reconnecting, and any nats-py refused. 0 is the normal case, and the
        result of a call that found nothing to close. Each such message was counted as
        lost in :meth:`health` and passed to the :meth:`on_lost` hook, which runs on
        this thread before this returns for the ones written off here.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                return 0
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
        lost = conn.close(reason, self.config.shutdown_timeout if timeout is None else timeout)
        final = self._dispatcher.health(conn)
        self._final_health = dataclasses.replace(final, connected=False, state="disconnected")
        self.logger.info("disconnected: %s", reason)
        return lost

    close = disconnect

    def _close_at_exit(self) -> None:
        try:
            self.disconnect("Interpreter exit", self.config.exit_timeout)
        except Exception:  # an exit hook must not raise
            self.logger.exception("error while disconnecting at exit")

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

        A stop ends one ``run()``: the next one runs until the next :meth:`stop`. A stop
        made before ``run()`` by the thread now calling it is dropped (that thread cannot
        be stopping a run it has not started); one from another thread, such as a handler
        reacting to an event between ``connect()`` and ``run()``, ends it at once (in
        kryten-py no handler runs in between, here handlers run concurrently). Ended by a
        signal, it disconnects with the signal's name as the reason. Logs one line at
        INFO: connected to where, listening on which channels, with which handlers.
        """
        with self._lock:
            if self._stopped_by is threading.current_thread():
                self._run_stop.clear()
        connected = "connected to " + self._servers() + ", " if self._open() else ""
        channels = ", ".join(f"{c.domain}/{c.channel}" for c in self.config.channels)
        names = [
            getattr(h.fn, "__name__", "handler")
            for h in self._dispatcher.registry.handlers
            if not isinstance(getattr(h.fn, "__self__", None), EventStream)  # events()
        ]
        count = f"{len(names)} handler{'s' if len(names) != 1 else ''}"
        with_handlers = f"{count} ({', '.join(names)})" if names else "no handlers"
        on_main = threading.current_thread() is threading.main_thread()
        self.logger.info(
            "%slistening on %s with %s; %s",
            connected,
            channels,
            with_handlers,
            "Ctrl-C stops" if on_main else "stop() ends run()",
        )
        conn = self._conn
        self._stop_signal = None
        try:
            with self._signals_stop_run():
                while not self._run_stop.wait(0.2):
                    if self._stop_event.is_set() or self._conn is not conn:
                        break  # connection lost for good, or disconnected
        finally:
            with self._lock:  # this run took the stop
                self._run_stop.clear()
                self._stopped_by = None
        if self._stop_signal is not None:
            self.disconnect(f"Received {self._stop_signal}")

    def stop(self) -> None:
        """Make :meth:`run` return (from any thread, including a handler)."""
        with self._lock:
            self._stopped_by = threading.current_thread()
            self._run_stop.set()

    @contextmanager
    def _signals_stop_run(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop_signal = signal.Signals(signum).name
            self._run_stop.set()  # not stop(): a handler must not take the lock

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
    # Type checkers see on/events/wait_for through _event_overloads.pyi: one overload per
    # typed event (client.on("chatMsg") gives ChatMessageEvent). These bodies only
    # forward to the checked implementations below.

    if not TYPE_CHECKING:

        def on(
            self,
            event_name: str,
            channel: str | None = None,
            domain: str | None = None,
            *,
            concurrent: bool = False,
            handler: Callable[[Any], None] | None = None,
        ) -> Any:
            """Register a plain-function handler for ``event_name`` (``"*"`` for every event).

            Decorator (``@client.on("chatMsg")``) or call (``client.on("chatMsg",
            handler=fn)``). Names match case-insensitively; ``channel``/``domain`` filters
            compare after normalisation. Handlers for one channel run one at a time in
            arrival order on that channel's thread; ``concurrent=True`` runs this handler on
            a pool instead (no order). Works before and after connect. A name CyTube does
            not send, or a channel that is not configured, logs one warning.
            """
            return self._on(event_name, channel, domain, concurrent, handler)

        def events(
            self,
            event: str = "*",
            *,
            channel: str | None = None,
            domain: str | None = None,
            predicate: Predicate | None = None,
            maxsize: int = 10_000,
        ) -> EventStream[Any]:
            """A context-managed blocking iterator over matching events from now on.

            ``with client.events("chatMsg") as stream: for ev in stream: ...``
            """
            return self._events(
                "events",
                event,
                channel=channel,
                domain=domain,
                predicate=predicate,
                maxsize=maxsize,
            )

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
            return self._wait_for(event, channel, domain, predicate, timeout)

    def _on(
        self,
        event_name: str,
        channel: str | None,
        domain: str | None,
        concurrent: bool,
        handler: F | None,
    ) -> Callable[[F], F] | F:
        self._check_names("on", event_name, channel, domain)

        def register(fn: F) -> F:
            check_sync_callable(fn, "handler")
            self._dispatcher.registry.add(
                _handler(event_name, channel, domain, fn, concurrent=concurrent)
            )
            return fn

        return register if handler is None else register(handler)

    def _check_names(
        self, where: str, event: object, channel: str | None, domain: str | None
    ) -> None:
        """Warn once per name about a filter that will probably never match."""
        if isinstance(event, str):
            hint = unknown_event_hint(event)
            if hint is not None:
                self._warn_once(
                    f"event {event.strip().lower()}",
                    f"{where}({event!r}): {hint} (registered anyway: custom events are allowed)",
                )
        configured = self.config.channels
        if channel is not None and normalize_token(channel) not in {
            normalize_token(c.channel) for c in configured
        }:
            names = ", ".join(repr(c.channel) for c in configured)
            self._warn_once(
                f"channel {normalize_token(channel)}",
                f"{where}(channel={channel!r}): not a configured channel ({names}); the "
                "client subscribes only to those, so this filter never matches",
            )
        if domain is not None and normalize_token(domain) not in {
            normalize_token(c.domain) for c in configured
        }:
            names = ", ".join(sorted({repr(c.domain) for c in configured}))
            self._warn_once(
                f"domain {normalize_token(domain)}",
                f"{where}(domain={domain!r}): no configured channel has this domain ({names})",
            )

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self.logger.warning("%s", message)

    def remove_handler(self, fn: Callable[..., None]) -> None:
        """Unregister every registration of ``fn``."""
        registry = self._dispatcher.registry
        for handler in [h for h in registry.handlers if h.fn == fn]:
            registry.remove(handler)

    def on_error(self, hook: ErrorHook) -> ErrorHook:
        """Set the hook called as ``hook(exc, event)`` when a handler raises (decorator)."""
        check_sync_callable(hook, "on_error hook")
        self._dispatcher.error_hook = hook
        return hook

    def on_lost(
        self, hook: Callable[[list[LostMessage]], None]
    ) -> Callable[[list[LostMessage]], None]:
        """Set the hook called as ``hook(messages)`` with the accepted messages that may
        not have reached NATS, so an application can persist or resend them (decorator).

        Each :class:`LostMessage` has the subject, payload and headers, for commands the
        action and correlation id, and a ``reason``: ``"not sent"`` (still buffered
        when the client closed while disconnected or gave up reconnecting, or refused
        by nats-py) or ``"unconfirmed"`` (written to a connection that dropped before
        the server confirmed it: it may have arrived; resending may duplicate it).
        Called on the control worker thread, or for what a :meth:`disconnect` writes
        off, on the thread calling it. Never on the event loop.
        """
        check_sync_callable(hook, "on_lost hook")
        self._dispatcher.lost_hook = hook
        return hook

    def on_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on a worker thread when the connection drops."""
        check_sync_callable(callback, "disconnect callback")
        dispatcher = self._dispatcher
        dispatcher.disconnect_callbacks = (*dispatcher.disconnect_callbacks, callback)
        return callback

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on a worker thread after a reconnect."""
        check_sync_callable(callback, "reconnect callback")
        dispatcher = self._dispatcher
        dispatcher.reconnect_callbacks = (*dispatcher.reconnect_callbacks, callback)
        return callback

    # -- blocking consumption (typed by _event_overloads.pyi, see on()) ---------------

    def _events(
        self,
        where: str,
        event: str,
        *,
        channel: str | None,
        domain: str | None,
        predicate: Predicate | None,
        maxsize: int,
    ) -> EventStream[Any]:
        self._require()
        self._check_names(where, event, channel, domain)
        stream: EventStream[Any] = EventStream(lambda: self._conn is not None, predicate, maxsize)
        # The library's own consumer: not counted as a handler call in health().
        handler = _handler(event, channel, domain, stream.push, consumer=True)
        registry = self._dispatcher.registry
        stream.detach = functools.partial(registry.remove, handler)
        registry.add(handler)
        return stream

    def _wait_for(
        self,
        event: str,
        channel: str | None,
        domain: str | None,
        predicate: Predicate | None,
        timeout: float,
    ) -> Event:
        with self._events(
            "wait_for", event, channel=channel, domain=domain, predicate=predicate, maxsize=1
        ) as stream:
            found: Event = stream.get(timeout)
            return found

    # -- raw NATS ------------------------------------------------------------------

    def publish(
        self, subject: str, data: Payload = None, *, headers: dict[str, str] | None = None
    ) -> None:
        """Publish bytes, str (UTF-8) or a dict/list (JSON) on ``subject``.

        Returns once handed to the connection (order kept per thread); while
        disconnected the message waits in the client until reconnected. Raises
        PublishError for what can be known now (closed, too large, reconnect buffer
        full). Use :meth:`flush` to wait for the server; see :meth:`on_lost` for what
        happens to accepted messages the client cannot send.
        """
        conn = self._require()
        payload = encode_message(data)
        conn.publisher.publish(check_subject(subject), payload, check_headers(headers), None)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the server has processed everything published so far.

        While disconnected it waits for the reconnect; raises KrytenTimeoutError naming
        how many messages still wait, or ClientClosedError naming how many were never
        sent when the connection closed for good.
        """
        self._require().flush(self.config.request_timeout if timeout is None else timeout)

    def subscribe(
        self, subject: str, handler: Callable[[Message], None], *, queue: str = ""
    ) -> Subscription:
        """Subscribe ``subject`` (wildcards allowed); ``handler(msg)`` runs on the
        subscription's own worker thread, in order. ``queue`` joins a queue group."""
        check_sync_callable(handler, "handler")
        return self._require().subscribe(check_subject(subject), handler, queue)

    def unsubscribe(self, subscription: Subscription) -> None:
        """End ``subscription`` (kryten-py's form of ``subscription.unsubscribe()``; an
        error is logged, not raised, as there)."""
        try:
            subscription.unsubscribe()
        except KrytenError as exc:
            self.logger.warning("error unsubscribing %r: %s", subscription, exc)

    def subscribe_request_reply(
        self, subject: str, handler: Callable[[dict[str, Any]], Any]
    ) -> Subscription:
        """Answer requests on ``subject``: ``handler(request)`` gets each request's JSON
        and its return value is sent back as the JSON reply.

        The handler runs on the subscription's worker thread, one request at a time. A
        request that is not JSON is answered ``{"error": "Invalid JSON"}``; a handler that
        raises (or returns what JSON cannot hold) is logged and answered ``{"error":
        "Internal error"}``, as kryten-py does. A message without a reply subject still
        reaches the handler.
        """
        check_sync_callable(handler, "request handler")
        logger = self.logger

        def answer(msg: Message) -> None:
            try:
                request = msg.json()
            except ValueError:
                logger.error("request on %s is not JSON: %r", msg.subject, msg.data[:80])
                response: Any = {"error": "Invalid JSON"}
            else:
                try:
                    response = encode_json(handler(request), "request handler result")
                except Exception:
                    logger.exception("request handler for %s raised", msg.subject)
                    response = {"error": "Internal error"}
            if msg.reply:
                msg.respond(response)

        return self.subscribe(subject, answer)

    request_message = _delegate("_bridge", Bridge.request_message)
    nats_request = _delegate("_bridge", Bridge.nats_request)
    economy_request = _delegate("_bridge", Bridge.economy_request)

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

    # -- commands (kryten_sync.commands builds them, CommandSender sends them) -----------
    send_chat = _command_method(commands.send_chat)
    send_pm = _command_method(commands.send_pm)
    queue_media = _command_method(commands.queue_media)
    delete_media = _command_method(commands.delete_media)
    move_media = _command_method(commands.move_media)
    jump_to = _command_method(commands.jump_to)
    clear_playlist = _command_method(commands.clear_playlist)
    shuffle_playlist = _command_method(commands.shuffle_playlist)
    set_temp = _command_method(commands.set_temp)
    play_next = _command_method(commands.play_next)
    pause = _command_method(commands.pause)
    play = _command_method(commands.play)
    seek = _command_method(commands.seek)
    kick_user = _command_method(commands.kick_user)
    ban_user = _command_method(commands.ban_user)
    voteskip = _command_method(commands.voteskip)
    assign_leader = _command_method(commands.assign_leader)
    mute_user = _command_method(commands.mute_user)
    shadow_mute_user = _command_method(commands.shadow_mute_user)
    unmute_user = _command_method(commands.unmute_user)
    set_motd = _command_method(commands.set_motd)
    set_channel_css = _command_method(commands.set_channel_css)
    set_channel_js = _command_method(commands.set_channel_js)
    set_options = _command_method(commands.set_options)
    set_permissions = _command_method(commands.set_permissions)
    update_emote = _command_method(commands.update_emote)
    remove_emote = _command_method(commands.remove_emote)
    add_filter = _command_method(commands.add_filter)
    update_filter = _command_method(commands.update_filter)
    remove_filter = _command_method(commands.remove_filter)
    new_poll = _command_method(commands.new_poll)
    vote = _command_method(commands.vote)
    close_poll = _command_method(commands.close_poll)
    set_channel_rank = _command_method(commands.set_channel_rank)
    request_channel_ranks = _command_method(commands.request_channel_ranks)
    request_banlist = _command_method(commands.request_banlist)
    read_chan_log = _command_method(commands.read_chan_log)
    search_library = _command_method(commands.search_library)
    delete_from_library = _command_method(commands.delete_from_library)

    send_confirmed = _delegate("_bridge", Bridge.send_confirmed)

    # -- bridge queries and rank-checked commands (bridge.py) ---------------------------

    ping = _delegate("_bridge", Bridge.ping)
    get_version = _delegate("_bridge", Bridge.get_version)
    get_stats = _delegate("_bridge", Bridge.get_stats)
    get_channels = _delegate("_bridge", Bridge.get_channels)
    get_services = _delegate("_bridge", Bridge.get_services)
    get_config = _delegate("_bridge", Bridge.get_config)
    get_userlist = _delegate("_bridge", Bridge.get_userlist)
    get_playlist = _delegate("_bridge", Bridge.get_playlist)
    get_emotes = _delegate("_bridge", Bridge.get_emotes)
    get_motd = _delegate("_bridge", Bridge.get_motd)
    get_user = _delegate("_bridge", Bridge.get_user)
    get_all_profiles = _delegate("_bridge", Bridge.get_all_profiles)
    add_media = _delegate("_bridge", Bridge.add_media)
    add_media_and_wait = _delegate("_bridge", Bridge.add_media_and_wait)
    unban = _delegate("_bridge", Bridge.unban)
    ban_name = _delegate("_bridge", Bridge.ban_name)
    get_banlist = _delegate("_bridge", Bridge.get_banlist)
    get_channel_ranks = _delegate("_bridge", Bridge.get_channel_ranks)
    get_chan_log = _delegate("_bridge", Bridge.get_chan_log)
    get_library_search = _delegate("_bridge", Bridge.get_library_search)
    get_user_profile = _delegate("_bridge", Bridge.get_user_profile)
    send_command = _delegate("_bridge", Bridge.send_command)
    service_request = _delegate("_bridge", Bridge.service_request)
    get_bot_rank = _delegate("_bridge", Bridge.get_bot_rank)
    get_user_level = _delegate("_bridge", Bridge.get_user_level)
    reload_config = _delegate("_bridge", Bridge.reload_config)
    shutdown = _delegate("_bridge", Bridge.shutdown)
    safe_delete_media = _delegate("_bridge", Bridge.safe_delete_media)
    safe_clear_playlist = _delegate("_bridge", Bridge.safe_clear_playlist)
    safe_shuffle_playlist = _delegate("_bridge", Bridge.safe_shuffle_playlist)
    safe_set_temp = _delegate("_bridge", Bridge.safe_set_temp)
    safe_ban_user = _delegate("_bridge", Bridge.safe_ban_user)
    safe_assign_leader = _delegate("_bridge", Bridge.safe_assign_leader)
    safe_set_motd = _delegate("_bridge", Bridge.safe_set_motd)
    safe_set_channel_css = _delegate("_bridge", Bridge.safe_set_channel_css)
    safe_set_channel_js = _delegate("_bridge", Bridge.safe_set_channel_js)
    safe_set_options = _delegate("_bridge", Bridge.safe_set_options)
    safe_set_permissions = _delegate("_bridge", Bridge.safe_set_permissions)
    safe_update_emote = _delegate("_bridge", Bridge.safe_update_emote)
    safe_remove_emote = _delegate("_bridge", Bridge.safe_remove_emote)
    safe_add_filter = _delegate("_bridge", Bridge.safe_add_filter)
    safe_update_filter = _delegate("_bridge", Bridge.safe_update_filter)
    safe_remove_filter = _delegate("_bridge", Bridge.safe_remove_filter)
    safe_set_channel_rank = _delegate("_bridge", Bridge.safe_set_channel_rank)
    safe_request_channel_ranks = _delegate("_bridge", Bridge.safe_request_channel_ranks)
    safe_request_banlist = _delegate("_bridge", Bridge.safe_request_banlist)
    safe_unban = _delegate("_bridge", Bridge.safe_unban)
    safe_read_chan_log = _delegate("_bridge", Bridge.safe_read_chan_log)
    safe_delete_from_library = _delegate("_bridge", Bridge.safe_delete_from_library)

    # -- the bridge's state buckets (state.py) -------------------------------------------

    get_state_playlist_items = _delegate("_state", ChannelState.get_state_playlist_items)
    get_state_current_media = _delegate("_state", ChannelState.get_state_current_media)
    get_state_current_uid = _delegate("_state", ChannelState.get_state_current_uid)
    get_state_userlist = _delegate("_state", ChannelState.get_state_userlist)
    get_state_emotes = _delegate("_state", ChannelState.get_state_emotes)
    get_state_motd = _delegate("_state", ChannelState.get_state_motd)
    get_state_css = _delegate("_state", ChannelState.get_state_css)
    get_state_js = _delegate("_state", ChannelState.get_state_js)
    get_state_channel_css = get_state_css
    get_state_channel_js = get_state_js
    get_state_channel_options = _delegate("_bridge", Bridge.get_state_channel_options)
    get_state_channel_permissions = _delegate("_bridge", Bridge.get_state_channel_permissions)

    # -- emotes (kryten-py's bulk helpers, over updateEmote/removeEmote) ----------------

    def export_emotes(
        self, channel: str, *, domain: str | None = None, timeout: float = 5.0
    ) -> list[Emote]:
        """The channel's emotes (:meth:`get_state_emotes`)."""
        return self._state.get_state_emotes(channel, domain=domain, timeout=timeout)

    def import_emotes(
        self, channel: str, emotes: list[dict[str, str]], *, domain: str | None = None
    ) -> list[str]:
        """Send one ``update_emote`` per ``{"name", "image"[, "source"]}``; returns their
        correlation ids. Every emote is checked before the first is sent."""
        built = [self._emote_command(channel, emote, domain) for emote in emotes]
        return [self._sender.send(command) for command in built]

    def set_emotes(
        self, channel: str, emotes: list[dict[str, str]], *, domain: str | None = None
    ) -> str:
        """Make ``emotes`` the channel's whole emote list; returns the correlation id of
        the last command sent (``""`` when nothing needed sending).

        The bridge has no ``setEmotes`` command (kryten-py sends one the bridge ignores),
        so this sends ``removeEmote`` for each current emote (:meth:`get_state_emotes`)
        not in ``emotes``, then ``updateEmote`` for each of ``emotes``. Every emote is
        checked before anything is sent.
        """
        built = [self._emote_command(channel, emote, domain) for emote in emotes]
        keep = {command.data["name"] for command in built}
        removals = [
            commands.remove_emote(channel, current.name, domain=domain)
            for current in self._state.get_state_emotes(channel, domain=domain)
            if current.name not in keep
        ]
        last = ""
        for command in [*removals, *built]:
            last = self._sender.send(command)
        return last

    @staticmethod
    def _emote_command(
        channel: str, emote: Mapping[str, str], domain: str | None
    ) -> commands.Command:
        if not isinstance(emote, Mapping) or "name" not in emote or "image" not in emote:
            raise KrytenValidationError(
                f"emotes: each emote must be a dict with 'name' and 'image', got {emote!r}"
            )
        source = emote.get("source", "imgur")
        return commands.update_emote(channel, emote["name"], emote["image"], source, domain=domain)

    # -- key-value (kv.py) ----------------------------------------------------------------

    get_kv_store = _delegate("_kv", KeyValueFeature.get_kv_store)
    get_or_create_kv_store = _delegate("_kv", KeyValueFeature.get_or_create_kv_store)
    get_kv_bucket = get_kv_store
    get_or_create_kv_bucket = get_or_create_kv_store
    kv_get = _delegate("_kv", KeyValueFeature.kv_get)
    kv_keys = _delegate("_kv", KeyValueFeature.kv_keys)
    kv_get_all = _delegate("_kv", KeyValueFeature.kv_get_all)
    kv_put = _delegate("_kv", KeyValueFeature.kv_put)
    kv_delete = _delegate("_kv", KeyValueFeature.kv_delete)
    kv_watch = _delegate("_kv", KeyValueFeature.kv_watch)

    # -- health ------------------------------------------------------------------------

    @property
    def channels(self) -> list[ChannelInfo]:
        """The configured channels with kryten-py's fields (``subscribed``,
        ``events_received``, ``model_dump()``) and the delivery counters."""
        return self._dispatcher.channel_statuses()

    def health(self) -> HealthStatus:
        """A snapshot of the connection state and the counters; after ``disconnect()``,
        the last connection's final counters (lost messages, dropped events included)
        until the next ``connect()``."""
        conn = self._conn
        final = self._final_health
        if conn is None and final is not None:
            return final
        return self._dispatcher.health(conn)

    # -- lifecycle, health and metrics (service/) -------------------------

    @property
    def lifecycle(self) -> ServiceLifecycle:
        """The service lifecycle (startup/heartbeat/shutdown messages, group restarts).

        Unlike kryten-py's (None until connect, or without ``service`` config), it always
        exists: ``on_group_restart`` works before connect; ``is_running`` tells whether
        it announces a service now.
        """
        return self._lifecycle

    @property
    def _nats(self) -> KrytenClient | None:
        """kryten-py's private NATS client, for its programs that hand it to a
        ``LifecycleEventPublisher``: this client itself (it publishes, subscribes and
        requests from any thread) while connected, else None."""
        return self if self._conn is not None else None

    def on_group_restart(
        self, callback: Callable[[dict[str, Any]], None]
    ) -> Callable[[dict[str, Any]], None]:
        """Call ``callback(notice)`` on a worker thread for each group restart notice."""
        return self._lifecycle.on_group_restart(callback)

    def publish_group_restart(self, reason: str, delay_seconds: float = 5) -> None:
        """Ask every Kryten service to restart in ``delay_seconds`` seconds."""
        self._lifecycle.publish_group_restart(reason, delay_seconds)

    def add_health_check(self, name: str, check: Callable[[], object]) -> Callable[[], object]:
        """Show ``check()`` (a bool or a dict) in ``/health``; a failing check gives 503."""
        return self._metrics.add_health_check(name, check)

    @property
    def metrics_registry(self) -> Metrics.Registry:
        """This client's private prometheus_client registry, served on ``/metrics``."""
        return self._metrics.registry

    @property
    def health_url(self) -> str | None:
        """The URL of ``/health`` while it is served, else None."""
        return self._metrics.url("health")

    @property
    def metrics_url(self) -> str | None:
        """The URL of ``/metrics`` while it is served, else None."""
        return self._metrics.url("metrics")
