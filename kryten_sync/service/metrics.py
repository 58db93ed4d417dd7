"""Health and Prometheus metrics over HTTP.

When ``config.metrics`` is set (or ``service.health_port`` / ``service.metrics_port``), a
small threaded HTTP server serves ``/health`` (JSON: 200 while the NATS connection is up
and every user health check passes, 503 otherwise) and ``/metrics`` (Prometheus text
exposition through the optional ``prometheus_client``: ``pip install
'kryten-sync[metrics]'``), from a private ``CollectorRegistry`` per client.

Where each endpoint listens: ``service.health_port``/``health_path`` when set, otherwise
``metrics.port``/``metrics.health_path`` (the same for metrics). Endpoints on the same
port share one listener; ``port: 0`` picks a free port, and the port actually bound is
what the lifecycle messages advertise. The host is ``metrics.host`` (default
``127.0.0.1``, also when only the service ports are configured).

Threads: the listener is bound on the loop thread in the ``after_open`` hook (binding is
instant; a port already in use then fails ``connect()`` in the caller with the reason)
and served by one daemon thread (``kryten-sync-http-N``) that waits on the listening
socket and a wake-up socket, so stopping is immediate and never blocks the loop. Each
request runs on its own short-lived daemon thread (``kryten-sync-http-request-N``) with
a socket timeout. ``before_close`` wakes the listener, which closes its socket, then
waits (within the disconnect deadline) for requests in flight, so a disconnect leaves no
thread or socket behind. If the loop thread dies without a disconnect, the listener
notices within a second and closes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import selectors
import socket
import socketserver
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

from kryten_sync._core.dispatch import check_sync_callable
from kryten_sync.errors import KrytenError, KrytenValidationError
from kryten_sync.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from kryten_sync._core.connection import Connection
    from kryten_sync.client import KrytenClient
    from kryten_sync.config import KrytenConfig

HealthCheck = Callable[[], object]

INSTALL_HINT = "pip install 'kryten-sync[metrics]'"
_REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
_WATCH_INTERVAL = 0.5  # how often the listener checks that the loop thread is alive
_names = itertools.count(1)
_TEXT = "text/plain; charset=utf-8"


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401, PLC0415 - optional dependency
    except ImportError as exc:
        raise ImportError(
            f"the /metrics endpoint needs the prometheus_client package: {INSTALL_HINT}"
        ) from exc


@dataclass(frozen=True)
class Endpoint:
    """One configured endpoint: ``kind`` is ``"health"`` or ``"metrics"``."""

    kind: str
    port: int  # 0: any free port
    path: str


def plan_endpoints(config: KrytenConfig) -> list[Endpoint]:
    """The endpoints to serve: ``service.*_port`` when set, else from ``metrics``."""
    service, metrics = config.service, config.metrics
    found: list[Endpoint] = []
    if service is not None and service.health_port is not None:
        found.append(Endpoint("health", service.health_port, service.health_path))
    elif metrics is not None:
        found.append(Endpoint("health", metrics.port, metrics.health_path))
    if service is not None and service.metrics_port is not None:
        found.append(Endpoint("metrics", service.metrics_port, service.metrics_path))
    elif metrics is not None:
        found.append(Endpoint("metrics", metrics.port, metrics.metrics_path))
    if len(found) == 2 and found[0].port == found[1].port and found[0].path == found[1].path:
        raise KrytenValidationError(
            f"the health and metrics endpoints both use {found[0].path!r} on port "
            f"{found[0].port}: give them different paths"
        )
    return found


# -- the collector -------------------------------------------------------------------------


class ClientCollector:
    """A ``prometheus_client`` collector reading one client's live counters.

    The ``channel`` label is the channel's subject token (``N(channel)``), one series per
    subscription even when two configured names normalise to the same token.
    """

    def __init__(self, client: KrytenClient) -> None:
        self._client = weakref.ref(client)

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        client = self._client()
        return self._families(client._conn if client is not None else None)

    @staticmethod
    def _families(conn: Connection | None) -> Iterator[Metric]:
        from prometheus_client.core import (  # noqa: PLC0415 - optional dependency
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        received = CounterMetricFamily(
            "kryten_sync_events_received",
            "Bridge events received, per channel token and CyTube event name",
            labels=["channel", "event"],
        )
        malformed = CounterMetricFamily(
            "kryten_sync_events_malformed",
            "Malformed event messages skipped, per channel",
            labels=["channel"],
        )
        dropped = CounterMetricFamily(
            "kryten_sync_events_dropped",
            "Event messages dropped by nats-py because handlers fell behind, per channel",
            labels=["channel"],
        )
        pending = GaugeMetricFamily(
            "kryten_sync_events_pending",
            "Events waiting for the channel's handlers",
            labels=["channel"],
        )
        commands = CounterMetricFamily(
            "kryten_sync_commands_sent",
            "Commands published to the bridge, per action",
            labels=["action"],
        )
        histogram = HistogramMetricFamily(
            "kryten_sync_handler_duration_seconds", "Run time of handler calls"
        )
        sent = errors = handler_errors = reconnects = connected = 0
        uptime = 0.0
        if conn is not None:
            for token, source in list(conn.channel_sources.items()):
                stats = source.stats
                # dict.copy() is atomic under the GIL; the worker may be adding a key.
                for event, count in stats.by_event.copy().items():
                    received.add_metric([token, event], count)
                malformed.add_metric([token], stats.malformed)
                dropped.add_metric([token], stats.dropped)
                pending.add_metric([token], source.worker.pending)
            publisher = conn.publisher
            for action, count in publisher.sent_by_tag.copy().items():
                commands.add_metric([action], count)
            sent, errors = publisher.sent, publisher.errors
            handlers = conn.handler_stats()
            handler_errors = handlers.errors
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(
                [*map(repr, LATENCY_BUCKETS), "+Inf"], handlers.buckets, strict=True
            ):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            histogram.add_metric([], buckets, handlers.total_seconds)
            reconnects = conn.reconnects
            connected = int(conn.is_connected)
            uptime = time.monotonic() - conn.connected_at if conn.connected_at else 0.0
        yield from (received, malformed, dropped, pending, commands)
        yield CounterMetricFamily(
            "kryten_sync_messages_published",
            "Messages handed to NATS (commands included)",
            value=sent,
        )
        yield CounterMetricFamily(
            "kryten_sync_publish_errors", "Publishes that failed", value=errors
        )
        yield CounterMetricFamily(
            "kryten_sync_handler_errors", "Handler calls that raised", value=handler_errors
        )
        yield histogram
        yield CounterMetricFamily(
            "kryten_sync_reconnects", "Reconnections to NATS", value=reconnects
        )
        yield GaugeMetricFamily(
            "kryten_sync_connected", "1 while the NATS connection is up", value=connected
        )
        yield GaugeMetricFamily(
            "kryten_sync_uptime_seconds", "Seconds since connecting", value=uptime
        )


# -- HTTP ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _REQUEST_TIMEOUT
    server_version = "kryten-sync"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        owner = self.server.owner
        kind = self.server.routes.get(path)
        try:
            if kind == "health":
                status, ctype, body = owner.health_response()
            elif kind == "metrics":
                status, ctype, body = owner.metrics_response(self.headers.get("Accept", ""))
            else:
                status, ctype, body = 404, _TEXT, b"not found\n"
        except Exception:
            owner.logger.exception("error while serving %s", path)
            status, ctype, body = 500, _TEXT, b"internal error\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.owner.logger.debug("http %s: " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with named, tracked request threads and no reverse DNS."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, routes: dict[str, str], owner: MetricsServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.routes = routes
        self.owner = owner
        self.active: dict[threading.Thread, socket.socket] = {}
        self.active_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # take seconds: this runs on the loop thread.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._handle_one,
            args=(request, client_address),
            name=f"kryten-sync-http-request-{next(_names)}",
            daemon=True,
        )
        with self.active_lock:
            self.active[thread] = request
        thread.start()

    def _handle_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.active_lock:
                self.active.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-response, a timed-out request: not worth a traceback
        # on stderr (the default).
        self.owner.logger.debug("http request from %s failed", client_address, exc_info=True)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])


class _Listener:
    """One bound :class:`_Server` and the daemon thread that accepts its connections."""

    def __init__(self, server: _Server, loop_thread: threading.Thread) -> None:
        self.server = server
        self.port = server.port
        self._loop_thread = loop_thread
        self._wake_r, self._wake_w = socket.socketpair()
        self.thread = threading.Thread(
            target=self._serve, name=f"kryten-sync-http-{next(_names)}", daemon=True
        )

    def _serve(self) -> None:
        server = self.server
        try:
            server.socket.setblocking(False)
            with selectors.DefaultSelector() as selector:
                selector.register(server.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while self._loop_thread.is_alive():
                    ready = selector.select(_WATCH_INTERVAL)
                    if any(key.fileobj is self._wake_r for key, _ in ready):
                        break
                    if ready:
                        self._accept()
        except Exception:
            server.owner.logger.exception("the health/metrics listener failed")
        finally:
            server.server_close()
            self._wake_r.close()
            self._wake_w.close()  # wake() after this is a no-op (OSError suppressed)

    def _accept(self) -> None:
        server = self.server
        try:
            request, address = server.get_request()
        except OSError:  # gone before accept(), or EAGAIN
            return
        try:
            server.process_request(request, address)
        except Exception:
            server.handle_error(request, address)
            server.shutdown_request(request)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def discard(self) -> None:
        """Close everything of a listener whose thread never started."""
        self.server.server_close()
        self._wake_r.close()
        self._wake_w.close()

    async def finish(self, deadline: float) -> bool:
        """After :meth:`wake`: wait for the thread and the requests in flight (loop)."""
        await _join(self.thread, deadline)
        with self.server.active_lock:
            active = list(self.server.active.items())
        for _, request in active:
            # A request still being read gets EOF; a response being written is unaffected.
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RD)
        for thread, _ in active:
            await _join(thread, deadline)
        return not self.thread.is_alive() and not any(t.is_alive() for t, _ in active)


async def _join(thread: threading.Thread, deadline: float) -> None:
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class MetricsServer:
    """Serves ``/health`` and ``/metrics`` while connected, when configured (see the
    module docstring); holds the client's health checks and metrics registry."""

    _STOP_TIMEOUT = 2.0
    if TYPE_CHECKING:
        Registry: TypeAlias = CollectorRegistry  # for annotations in client.py

    def __init__(self, client: KrytenClient) -> None:
        # Weak: the listener thread and the loop hooks must not keep an abandoned client
        # alive.
        self._client_ref = weakref.ref(client)
        self.logger = client.logger
        config = client.config
        self.planned = plan_endpoints(config)
        self.host = config.metrics.host if config.metrics is not None else "127.0.0.1"
        self._lock = threading.Lock()
        self._checks: dict[str, HealthCheck] = {}  # replaced, never mutated
        self._registry: CollectorRegistry | None = None
        self._listeners: list[_Listener] = []  # loop-owned, replaced
        self._bound: dict[str, tuple[int, str]] = {}  # kind -> (port, path), replaced
        if any(e.kind == "metrics" for e in self.planned):
            self.registry  # noqa: B018 - fail at construction if prometheus_client is missing
        if self.planned:
            # First: the lifecycle's startup message advertises the bound ports.
            client._hooks.after_open.insert(0, self._after_open)
            client._hooks.before_close.append(self._before_close)

    @property
    def _client(self) -> KrytenClient:
        client = self._client_ref()
        if client is None:
            raise ReferenceError("the KrytenClient of this server no longer exists")
        return client

    # -- user API (any thread) -----------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        """This client's private registry (the client's own collector is in it); register
        your collectors here to have them served on ``/metrics``."""
        with self._lock:
            if self._registry is None:
                _require_prometheus()
                from prometheus_client import CollectorRegistry  # noqa: PLC0415

                registry = CollectorRegistry(auto_describe=True)
                registry.register(ClientCollector(self._client))
                self._registry = registry
            return self._registry

    def add_health_check(self, name: str, check: HealthCheck) -> HealthCheck:
        """Show ``check()`` under ``checks[name]`` in ``/health``.

        ``check`` returns a bool, or a dict shown as is that fails when its ``"healthy"``
        value is false; raising also fails it. A failing check makes ``/health`` answer
        503. It runs on the HTTP request's thread (keep it quick). Adding a check under
        an existing name replaces it.
        """
        if not isinstance(name, str) or not name.strip():
            raise KrytenValidationError("add_health_check(): name must be a non-empty string")
        check_sync_callable(check, "health check")
        with self._lock:
            self._checks = {**self._checks, name: check}
        return check

    def remove_health_check(self, name: str) -> None:
        with self._lock:
            self._checks = {k: v for k, v in self._checks.items() if k != name}

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """``{"health": {"port", "path"}, "metrics": {...}}`` as advertised: the bound
        ports once serving, else the configured ones (a free-port endpoint not yet bound
        is left out)."""
        if self._bound:
            return {
                kind: {"port": port, "path": path} for kind, (port, path) in self._bound.items()
            }
        return {e.kind: {"port": e.port, "path": e.path} for e in self.planned if e.port}

    def url(self, kind: str) -> str | None:
        """``http://host:port/path`` of the ``"health"`` or ``"metrics"`` endpoint while
        serving, else None."""
        bound = self._bound.get(kind)
        if bound is None or not self._listeners:
            return None
        return f"http://{_url_host(self.host)}:{bound[0]}{bound[1]}"

    # -- responses (request threads) -------------------------------------------------------

    def health_status(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, body)`` of ``/health``: ``client.health().to_dict()`` with
        ``status`` and the user checks."""
        client = self._client
        healthy = client.is_connected
        data = client.health().to_dict()
        checks: dict[str, Any] = {}
        for name, check in self._checks.items():
            try:
                result = check()
            except Exception as exc:
                checks[name] = {"healthy": False, "error": f"{type(exc).__name__}: {exc}"}
                healthy = False
                continue
            if isinstance(result, dict):
                ok = bool(result.get("healthy", True))
                checks[name] = {**result, "healthy": ok}
            else:
                ok = bool(result)
                checks[name] = {"healthy": ok}
            healthy = healthy and ok
        body: dict[str, Any] = {"status": "healthy" if healthy else "unhealthy"}
        service = client.config.service
        if service is not None:
            body["service"] = service.name
            body["version"] = service.version
        body.update(data)
        if checks:
            body["checks"] = checks
        return healthy, body

    def health_response(self) -> tuple[int, str, bytes]:
        healthy, body = self.health_status()
        payload = json.dumps(body, default=str, ensure_ascii=False).encode("utf-8")
        return (200 if healthy else 503), "application/json", payload

    def metrics_response(self, accept: str) -> tuple[int, str, bytes]:
        from prometheus_client.exposition import choose_encoder  # noqa: PLC0415

        encoder, content_type = choose_encoder(accept)
        return 200, content_type, encoder(self.registry)

    # -- hooks (loop thread) -----------------------------------------------------------------

    async def _after_open(self, conn: Connection) -> None:
        routes: dict[int, dict[str, str]] = {}
        for endpoint in self.planned:
            routes.setdefault(endpoint.port, {})[endpoint.path] = endpoint.kind
        listeners: list[_Listener] = []
        try:
            for port, paths in routes.items():
                try:
                    server = _Server(self.host, port, paths, self)
                except OSError as exc:
                    where = f"{self.host}:{port}"
                    raise KrytenError(
                        f"cannot serve {' and '.join(paths)} on {where}: {exc.strerror or exc}"
                    ) from exc
                listeners.append(_Listener(server, conn.loop.thread))
        except BaseException:
            for listener in listeners:
                listener.discard()
            raise
        bound: dict[str, tuple[int, str]] = {}
        for listener in listeners:
            for path, kind in listener.server.routes.items():
                bound[kind] = (listener.port, path)
            listener.start()
        self._bound = bound
        self._listeners = listeners
        for kind in bound:
            self.logger.info("serving %s on %s", kind, self.url(kind))

    async def _before_close(self, conn: Connection, reason: str) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.wake()
        deadline = time.monotonic() + self._STOP_TIMEOUT
        for listener in listeners:
            if not await listener.finish(deadline):
                self.logger.warning("health/metrics requests still running at disconnect")
