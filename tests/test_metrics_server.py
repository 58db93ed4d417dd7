"""kryten-py's BaseMetricsServer / SimpleMetricsServer, over real HTTP."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kryten_sync import (
    BaseMetricsServer,
    KrytenClient,
    KrytenError,
    SimpleMetricsServer,
)
from tests._helpers import kryten_threads, make_config, wait_until
from tests._nats import NatsServer


def get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def base(server: BaseMetricsServer) -> str:
    return f"http://127.0.0.1:{server.bound_port}"


@pytest.fixture
def servers() -> Iterator[list[BaseMetricsServer]]:
    made: list[BaseMetricsServer] = []
    yield made
    for server in made:
        server.stop()


def start(servers: list[BaseMetricsServer], server: BaseMetricsServer) -> BaseMetricsServer:
    servers.append(server)
    server.start()
    return server


def test_health_and_metrics_with_a_connected_client(
    shared_server: NatsServer, servers: list[BaseMetricsServer]
) -> None:
    with KrytenClient(make_config(shared_server.url)) as client:
        server = start(
            servers,
            SimpleMetricsServer(
                "my-service",
                0,
                client,
                metrics_callback=lambda: ["# TYPE my_service_items counter", "my_service_items 42"],
                health_callback=lambda: {"database": "connected"},
                host="127.0.0.1",
            ),
        )
        status, ctype, body = get(base(server) + "/health")
        assert (status, ctype) == (200, "application/json; charset=utf-8")
        health = json.loads(body)
        assert health == {
            "service": "my-service",
            "status": "healthy",
            "uptime_seconds": health["uptime_seconds"],
            "nats_connected": True,
            "database": "connected",
        }
        assert isinstance(health["uptime_seconds"], float)
        status, ctype, body = get(base(server) + "/metrics")
        assert (status, ctype) == (200, "text/plain; version=0.0.4")
        lines = body.decode().splitlines()
        assert "my_service_service_status 1" in lines
        assert "my_service_nats_connected 1" in lines
        assert lines[-2:] == ["# TYPE my_service_items counter", "my_service_items 42"]
        assert any(line.startswith("my_service_uptime_seconds ") for line in lines)
        status, _, head = get(base(server) + "/metrics", "HEAD")
        assert (status, head) == (200, b"")
    # The client is gone: degraded, 503.
    status, _, body = get(base(server) + "/health")
    assert status == 503 and json.loads(body)["status"] == "degraded"
    assert "my_service_nats_connected 0" in get(base(server) + "/metrics")[2].decode()


def test_without_a_client(servers: list[BaseMetricsServer]) -> None:
    server = start(servers, SimpleMetricsServer("solo", 0, host="127.0.0.1"))
    status, _, body = get(base(server) + "/health")
    assert status == 503
    assert json.loads(body)["nats_connected"] is False
    metrics = get(base(server) + "/metrics")[2].decode()
    assert "nats_connected" not in metrics
    assert get(base(server) + "/other")[0] == 404


def test_failures_answer_as_kryten_py_does(servers: list[BaseMetricsServer]) -> None:
    def broken() -> Any:
        raise RuntimeError("db down")

    server = start(
        servers,
        SimpleMetricsServer(
            "svc", 0, metrics_callback=broken, health_callback=broken, host="127.0.0.1"
        ),
    )
    health = json.loads(get(base(server) + "/health")[2])
    assert health["custom_health_error"] == "db down"
    assert (
        get(base(server) + "/metrics")[2]
        .decode()
        .endswith("# Error collecting custom metrics: db down")
    )

    class Broken(BaseMetricsServer):
        def _collect_custom_metrics(self) -> list[str]:
            return []

        def _get_health_details(self) -> dict[str, Any]:
            return {"when": object()}  # not JSON

        def _collect_all_metrics(self) -> str:
            raise RuntimeError("boom")

    broken_server = start(servers, Broken("b", 0, host="127.0.0.1"))
    status, _, body = get(base(broken_server) + "/health")
    assert status == 500 and json.loads(body)["status"] == "error"
    assert get(base(broken_server) + "/metrics")[:3:2] == (500, b"# Error collecting metrics\n")


def test_subclass_and_stop(servers: list[BaseMetricsServer]) -> None:
    class Counting(BaseMetricsServer):
        def __init__(self) -> None:
            super().__init__("counting", port=0, host="127.0.0.1")
            self.requests = 0

        def _collect_custom_metrics(self) -> list[str]:
            self.requests += 1
            return [f"counting_requests {self.requests}"]

        def _get_health_details(self) -> dict[str, Any]:
            return {"requests": self.requests}

    with pytest.raises(TypeError):
        BaseMetricsServer("abstract")  # type: ignore[abstract]
    before = kryten_threads()
    server = Counting()
    server.start()
    server.start()  # idempotent
    port = server.bound_port
    assert port
    assert "counting_requests 1" in get(base(server) + "/metrics")[2].decode()
    assert json.loads(get(base(server) + "/health")[2])["requests"] == 1
    server.stop()
    server.stop()
    assert server.bound_port is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    wait_until(lambda: kryten_threads() <= before, 5, "the listener threads to end")
    assert "counting_service_status 0" in server._collect_all_metrics()


def test_a_port_in_use_is_a_clear_error(servers: list[BaseMetricsServer]) -> None:
    first = start(servers, SimpleMetricsServer("a", 0, host="127.0.0.1"))
    second = SimpleMetricsServer("b", first.bound_port or 1, host="127.0.0.1")
    with pytest.raises(KrytenError, match=f"127.0.0.1:{first.bound_port}"):
        second.start()


def test_kryten_pys_defaults() -> None:
    server = SimpleMetricsServer("svc")
    assert (server.port, server.host, server.client) == (8080, "0.0.0.0", None)
    assert server.bound_port is None

    async def coroutine() -> list[str]:
        return []

    with pytest.raises(TypeError, match="async"):
        SimpleMetricsServer("svc", metrics_callback=coroutine)  # type: ignore[arg-type]
