"""Health and Prometheus metrics over HTTP.

With ``metrics.serve: true``, a small threaded HTTP server serves ``/health`` (JSON: 200
while the NATS connection is up and every user health check passes, 503 otherwise) and
``/metrics`` (Prometheus text exposition through the optional ``prometheus_client``:
``pip install 'kryten-sync[metrics]'``), from a private ``CollectorRegistry`` per client.
Without it (kryten-py's behaviour) the configured endpoints are only advertised in the
lifecycle messages: nothing is bound and prometheus_client is not needed, so a bot that
serves that port itself (its own server, reading ``client.health()`` and
``client.metrics_registry``) shares it without conflict.

Where each endpoint listens: ``service.health_port``/``health_path`` when set, otherwise
``metrics.port``/``metrics.health_path`` (the same for metrics). Endpoints on the same
port share one listener; ``port: 0`` picks a free port, and the port actually bound is
what the lifecycle messages advertise. The host is ``metrics.host`` (default
``127.0.0.1``, also when only the service ports are configured).

Threads: each listener is bound on the loop thread in ``on_open`` (binding is instant;
a port already in use then fails ``connect()`` in the caller with the reason) and served
by the standard library's ``serve_forever`` on a daemon thread (``kryten-sync-http-N``);
each request runs on its own short-lived daemon thread with a socket timeout.
``before_close`` shuts the listener down and waits (within a bound) for requests in
flight, so a disconnect leaves no thread or socket behind. If the loop thread dies
without a disconnect, the serve loop notices within half a second and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias
from urllib.parse import urlsplit

from kryten_sync._core.dispatch import Dispatcher
from kryten_sync._core.feature import Feature, Link
from kryten_sync._core.workers import check_sync_callable
from kryten_sync.errors import KrytenConnectionError, KrytenValidationError
from kryten_sync.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    import logging

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from kryten_sync.config import KrytenConfig

HealthCheck = Callable[[], object]

INSTALL_HINT = "pip install 'kryten-sync[metrics]'"
_REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
_POLL_INTERVAL = 0.5  # how often the serve loop checks for shutdown and a dead loop
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
    port = metrics.port if metrics is not None else None
    found: list[Endpoint] = []
    if service is not None and service.health_port is not None:
        found.append(Endpoint("health", service.health_port, service.health_path))
    elif metrics is not None and port is not None:
        found.append(Endpoint("health", port, metrics.health_path))
    if service is not None and service.metrics_port is not None:
        found.append(Endpoint("metrics", service.metrics_port, service.metrics_path))
    elif metrics is not None and port is not None:
        found.append(Endpoint("metrics", port, metrics.metrics_path))
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

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return self._families(None, self._metrics.dispatcher)

    def collect(self) -> Iterator[Metric]:
        return self._families(self._metrics.link, self._metrics.dispatcher)

    @staticmethod
    def _families(conn: Link | None, dispatcher: Dispatcher) -> Iterator[Metric]:
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
        redelivered, skipped, duplicates = (
            CounterMetricFamily(f"kryten_sync_events_{name}", text, labels=["channel"])
            for name, text in (
                ("redelivered", "Durable events delivered again after a failed delivery"),
                ("skipped", "Durable events skipped after failing on every delivery"),
                ("duplicate", "Durable events dropped as repeats (same correlation id)"),
            )
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
        lost = commands_lost = unconfirmed = buffered = 0
        uptime = disconnected = 0.0
        if conn is not None:
            for token, source in list(dispatcher.channel_sources.items()):
                stats = source.stats
                # dict.copy() is atomic under the GIL; the worker may be adding a key.
                for event, count in stats.by_event.copy().items():
                    received.add_metric([token, event], count)
                malformed.add_metric([token], stats.malformed)
                dropped.add_metric([token], stats.dropped)
                pending.add_metric([token], source.worker.pending)
                redelivered.add_metric([token], stats.redelivered)
                skipped.add_metric([token], stats.skipped)
                duplicates.add_metric([token], stats.duplicates)
            publisher = conn.publisher
            for action, count in publisher.sent_by_tag.copy().items():
                commands.add_metric([action], count)
            sent, errors = publisher.sent, publisher.errors
            lost, commands_lost = publisher.lost, publisher.commands_lost
            unconfirmed, buffered = publisher.unconfirmed, publisher.buffered
            disconnected = conn.disconnected_seconds
            handlers = dispatcher.handler_stats(conn)
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
        yield from (received, malformed, dropped, pending, redelivered, skipped, duplicates)
        yield commands
        yield CounterMetricFamily(
            "kryten_sync_messages_published",
            "Messages handed to NATS (commands included)",
            value=sent,
        )
        yield CounterMetricFamily(
            "kryten_sync_publish_errors",
            "Publish and command calls that raised (one per call, retries included)",
            value=errors,
        )
        yield CounterMetricFamily(
            "kryten_sync_messages_lost",
            "Accepted messages never sent (closed or gave up while disconnected, or "
            "refused); each went to the on_lost hook",
            value=lost,
        )
        yield CounterMetricFamily(
            "kryten_sync_commands_lost", "Accepted commands never sent", value=commands_lost
        )
        yield CounterMetricFamily(
            "kryten_sync_messages_unconfirmed",
            "Messages written to a connection that dropped before the server confirmed "
            "them (may be lost)",
            value=unconfirmed,
        )
        yield GaugeMetricFamily(
            "kryten_sync_messages_buffered",
            "Accepted messages waiting for the connection",
            value=buffered,
        )
        yield CounterMetricFamily(
            "kryten_sync_disconnected_seconds",
            "Time spent disconnected from NATS (events published meanwhile are missed)",
            value=disconnected,
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


class Responder(Protocol):
    """What a :class:`Listener` serves: the two responses, as ``(status, type, body)``."""

    logger: logging.Logger

    def health_response(self) -> tuple[int, str, bytes]: ...

    def metrics_response(self, accept: str) -> tuple[int, str, bytes]: ...


class _Handler(BaseHTTPRequestHandler):
    server: Listener
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


class Listener(ThreadingHTTPServer):
    """ThreadingHTTPServer with tracked request threads, no reverse DNS, and a serve loop
    that stops by itself when ``loop_thread`` (the client's loop thread) dies.

    ``routes`` maps a path to the kind it serves (``"health"`` or ``"metrics"``) from
    ``owner``. Serving starts with ``thread.start()``; stop with :meth:`stop` on a loop,
    or :meth:`close` from a plain thread.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        host: str,
        port: int,
        routes: dict[str, str],
        owner: Responder,
        loop_thread: threading.Thread | None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.routes = routes
        self.owner = owner
        self.loop_thread = loop_thread
        self.active: dict[threading.Thread, socket.socket] = {}
        self.active_lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._serve, name=f"kryten-sync-http-{next(_names)}", daemon=True
        )
        self._abandoned = False
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # take seconds: this runs on the loop thread.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    def _serve(self) -> None:
        try:
            self.serve_forever(_POLL_INTERVAL)
        except Exception:
            self.owner.logger.exception("the health/metrics listener failed")
        finally:
            self.server_close()

    def service_actions(self) -> None:
        # Runs in the serve loop: a client whose loop died is never closed normally.
        loop_thread = self.loop_thread
        if loop_thread is not None and not loop_thread.is_alive() and not self._abandoned:
            self._abandoned = True
            threading.Thread(target=self.shutdown, daemon=True).start()

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

    def _stopping(self) -> Iterator[threading.Thread]:
        """Stop serving, yielding each thread to wait for before going on: the serve
        loop, then the requests in flight."""
        if self.thread.is_alive():
            # shutdown() blocks until the serve loop notices: not on the caller's thread,
            # which may be a loop thread.
            threading.Thread(target=self.shutdown, daemon=True).start()
            yield self.thread
        else:
            self.server_close()
        with self.active_lock:
            active = list(self.active.items())
        for _, request in active:
            # A request still being read gets EOF; a response being written is unaffected.
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RD)
        for thread, _ in active:
            yield thread

    async def stop(self, deadline: float) -> bool:
        """Stop serving and wait for the requests in flight (loop thread, bounded);
        whether everything ended."""
        waited = [thread for thread in self._stopping() if not await _join(thread, deadline)]
        return not waited

    def close(self, deadline: float) -> bool:
        """:meth:`stop` from a plain thread (blocking, bounded)."""
        waited = []
        for thread in self._stopping():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                waited.append(thread)
        return not waited


async def _join(thread: threading.Thread, deadline: float) -> bool:
    """Wait (on a loop) until ``thread`` ends or ``deadline``; whether it ended."""
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return not thread.is_alive()


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Metrics(Feature):
    """The health/metrics feature: serves ``/health`` and ``/metrics`` while connected,
    when ``metrics.serve`` is true (see the module docstring); holds the client's health checks and
    metrics registry. Plug it in before the lifecycle feature: the startup message
    advertises the ports bound here."""

    _STOP_TIMEOUT = 2.0
    if TYPE_CHECKING:
        Registry: TypeAlias = CollectorRegistry  # for annotations in client.py

    def __init__(
        self, config: KrytenConfig, logger: logging.Logger, dispatcher: Dispatcher
    ) -> None:
        self.config = config
        self.logger = logger
        self.dispatcher = dispatcher
        self.planned = plan_endpoints(config)
        self.serving = config.metrics is not None and config.metrics.serve
        if self.serving and not self.planned:
            raise KrytenValidationError(
                "metrics.serve is true but no port is configured: set metrics.port, or "
                "service.health_port / service.metrics_port"
            )
        self.host = config.metrics.host if config.metrics is not None else "127.0.0.1"
        self._lock = threading.Lock()
        self._checks: dict[str, HealthCheck] = {}  # replaced, never mutated
        self._registry: CollectorRegistry | None = None
        self.link: Link | None = None  # the current connection
        self._servers: list[Listener] = []  # loop-owned, replaced
        self._bound: dict[str, tuple[int, str]] = {}  # kind -> (port, path), replaced
        if self.serving and any(e.kind == "metrics" for e in self.planned):
            self.registry  # noqa: B018 - fail at construction if prometheus_client is missing

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
                registry.register(ClientCollector(self))
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
        if bound is None or not self._servers:
            return None
        return f"http://{_url_host(self.host)}:{bound[0]}{bound[1]}"

    # -- responses (request threads) -------------------------------------------------------

    def health_status(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, body)`` of ``/health``: ``client.health().to_dict()`` with
        ``status`` and the user checks."""
        link = self.link
        healthy = link is not None and link.is_connected
        data = self.dispatcher.health(link).to_dict()
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
        service = self.config.service
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

    # -- feature hooks (loop thread) -------------------------------------------------------

    async def on_open(self, link: Link) -> None:
        self.link = link
        if not self.serving:
            return
        routes: dict[int, dict[str, str]] = {}
        for endpoint in self.planned:
            routes.setdefault(endpoint.port, {})[endpoint.path] = endpoint.kind
        servers: list[Listener] = []
        try:
            for port, paths in routes.items():
                try:
                    servers.append(Listener(self.host, port, paths, self, link.loop_thread))
                except OSError as exc:
                    where = f"{self.host}:{port}"
                    raise KrytenConnectionError(
                        f"cannot serve {' and '.join(paths)} on {where}: {exc.strerror or exc}"
                    ) from exc
        except BaseException:
            for server in servers:
                server.server_close()
            raise
        self._bound = {
            kind: (server.port, path) for server in servers for path, kind in server.routes.items()
        }
        self._servers = servers
        for server in servers:
            server.thread.start()
        for kind in self._bound:
            self.logger.info("serving %s on %s", kind, self.url(kind))

    async def before_close(self, link: Link, reason: str) -> None:
        servers, self._servers = self._servers, []
        deadline = time.monotonic() + self._STOP_TIMEOUT
        for server in servers:
            if not await server.stop(deadline):
                self.logger.warning("health/metrics requests still running at disconnect")

    def after_close(self, link: Link) -> None:
        self.link = None
