"""kryten-py's :class:`LifecycleEventPublisher`, blocking, over a connected client.

Where kryten-py takes a nats-py client, this takes a connected
:class:`~kryten_sync.KrytenClient` (anything with its ``publish``, ``subscribe`` and
``is_connected``) as ``nats_client``; it keeps no connection of its own. Messages are
built by :mod:`.lifecycle`, the code the client's own service announcements use, so they
follow docs/protocol.md section 4: ``kryten.lifecycle.{service}.{event}`` with
``service``, ``version``, ``hostname``, ``timestamp`` (UTC with its offset),
``uptime_seconds`` and ``metadata``.

Use it to announce a service other than the client's configured ``service`` (a client
configured with one announces that one itself), or when porting kryten-py code. As in
kryten-py, :meth:`~LifecycleEventPublisher.start` announces nothing by itself (call
``publish_startup()``), and the ``publish_*`` methods never raise: a failure is logged on
``logger``.

Threads: the restart callback and discovery answers run on the client's subscription
worker threads; heartbeats on a daemon thread of the publisher, skipped while the client
is reconnecting (nats-py would send the stale ones after the reconnect).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kryten_sync import _validate
from kryten_sync._core.workers import check_sync_callable
from kryten_sync.raw import Message, encode_json, encode_payload
from kryten_sync.subjects import DISCOVERY_POLL, GROUP_RESTART, lifecycle_subject, service_token

from .lifecycle import decode_notice, lifecycle_message, restart_notice

RestartCallback = Callable[[dict[str, Any]], Any]


class _Subscription(Protocol):
    def unsubscribe(self) -> None: ...


class LifecycleClient(Protocol):
    """What the publisher uses of a client (a :class:`~kryten_sync.KrytenClient`)."""

    def publish(self, subject: str, data: bytes, /) -> None: ...

    def subscribe(self, subject: str, handler: Callable[[Message], None], /) -> _Subscription: ...

    @property
    def is_connected(self) -> bool: ...


class LifecycleEventPublisher:
    """Publishes a service's lifecycle events (startup, shutdown, heartbeat, connected,
    disconnected, group restart) and answers discovery polls, through ``nats_client``.

    ``service_name`` becomes one subject token (lowercased, ``.`` and spaces as ``-``) and
    is the ``service`` of every message. Heartbeats go out every ``heartbeat_interval``
    seconds after :meth:`start` (the first after one interval, as in kryten-py).
    ``health_port``/``metrics_port`` set the advertised endpoints (:meth:`set_endpoints`).
    """

    def __init__(  # noqa: PLR0917 - kryten-py's positional signature
        self,
        service_name: str,
        nats_client: LifecycleClient,
        logger: logging.Logger,
        version: str = "unknown",
        heartbeat_interval: int | float = 30,
        enable_heartbeat: bool = True,
        enable_discovery: bool = True,
        health_port: int | None = None,
        health_path: str = "/health",
        metrics_port: int | None = None,
        metrics_path: str = "/metrics",
    ) -> None:
        where = "LifecycleEventPublisher()"
        _validate.require_text(where, "version", version)
        _validate.require_number(
            where, "heartbeat_interval", heartbeat_interval, minimum=0, exclusive_minimum=True
        )
        self._service = service_token(service_name)
        self._nats = nats_client
        self._logger = logger
        self._version = version
        self._heartbeat_interval = float(heartbeat_interval)
        self._enable_heartbeat = enable_heartbeat
        self._enable_discovery = enable_discovery
        self._hostname = socket.gethostname()
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] = {}  # replaced, never mutated (read by other threads)
        self._restart_callback: RestartCallback | None = None
        self._running = False
        self._started = 0.0  # time.monotonic() at start()
        self._subscriptions: list[_Subscription] = []
        self._stop_beating = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if health_port is not None or metrics_port is not None:
            self.set_endpoints(
                health_port=health_port,
                health_path=health_path,
                metrics_port=metrics_port,
                metrics_path=metrics_path,
            )

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    # -- metadata (any thread) -----------------------------------------------------------

    def set_metadata(self, key: str, value: Any) -> None:
        """Include ``key: value`` in the ``metadata`` of later messages (the value must be
        JSON-serialisable: checked here)."""
        self.update_metadata({key: value})

    def update_metadata(self, data: dict[str, Any]) -> None:
        """Merge ``data`` into the ``metadata`` of later messages (values checked as in
        :meth:`set_metadata`)."""
        _validate.require_mapping("update_metadata()", "data", data)
        encode_json(dict(data), "metadata")
        with self._lock:
            self._metadata = {**self._metadata, **data}

    def set_endpoints(
        self,
        health_port: int | None = None,
        metrics_port: int | None = None,
        health_path: str = "/health",
        metrics_path: str = "/metrics",
    ) -> None:
        """Advertise the health and metrics endpoints as ``metadata.endpoints``
        (``{"health": {"port", "path"}, "metrics": {...}}``; a port left None is left
        out, and with both None nothing changes)."""
        endpoints: dict[str, dict[str, Any]] = {}
        if health_port is not None:
            endpoints["health"] = {"port": health_port, "path": health_path}
        if metrics_port is not None:
            endpoints["metrics"] = {"port": metrics_port, "path": metrics_path}
        if endpoints:
            self.set_metadata("endpoints", endpoints)

    # -- start / stop (user threads) -------------------------------------------------------

    def start(self) -> None:
        """Subscribe to group restart notices and (``enable_discovery``) discovery polls,
        and start the heartbeats; a failed subscription is logged, as in kryten-py."""
        with self._lock:
            if self._running:
                self._logger.warning("Lifecycle event publisher already running")
                return
            self._running = True
            self._started = time.monotonic()
        self._subscribe(GROUP_RESTART, self._on_restart_notice, "restart notices")
        if self._enable_discovery:
            self._subscribe(DISCOVERY_POLL, self._on_discovery_poll, "discovery polls")
        if self._enable_heartbeat:
            self._stop_beating.clear()
            self._heartbeat = threading.Thread(
                target=self._beat, name="kryten-sync-lifecycle-heartbeat", daemon=True
            )
            self._heartbeat.start()
            self._logger.info(
                "Started heartbeat task (interval: %ss)", f"{self._heartbeat_interval:g}"
            )

    def stop(self) -> None:
        """Stop the heartbeats and unsubscribe (idempotent)."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            subscriptions, self._subscriptions = self._subscriptions, []
            heartbeat, self._heartbeat = self._heartbeat, None
        self._stop_beating.set()
        if heartbeat is not None and heartbeat is not threading.current_thread():
            heartbeat.join()
        for subscription in subscriptions:
            try:
                subscription.unsubscribe()
            except Exception as exc:
                self._logger.warning("Error unsubscribing: %s", exc)

    def _subscribe(self, subject: str, handler: Callable[[Message], None], what: str) -> None:
        try:
            subscription = self._nats.subscribe(subject, handler)
        except Exception as exc:
            self._logger.error("Failed to subscribe to %s: %s", what, exc, exc_info=True)
            return
        with self._lock:
            self._subscriptions.append(subscription)
        self._logger.info("Subscribed to %s", what)

    def _beat(self) -> None:
        while not self._stop_beating.wait(self._heartbeat_interval):
            if self._nats.is_connected:
                self.publish_heartbeat()

    # -- what arrives (the client's worker threads) ------------------------------------------

    def on_restart_notice(self, callback: RestartCallback) -> None:
        """Call ``callback(notice)`` for each group restart notice (the decoded
        ``{"initiator", "reason", "delay_seconds", "timestamp", ...}``); it replaces an
        earlier callback and runs on a worker thread; what it raises is logged."""
        check_sync_callable(callback, "restart callback")
        self._restart_callback = callback

    def _on_restart_notice(self, msg: Message) -> None:
        notice = decode_notice(msg.data)
        if notice is None:
            self._logger.error("Invalid restart notice JSON: %r", msg.data[:80])
            return
        self._logger.warning(
            "Groupwide restart notice received from %s: %s (restarting in %ss)",
            notice.get("initiator", "unknown"),
            notice.get("reason", "No reason provided"),
            notice.get("delay_seconds", 5),
        )
        callback = self._restart_callback
        if callback is None:
            return
        try:
            callback(notice)
        except Exception as exc:
            self._logger.error("Error in restart callback: %s", exc, exc_info=True)

    def _on_discovery_poll(self, msg: Message) -> None:
        self._logger.debug("Received discovery poll, re-announcing service")
        self.publish_startup()

    # -- publishing (any thread; never raises) -------------------------------------------------

    def publish_startup(self, **extra_data: Any) -> None:
        """Publish ``kryten.lifecycle.{service}.startup`` with ``extra_data`` added."""
        self._publish("startup", extra_data, logging.INFO)

    def publish_shutdown(self, reason: str = "Normal shutdown", **extra_data: Any) -> None:
        """Publish ``.shutdown`` with ``reason`` and ``extra_data``."""
        self._publish("shutdown", {"reason": reason, **extra_data}, logging.INFO)

    def publish_heartbeat(self, **extra_data: Any) -> None:
        """Publish ``.heartbeat`` with ``extra_data`` (also sent by the heartbeat thread)."""
        self._publish("heartbeat", extra_data, logging.DEBUG)

    def publish_connected(self, target: str, **extra_data: Any) -> None:
        """Publish ``.connected``: a connection to ``target`` (e.g. "CyTube") is up."""
        self._publish("connected", {"target": target, **extra_data}, logging.DEBUG)

    def publish_disconnected(self, target: str, reason: str = "Unknown", **extra_data: Any) -> None:
        """Publish ``.disconnected``: the connection to ``target`` is lost, for ``reason``."""
        extra = {"target": target, "reason": reason, **extra_data}
        self._publish("disconnected", extra, logging.WARNING)

    def publish_group_restart(
        self,
        reason: str,
        delay_seconds: int = 5,
        initiator: str | None = None,
        **extra_data: Any,
    ) -> None:
        """Ask every Kryten service to restart in ``delay_seconds``: publish
        ``{"initiator" (default: this service), "reason", "delay_seconds", "timestamp"}``
        plus ``extra_data`` on ``kryten.lifecycle.group.restart``."""
        try:
            notice = restart_notice(initiator or self._service, reason, delay_seconds, extra_data)
            self._nats.publish(GROUP_RESTART, encode_payload(notice, "restart notice"))
        except Exception as exc:
            self._logger.error("Failed to publish restart notice: %s", exc, exc_info=True)
            return
        self._logger.warning(
            "Published groupwide restart notice: %s (delay: %ss)", reason, delay_seconds
        )

    def _publish(self, event: str, extra: Mapping[str, Any], level: int) -> None:
        subject = lifecycle_subject(self._service, event)
        try:
            body = lifecycle_message(
                self._service,
                self._version,
                self._hostname,
                self._started,
                metadata=self._metadata,
                extra=extra,
            )
            self._nats.publish(subject, encode_payload(body, f"{event} event"))
        except Exception as exc:
            self._logger.error("Failed to publish %s event: %s", event, exc, exc_info=True)
            return
        self._logger.log(level, "Published %s event to %s", event, subject)


__all__ = ["LifecycleClient", "LifecycleEventPublisher"]
