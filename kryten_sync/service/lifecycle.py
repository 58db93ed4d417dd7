"""Service lifecycle: startup, heartbeat, shutdown, discovery, group restart (PROTOCOL.md §4).

Everything that touches NATS runs on the connection's loop thread, from the hooks the
client runs after connecting (``after_open``) and before draining (``before_close``):

- after connecting: subscribe ``kryten.lifecycle.group.restart`` (always, so
  :meth:`ServiceLifecycle.on_group_restart` works before and after connect, with or
  without a service) and, for a service, ``kryten.service.discovery.poll``; publish
  ``kryten.lifecycle.{service}.startup``; start the heartbeat task, whose first beat goes
  out right after the startup message (``connect()`` then flushes, so it returns once
  the server has every subscription);
- before draining: stop the heartbeat and publish ``.shutdown`` with the reason. The drain
  that follows flushes it, so every way of closing (``disconnect()``, the interpreter-exit
  hook, ``run()`` ended by a signal) announces the shutdown.

Group-restart callbacks are user code: they run on the connection's control worker
thread, never on the loop. The loop-side subscription callbacks run no user code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kryten_sync._core.dispatch import check_sync_callable
from kryten_sync.errors import KrytenValidationError
from kryten_sync.subjects import DISCOVERY_POLL, GROUP_RESTART, lifecycle_subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

    from kryten_sync._core.connection import Connection
    from kryten_sync.client import KrytenClient
    from kryten_sync.config import ServiceConfig

RestartCallback = Callable[[dict[str, Any]], None]

_DEFAULT_INITIATOR = "kryten-sync"


def _now() -> str:
    """ISO-8601 UTC with an explicit offset (``...+00:00``), as PROTOCOL.md §4 demands."""
    return datetime.now(UTC).isoformat()


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class ServiceLifecycle:
    """Announces the client as a Kryten service when ``config.service`` is set (and its
    ``enable_lifecycle`` is true), and delivers group-restart notices to callbacks.

    ``client.lifecycle.set_metadata(key=value)`` adds keys to the ``metadata`` of every
    later startup/heartbeat/shutdown message; ``announce()`` re-publishes startup now.
    """

    def __init__(self, client: KrytenClient) -> None:
        # Weak: the loop (hooks, subscriptions, the heartbeat task) must not keep an
        # abandoned client alive.
        self._client_ref = weakref.ref(client)
        # The metrics server holds the client weakly too; keeping it lets a shutdown
        # message be built after an abandoned client was collected.
        self._metrics = client._metrics_server
        self._config = client.config
        self._logger = client.logger
        service = client.config.service
        self.service: ServiceConfig | None = (
            service if service is not None and service.enable_lifecycle else None
        )
        self._hostname = socket.gethostname()
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] = {}  # replaced, never mutated (read on the loop)
        self._restart_callbacks: tuple[RestartCallback, ...] = ()
        # Loop-owned state of the current connection.
        self._conn: Connection | None = None
        self._started = 0.0
        self._heartbeat: asyncio.Task[None] | None = None
        client._hooks.after_open.append(self._after_open)
        client._hooks.before_close.append(self._before_close)

    @property
    def _client(self) -> KrytenClient:
        client = self._client_ref()
        if client is None:
            raise ReferenceError("the KrytenClient of this lifecycle no longer exists")
        return client

    # -- user API (any thread) -----------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the user metadata set with :meth:`set_metadata`."""
        return dict(self._metadata)

    def set_metadata(self, **values: Any) -> None:
        """Merge ``values`` into the ``metadata`` of later lifecycle messages.

        Values must be JSON-serialisable (checked here). A user ``endpoints`` key replaces
        the endpoints computed from the health/metrics configuration.
        """
        try:
            json.dumps(values)
        except (TypeError, ValueError) as exc:
            raise KrytenValidationError(
                f"set_metadata(): values must be JSON-serialisable ({exc})"
            ) from None
        with self._lock:
            self._metadata = {**self._metadata, **values}

    def on_group_restart(self, callback: RestartCallback) -> RestartCallback:
        """Call ``callback(notice)`` on a worker thread for every message on
        ``kryten.lifecycle.group.restart``; ``notice`` is the decoded
        ``{"initiator", "reason", "delay_seconds", "timestamp"}`` dict. Works before and
        after connect; usable as a decorator."""
        check_sync_callable(callback, "group restart callback")
        with self._lock:
            self._restart_callbacks = (*self._restart_callbacks, callback)
        return callback

    def publish_group_restart(self, reason: str, delay_seconds: float = 5) -> None:
        """Ask every Kryten service to restart in ``delay_seconds`` (fire and forget)."""
        if not isinstance(reason, str):
            raise KrytenValidationError(
                f"publish_group_restart(): reason must be a string, got {type(reason).__name__}"
            )
        if (
            isinstance(delay_seconds, bool)
            or not isinstance(delay_seconds, int | float)
            or not math.isfinite(delay_seconds)
            or delay_seconds < 0
        ):
            raise KrytenValidationError(
                "publish_group_restart(): delay_seconds must be a finite number >= 0, "
                f"got {delay_seconds!r}"
            )
        service = self._config.service
        notice = {
            "initiator": service.name if service is not None else _DEFAULT_INITIATOR,
            "reason": reason,
            "delay_seconds": delay_seconds,
            "timestamp": _now(),
        }
        self._client.publish(GROUP_RESTART, notice)

    def announce(self) -> None:
        """Re-publish the startup message now (e.g. after :meth:`set_metadata`)."""
        if self.service is None:
            raise KrytenValidationError("announce(): no service (or enable_lifecycle=false)")
        conn = self._client._require()

        async def publish() -> None:
            assert conn.nc is not None
            await self._publish(conn.nc, "startup")

        conn.call(publish(), "lifecycle announce")

    # -- payload ---------------------------------------------------------------------------

    def payload(self, **extra: Any) -> dict[str, Any]:
        """The body of one lifecycle message (PROTOCOL.md §4), plus ``extra`` keys."""
        service = self.service
        assert service is not None
        body: dict[str, Any] = {
            "service": service.name,
            "version": service.version,
            "hostname": self._hostname,
            "timestamp": _now(),
            "uptime_seconds": round(time.monotonic() - self._started, 3) if self._started else 0.0,
        }
        metadata: dict[str, Any] = {}
        endpoints = self._metrics.endpoints()
        if endpoints:
            metadata["endpoints"] = endpoints
        metadata.update(self._metadata)
        if metadata:
            body["metadata"] = metadata
        body.update(extra)
        return body

    # -- loop side -------------------------------------------------------------------------

    async def _after_open(self, conn: Connection) -> None:
        nc = conn.nc
        assert nc is not None
        self._conn = conn
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

    async def _before_close(self, conn: Connection, reason: str) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not conn:
            return
        self._conn = None
        nc = conn.nc
        if self.service is not None and nc is not None and not nc.is_closed:
            await self._publish(nc, "shutdown", reason=reason)

    async def _heartbeat_loop(self, nc: NATS, interval: float) -> None:
        """Beat now, then every ``interval`` s on a fixed schedule (no drift); skipped
        while reconnecting (nats-py would replay stale beats after the reconnect)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._client_ref() is not None:
            if nc.is_connected:
                await self._publish(nc, "heartbeat")
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def _publish(self, nc: NATS, event: str, **extra: Any) -> None:
        assert self.service is not None
        subject = lifecycle_subject(self.service.name, event)
        try:
            await nc.publish(subject, _encode(self.payload(**extra)))
        except Exception as exc:
            conn = self._conn
            logger = self._logger
            if conn is not None:
                conn.log.limited(f"lifecycle-{event}", "could not publish %s: %r", subject, exc)
            else:
                logger.warning("could not publish %s: %r", subject, exc)
            return
        self._logger.debug("published %s", subject)

    async def _on_discovery_poll(self, msg: Msg) -> None:
        nc = self._conn.nc if self._conn is not None else None
        if nc is not None and self.service is not None:
            await self._publish(nc, "startup")

    async def _on_group_restart_msg(self, msg: Msg) -> None:
        conn = self._conn
        logger = self._logger
        try:
            notice = json.loads(msg.data)
        except ValueError:
            notice = None
        if not isinstance(notice, dict):
            if conn is not None:
                conn.log.limited(
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
        if conn is None or conn.control is None:
            return
        for callback in callbacks:
            if not conn.control.put_nowait(self._job(callback, dict(notice))):
                conn.log.limited(
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
