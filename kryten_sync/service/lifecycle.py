"""Service lifecycle (docs/protocol.md section 4): startup, heartbeat, shutdown, discovery,
group restart.

A connection feature (:mod:`kryten_sync._core.feature`); everything that touches NATS
runs on the loop thread, from its hooks:

- ``on_open``, after connecting: subscribe ``kryten.lifecycle.group.restart`` (always, so
  :meth:`ServiceLifecycle.on_group_restart` works before and after connect, with or
  without a service) and, for a service, ``kryten.service.discovery.poll``; publish
  ``kryten.lifecycle.{service}.startup``; start the heartbeat task, whose first beat goes
  out right after the startup message (``connect()`` then flushes, so it returns once
  the server has every subscription);
- ``before_close``, before draining: stop the heartbeat and publish ``.shutdown`` with
  the reason. The drain that follows flushes it, so every way of closing
  (``disconnect()``, the interpreter-exit hook, ``run()`` ended by a signal) announces
  the shutdown.

Group-restart callbacks are user code: they run on the connection's control worker
thread, never on the loop. The loop-side subscription callbacks run no user code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kryten_sync import _validate
from kryten_sync._core.feature import Feature, Link
from kryten_sync._core.workers import check_sync_callable
from kryten_sync.errors import KrytenValidationError, NotConnectedError
from kryten_sync.raw import encode_payload, utc_timestamp
from kryten_sync.subjects import DISCOVERY_POLL, GROUP_RESTART, lifecycle_subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

    from kryten_sync.config import KrytenConfig, ServiceConfig

    from .metrics import Metrics

RestartCallback = Callable[[dict[str, Any]], None]

_DEFAULT_INITIATOR = "kryten-sync"
#: The keys docs/protocol.md section 4 gives every lifecycle message.
MESSAGE_KEYS = ("service", "version", "hostname", "timestamp", "uptime_seconds")
#: The keys of a group restart notice.
NOTICE_KEYS = ("initiator", "reason", "delay_seconds", "timestamp")


def _add_extra(body: dict[str, Any], extra: Mapping[str, Any], reserved: tuple[str, ...]) -> None:
    clash = sorted(set(extra) & set(reserved))
    if clash:
        # A caller's "timestamp" without an offset would break the bridge's services list.
        raise KrytenValidationError(f"extra keys {clash} would replace the protocol's own")
    body.update(extra)


def lifecycle_message(
    service: str,
    version: str,
    hostname: str,
    started: float,
    *,
    metadata: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The body of one lifecycle message (docs/protocol.md section 4): ``service``,
    ``version``, ``hostname``, ``timestamp`` (UTC, explicit offset), ``uptime_seconds``
    since ``started`` (a ``time.monotonic()`` reading; 0: not started), ``metadata``
    when there is any, then the ``extra`` keys, which may not replace the first five."""
    body: dict[str, Any] = {
        "service": service,
        "version": version,
        "hostname": hostname,
        "timestamp": utc_timestamp(),
        "uptime_seconds": round(time.monotonic() - started, 3) if started else 0.0,
    }
    if metadata:
        body["metadata"] = dict(metadata)
    _add_extra(body, extra, MESSAGE_KEYS)
    return body


def restart_notice(
    initiator: str, reason: str, delay_seconds: float, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """A group restart notice: ``{"initiator", "reason", "delay_seconds", "timestamp"}``
    plus the ``extra`` keys, which may not replace those four."""
    notice: dict[str, Any] = {
        "initiator": initiator,
        "reason": reason,
        "delay_seconds": delay_seconds,
        "timestamp": utc_timestamp(),
    }
    _add_extra(notice, extra, NOTICE_KEYS)
    return notice


def decode_notice(data: bytes) -> dict[str, Any] | None:
    """A received group restart notice, or None if it is not a JSON object."""
    try:
        notice = json.loads(data)
    except ValueError:
        return None
    return notice if isinstance(notice, dict) else None


class ServiceLifecycle(Feature):
    """Announces the client as a Kryten service when ``config.service`` is set (and its
    ``enable_lifecycle`` is true), and delivers group-restart notices to callbacks.

    ``client.lifecycle.set_metadata(key=value)`` adds keys to the ``metadata`` of every
    later startup/heartbeat/shutdown message; ``announce()`` re-publishes startup now.
    """

    def __init__(self, config: KrytenConfig, logger: logging.Logger, metrics: Metrics) -> None:
        self._metrics = metrics  # advertises the health/metrics endpoints
        self._config = config
        self._logger = logger
        service = config.service
        self.service: ServiceConfig | None = (
            service if service is not None and service.enable_lifecycle else None
        )
        self._hostname = socket.gethostname()
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] = {}  # replaced, never mutated (read on the loop)
        self._restart_callbacks: tuple[RestartCallback, ...] = ()
        # Loop-owned state of the current connection.
        self._link: Link | None = None
        self._started = 0.0
        self._heartbeat: asyncio.Task[None] | None = None

    def _require(self) -> Link:
        link = self._link
        if link is None:
            raise NotConnectedError("the client is not connected: call connect() first")
        return link

    # -- user API (any thread) -----------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the user metadata set with :meth:`set_metadata`."""
        return dict(self._metadata)

    @property
    def is_running(self) -> bool:
        """True while connected and announcing a service (kryten-py's name)."""
        return self._link is not None and self.service is not None

    def set_metadata(self, key: str | None = None, value: Any = None, /, **values: Any) -> None:
        """Merge ``values`` (and ``key: value``, kryten-py's form) into the ``metadata``
        of later lifecycle messages.

        Values must be JSON-serialisable (checked here). A user ``endpoints`` key replaces
        the endpoints computed from the health/metrics configuration.
        """
        if key is not None:
            values = {key: value, **values}
        self.update_metadata(values)

    def update_metadata(self, data: dict[str, Any]) -> None:
        """Merge ``data`` into the metadata (kryten-py's form of :meth:`set_metadata`)."""
        encode_payload(dict(data), "set_metadata(): values")  # JSON-serialisable, or raise
        with self._lock:
            self._metadata = {**self._metadata, **data}

    def on_group_restart(self, callback: RestartCallback) -> RestartCallback:
        """Call ``callback(notice)`` on a worker thread for every message on
        ``kryten.lifecycle.group.restart``; ``notice`` is the decoded
        ``{"initiator", "reason", "delay_seconds", "timestamp"}`` dict. Works before and
        after connect; usable as a decorator."""
        check_sync_callable(callback, "group restart callback")
        with self._lock:
            self._restart_callbacks = (*self._restart_callbacks, callback)
        return callback

    def on_restart_notice(self, callback: RestartCallback) -> RestartCallback:
        """kryten-py's name of :meth:`on_group_restart`."""
        return self.on_group_restart(callback)

    def publish_group_restart(self, reason: str, delay_seconds: float = 5) -> None:
        """Ask every Kryten service to restart in ``delay_seconds`` (fire and forget)."""
        where = "publish_group_restart()"
        _validate.require_text(where, "reason", reason, allow_empty=True)
        _validate.require_seconds(where, "delay_seconds", delay_seconds)
        service = self._config.service
        initiator = service.name if service is not None else _DEFAULT_INITIATOR
        notice = restart_notice(initiator, reason, delay_seconds, {})
        self._require().publisher.publish(GROUP_RESTART, encode_payload(notice), None, None)

    def announce(self) -> None:
        """Re-publish the startup message now (e.g. after :meth:`set_metadata`)."""
        if self.service is None:
            raise KrytenValidationError("announce(): no service (or enable_lifecycle=false)")
        link = self._require()

        async def publish() -> None:
            await self._publish(link.nc, "startup")

        link.call(publish(), "lifecycle announce")

    # -- payload ---------------------------------------------------------------------------

    def payload(self, **extra: Any) -> dict[str, Any]:
        """The body of one lifecycle message (docs/protocol.md section 4), plus ``extra`` keys."""
        service = self.service
        assert service is not None
        metadata: dict[str, Any] = {}
        endpoints = self._metrics.endpoints()
        if endpoints:
            metadata["endpoints"] = endpoints
        metadata.update(self._metadata)
        return lifecycle_message(
            service.name,
            service.version,
            self._hostname,
            self._started,
            metadata=metadata,
            extra=extra,
        )

    # -- loop side -------------------------------------------------------------------------

    async def on_open(self, link: Link) -> None:
        nc = link.nc
        self._link = link
        self._started = time.monotonic()
        await nc.subscribe(GROUP_RESTART, cb=self._on_group_restart_msg)
        service = self.service
        if service is not None:
            if service.enable_discovery:
                await nc.subscribe(DISCOVERY_POLL, cb=self._on_discovery_poll)
            await self._publish(nc, "startup")
            if service.enable_heartbeat:
                self._heartbeat = asyncio.get_running_loop().create_task(
                    self._heartbeat_loop(nc, service.heartbeat_interval)
                )

    async def before_close(self, link: Link, reason: str) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._link is not link:
            return
        nc = link.nc
        if self.service is not None and not nc.is_closed:
            await self._publish(nc, "shutdown", reason=reason)

    def after_close(self, link: Link) -> None:
        self._link = None

    async def _heartbeat_loop(self, nc: NATS, interval: float) -> None:
        """Beat now, then every ``interval`` s on a fixed schedule (no drift); skipped
        while reconnecting (nats-py would replay stale beats after the reconnect)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            if nc.is_connected:
                await self._publish(nc, "heartbeat")
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def _publish(self, nc: NATS, event: str, **extra: Any) -> None:
        assert self.service is not None
        subject = lifecycle_subject(self.service.name, event)
        try:
            await nc.publish(subject, encode_payload(self.payload(**extra)))
        except Exception as exc:
            link = self._link
            if link is not None:
                link.log.limited(f"lifecycle-{event}", "could not publish %s: %r", subject, exc)
            else:
                self._logger.warning("could not publish %s: %r", subject, exc)
            return
        self._logger.debug("published %s", subject)

    async def _on_discovery_poll(self, msg: Msg) -> None:
        link = self._link
        if link is not None and self.service is not None:
            await self._publish(link.nc, "startup")

    async def _on_group_restart_msg(self, msg: Msg) -> None:
        link = self._link
        logger = self._logger
        notice = decode_notice(msg.data)
        if notice is None:
            if link is not None:
                link.log.limited(
                    "group-restart-bad",
                    "ignored a group restart notice that is not a JSON object: %r",
                    msg.data[:80],
                )
            return
        logger.info(
            "group restart notice from %s: %s (restart in %s s)",
            notice.get("initiator", "?"),
            notice.get("reason", "?"),
            notice.get("delay_seconds", "?"),
        )
        callbacks = self._restart_callbacks
        if link is None:
            return
        for callback in callbacks:
            if not link.run_job(self._job(callback, dict(notice))):
                link.log.limited(
                    "control-full", "control queue full; a group restart callback was skipped"
                )

    def _job(self, callback: RestartCallback, notice: dict[str, Any]) -> Callable[[], None]:
        logger = self._logger

        def run() -> None:
            try:
                callback(notice)
            except Exception:
                logger.exception(
                    "group restart callback %s raised",
                    getattr(callback, "__qualname__", callback),
                )

        return run
