"""kryten-py's standalone health/metrics HTTP servers, blocking.

:class:`BaseMetricsServer` serves ``GET /health`` (JSON; 200 when healthy, 503 when
degraded, 500 when building it failed) and ``GET /metrics`` (Prometheus text, written by
hand as kryten-py does: no ``prometheus_client`` needed) on ``host:port``, through the
HTTP listener of :mod:`.metrics` (a daemon thread, one short-lived thread per request,
no reverse DNS, bounded stop). Subclasses supply ``_collect_custom_metrics()`` and
``_get_health_details()`` as plain methods; :class:`SimpleMetricsServer` takes them as
callbacks.

This is separate from the client's own ``/health`` and ``/metrics`` (``config.metrics``):
use it for a service's own figures, as kryten-py services do. ``client`` is any object
with ``is_connected`` (a :class:`~kryten_sync.KrytenClient`), read for ``nats_connected``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from kryten_sync._core.workers import check_sync_callable
from kryten_sync.errors import KrytenError

from .metrics import Listener

_TEXT = "text/plain; version=0.0.4"
_JSON = "application/json; charset=utf-8"
_STOP_TIMEOUT = 2.0


class BaseMetricsServer(ABC):
    """``/health`` and ``/metrics`` for one service (see the module docstring).

    ``port=0`` picks a free port (:attr:`bound_port` says which). ``host`` is kryten-py's
    ``0.0.0.0`` (every interface) unless given.
    """

    def __init__(
        self,
        service_name: str,
        port: int = 8080,
        client: Any = None,
        logger: logging.Logger | None = None,
        *,
        host: str = "0.0.0.0",  # kryten-py binds every interface: scraped from other hosts
    ) -> None:
        self.service_name = service_name
        self.port = port
        self.client = client
        self.logger = logger or logging.getLogger(__name__)
        self.host = host
        self.start_time = time.time()
        self._running = False
        self._lock = threading.Lock()
        self._listener: Listener | None = None

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on while running (``port`` may be 0), else None."""
        listener = self._listener
        return listener.port if listener is not None else None

    # -- start / stop --------------------------------------------------------------------

    def start(self) -> None:
        """Listen and serve; raises KrytenError if the port cannot be bound."""
        with self._lock:
            if self._listener is not None:
                return
            routes = {"/health": "health", "/metrics": "metrics"}
            try:
                listener = Listener(self.host, self.port, routes, self, None)
            except OSError as exc:
                raise KrytenError(
                    f"cannot serve /health and /metrics on {self.host}:{self.port}: "
                    f"{exc.strerror or exc}"
                ) from exc
            self._listener = listener
            listener.thread.start()
            self._running = True
        self.logger.info("Metrics server listening on port %s", listener.port)

    def stop(self) -> None:
        """Stop serving and wait (up to 2 s) for requests in flight (idempotent)."""
        with self._lock:
            self._running = False
            listener, self._listener = self._listener, None
        if listener is None:
            return
        if not listener.close(time.monotonic() + _STOP_TIMEOUT):
            self.logger.warning("metrics server requests still running after stop")
        self.logger.info("Metrics server stopped")

    # -- responses (request threads) ---------------------------------------------------------

    def health_response(self) -> tuple[int, str, bytes]:
        try:
            health = self._build_health_response()
            body = json.dumps(health).encode("utf-8")
        except Exception as exc:
            self.logger.error("Error in health check: %s", exc, exc_info=True)
            body = json.dumps({"status": "error", "error": str(exc)}).encode("utf-8")
            return 500, _JSON, body
        return (200 if health.get("status") == "healthy" else 503), _JSON, body

    def metrics_response(self, accept: str) -> tuple[int, str, bytes]:
        try:
            return 200, _TEXT, self._collect_all_metrics().encode("utf-8")
        except Exception as exc:
            self.logger.error("Error collecting metrics: %s", exc, exc_info=True)
            return 500, _TEXT, b"# Error collecting metrics\n"

    def _nats_connected(self) -> bool:
        try:
            return bool(getattr(self.client, "is_connected", False))
        except Exception:
            return False

    def _build_health_response(self) -> dict[str, Any]:
        """``{"service", "status", "uptime_seconds", "nats_connected"}`` plus the custom
        details; ``status`` is "degraded" while the client is not connected."""
        health: dict[str, Any] = {
            "service": self.service_name,
            "status": "healthy",
            "uptime_seconds": round(time.time() - self.start_time, 2),
            "nats_connected": self._nats_connected() if self.client is not None else False,
        }
        try:
            health.update(self._get_health_details())
        except Exception as exc:
            health["custom_health_error"] = str(exc)
        if not health.get("nats_connected"):
            health["status"] = "degraded"
        return health

    def _collect_all_metrics(self) -> str:
        """Uptime, service status and (with a client) NATS connection gauges, then the
        custom lines."""
        prefix = self.service_name.replace("-", "_")
        lines = [
            f"# HELP {prefix}_uptime_seconds Service uptime in seconds",
            f"# TYPE {prefix}_uptime_seconds gauge",
            f"{prefix}_uptime_seconds {time.time() - self.start_time:.2f}",
            "",
            f"# HELP {prefix}_service_status Service health status (1=healthy, 0=unhealthy)",
            f"# TYPE {prefix}_service_status gauge",
            f"{prefix}_service_status {1 if self._running else 0}",
            "",
        ]
        if self.client is not None:
            lines += [
                f"# HELP {prefix}_nats_connected NATS connection status "
                "(1=connected, 0=disconnected)",
                f"# TYPE {prefix}_nats_connected gauge",
                f"{prefix}_nats_connected {1 if self._nats_connected() else 0}",
                "",
            ]
        try:
            lines.extend(self._collect_custom_metrics())
        except Exception as exc:
            lines.append(f"# Error collecting custom metrics: {exc}")
        return "\n".join(lines)

    @abstractmethod
    def _collect_custom_metrics(self) -> list[str]:
        """This service's metric lines in Prometheus text format."""

    @abstractmethod
    def _get_health_details(self) -> dict[str, Any]:
        """Keys to add to the ``/health`` body."""


class SimpleMetricsServer(BaseMetricsServer):
    """A :class:`BaseMetricsServer` whose custom metrics and health details come from
    ``metrics_callback()`` and ``health_callback()`` (plain functions)."""

    def __init__(  # noqa: PLR0917 - kryten-py's positional signature
        self,
        service_name: str,
        port: int = 8080,
        client: Any = None,
        logger: logging.Logger | None = None,
        metrics_callback: Callable[[], list[str]] | None = None,
        health_callback: Callable[[], dict[str, Any]] | None = None,
        *,
        host: str = "0.0.0.0",
    ) -> None:
        super().__init__(service_name, port, client, logger, host=host)
        for name, callback in (("metrics", metrics_callback), ("health", health_callback)):
            if callback is not None:
                check_sync_callable(callback, f"{name}_callback")
        self._metrics_callback = metrics_callback
        self._health_callback = health_callback

    def _collect_custom_metrics(self) -> list[str]:
        callback = self._metrics_callback
        return list(callback()) if callback is not None else []

    def _get_health_details(self) -> dict[str, Any]:
        callback = self._health_callback
        return dict(callback()) if callback is not None else {}


__all__ = ["BaseMetricsServer", "SimpleMetricsServer"]
