"""The /health and /metrics HTTP endpoints against a real nats-server.

Requests are real HTTP (urllib) to the port the client bound; events are injected by
publishing bridge envelopes (tests/bridge_format.py) from an independent nats-py
connection; ``/metrics`` is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from kryten_sync import KrytenClient, KrytenError, KrytenValidationError
from kryten_sync.stats import LATENCY_BUCKETS
from tests import bridge_format as bf
from tests._helpers import kryten_threads, make_config, wait_until
from tests._nats import NatsServer, free_port
from tests.test_service_lifecycle import Tap


def get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET, also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def health(client: KrytenClient) -> tuple[int, dict[str, Any]]:
    assert client.health_url is not None
    status, ctype, body = get(client.health_url)
    assert ctype == "application/json"
    return status, json.loads(body)


def scrape(client: KrytenClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of ``/metrics``."""
    assert client.metrics_url is not None
    status, ctype, body = get(client.metrics_url)
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def one(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def tap(shared_server: NatsServer) -> Iterator[Tap]:
    t = Tap(shared_server.url, "kryten.commands.>")
    yield t
    t.close()


# -- /health -----------------------------------------------------------------------------


def test_health_follows_the_nats_connection(nats_server: NatsServer) -> None:
    cfg = make_config(
        nats_server.url,
        service={"name": "probe", "enable_heartbeat": False},
        nats={"servers": [nats_server.url], "reconnect_time_wait": 0.1},
        metrics={"port": 0, "serve": True},
    )
    with KrytenClient(cfg) as client:
        status, body = health(client)
        assert status == 200
        assert body["status"] == "healthy" and body["connected"] is True
        assert body["service"] == "probe" and body["state"] == "connected"
        assert [c["channel"] for c in body["channels"]] == ["lounge"]
        assert set(client.health().to_dict()) <= set(body)

        nats_server.stop()
        wait_until(lambda: health(client)[0] == 503, 5.0, "/health to answer 503")
        status, body = health(client)
        assert body["status"] == "unhealthy" and body["connected"] is False
        assert body["state"] == "reconnecting"

        nats_server.start()
        wait_until(lambda: health(client)[0] == 200, 10.0, "/health to answer 200 again")
        assert health(client)[1]["reconnects"] == 1
        assert one(scrape(client), "kryten_sync_reconnects_total") == 1
        assert one(scrape(client), "kryten_sync_connected") == 1
        url = client.health_url
        assert url is not None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_health_checks(shared_server: NatsServer) -> None:
    state = {"db": True}
    with KrytenClient(make_config(shared_server.url, metrics={"port": 0, "serve": True})) as client:
        client.add_health_check("db", lambda: state["db"])
        client.add_health_check("queue", lambda: {"healthy": True, "lag": 3})
        status, body = health(client)
        assert status == 200
        assert body["checks"] == {"db": {"healthy": True}, "queue": {"healthy": True, "lag": 3}}
        assert "service" not in body

        state["db"] = False
        status, body = health(client)
        assert status == 503 and body["status"] == "unhealthy"
        assert body["connected"] is True and body["checks"]["db"] == {"healthy": False}

        state["db"] = True

        def broken() -> bool:
            raise RuntimeError("disk on fire")

        client.add_health_check("disk", broken)
        client.add_health_check("queue", lambda: {"healthy": False, "lag": 900})
        status, body = health(client)
        assert status == 503
        assert body["checks"]["disk"] == {"healthy": False, "error": "RuntimeError: disk on fire"}
        assert body["checks"]["queue"] == {"healthy": False, "lag": 900}

        with pytest.raises(KrytenValidationError):
            client.add_health_check("", lambda: True)
        base = client.health_url
        assert base is not None
        status, _, _ = get(base.replace("/health", "/nope"))
        assert status == 404


# -- /metrics ----------------------------------------------------------------------------


def test_metrics_counters_after_events_and_commands(shared_server: NatsServer, tap: Tap) -> None:
    seen: list[str] = []

    def on_chat(event: Any) -> None:
        seen.append(event.message)
        if event.message == "boom":
            raise ValueError("handler bug")

    cfg = make_config(shared_server.url, metrics={"port": 0, "serve": True})
    cfg["channels"].append({"domain": "cytu.be", "channel": "Other-Room"})
    with KrytenClient(cfg) as client:
        client.on("chatMsg", handler=on_chat)
        client.flush()  # the server has the subscriptions: none of the events is missed
        for msg in ("a", "boom", "c"):
            tap.publish(
                bf.subject("lounge", "chatMsg"), bf.envelope("chatMsg", {**bf.CHAT_MSG, "msg": msg})
            )
        tap.publish(bf.subject("lounge", "addUser"), bf.envelope("addUser", bf.ADD_USER))
        tap.publish(bf.subject("lounge", "chatMsg"), b"not json")
        tap.publish(
            bf.subject("Other-Room", "usercount"), bf.envelope("usercount", 5, channel="Other-Room")
        )
        client.send_chat("lounge", "one")
        client.send_chat("lounge", "two")
        client.queue_media("lounge", "yt", "dQw4w9WgXcQ")
        client.publish("custom.subject", {"x": 1})
        client.flush()
        wait_until(
            lambda: len(seen) == 3 and client.health().events_received == 5,
            10.0,
            f"events to be handled (seen {seen}, health {client.health()})",
        )
        tap.wait("kryten.commands.cytube.lounge.queue")

        samples = scrape(client)

    received = "kryten_sync_events_received_total"
    assert one(samples, received, channel="lounge", event="chatMsg") == 3
    assert one(samples, received, channel="lounge", event="addUser") == 1
    assert one(samples, received, channel="other-room", event="usercount") == 1
    assert one(samples, "kryten_sync_events_malformed_total", channel="lounge") == 1
    assert one(samples, "kryten_sync_events_malformed_total", channel="other-room") == 0
    assert one(samples, "kryten_sync_events_dropped_total", channel="lounge") == 0
    assert one(samples, "kryten_sync_events_pending", channel="lounge") == 0
    assert one(samples, "kryten_sync_commands_sent_total", action="chat") == 2
    assert one(samples, "kryten_sync_commands_sent_total", action="queue") == 1
    assert one(samples, "kryten_sync_messages_published_total") == 4
    assert one(samples, "kryten_sync_publish_errors_total") == 0
    assert one(samples, "kryten_sync_handler_errors_total") == 1
    assert one(samples, "kryten_sync_reconnects_total") == 0
    assert one(samples, "kryten_sync_connected") == 1
    assert 0 < one(samples, "kryten_sync_uptime_seconds") < 60

    hist = "kryten_sync_handler_duration_seconds"
    assert one(samples, f"{hist}_count") == 3
    assert 0 < one(samples, f"{hist}_sum") < 1
    buckets = [one(samples, f"{hist}_bucket", le=le) for le in [*map(str, LATENCY_BUCKETS), "+Inf"]]
    assert buckets == sorted(buckets) and buckets[-1] == 3


def test_private_registries_and_user_collectors(shared_server: NatsServer) -> None:
    a = KrytenClient(make_config(shared_server.url, metrics={"port": 0, "serve": True}))
    b = KrytenClient(make_config(shared_server.url, metrics={"port": 0, "serve": True}))
    assert a.metrics_registry is not b.metrics_registry
    jobs = Counter("mybot_jobs", "Jobs done", registry=a.metrics_registry)
    with a, b:
        jobs.inc(3)
        assert a.metrics_url != b.metrics_url
        mine, theirs = scrape(a), scrape(b)
    assert one(mine, "mybot_jobs_total") == 3
    assert ("mybot_jobs_total", ()) not in theirs
    assert one(theirs, "kryten_sync_connected") == 1
    # The client's own names are taken in its registry.
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("kryten_sync_reconnects", "clash", registry=a.metrics_registry)


def test_openmetrics_on_request(shared_server: NatsServer) -> None:
    with KrytenClient(make_config(shared_server.url, metrics={"port": 0, "serve": True})) as client:
        assert client.metrics_url is not None
        req = urllib.request.Request(
            client.metrics_url, headers={"Accept": "application/openmetrics-text"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert resp.read().decode().rstrip().endswith("# EOF")


# -- listening and stopping --------------------------------------------------------------


def test_separate_ports_from_service_config(shared_server: NatsServer) -> None:
    health_port, metrics_port = free_port(), free_port()
    service = {
        "name": "split",
        "health_port": health_port,
        "metrics_port": metrics_port,
        "metrics_path": "/prom",
        "enable_heartbeat": False,
    }
    cfg = make_config(shared_server.url, service=service, metrics={"serve": True})
    with KrytenClient(cfg) as client:
        assert client.metrics_url == f"http://127.0.0.1:{metrics_port}/prom"
        assert get(f"http://127.0.0.1:{health_port}/health")[0] == 200
        assert get(f"http://127.0.0.1:{metrics_port}/prom")[0] == 200
        assert get(f"http://127.0.0.1:{health_port}/prom")[0] == 404
        assert get(f"http://127.0.0.1:{metrics_port}/health")[0] == 404


def test_disconnect_leaves_no_thread_or_socket(shared_server: NatsServer) -> None:
    cfg = make_config(
        shared_server.url,
        service={"name": "tidy", "heartbeat_interval": 0.05},
        metrics={"port": 0, "serve": True},
    )
    with KrytenClient(cfg) as warm:  # imports and first-use allocations
        scrape(warm)
    before_threads = kryten_threads()
    before_fds = len(os.listdir("/proc/self/fd"))
    client = KrytenClient(cfg)
    client.connect()
    url = client.health_url
    assert url is not None
    port = urlsplit(url).port
    assert port is not None
    # Requests in flight at disconnect: one idle connection that never sends a request,
    # and a few scrapes running from other threads.
    idle = socket.create_connection(("127.0.0.1", port))
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            try:
                get(url, timeout=2)
            except OSError:
                return

    scrapers = [threading.Thread(target=scraper, daemon=True) for _ in range(3)]
    for s in scrapers:
        s.start()
    wait_until(
        lambda: any(t.name.startswith("kryten-sync-http-request") for t in kryten_threads()),
        2.0,
        "a request thread",
    )
    started = time.monotonic()
    client.disconnect()
    assert time.monotonic() - started < 2.0
    stop.set()
    for s in scrapers:
        s.join(5)
    idle.close()
    wait_until(lambda: not (kryten_threads() - before_threads), 1.0, "client threads to end")
    wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before_fds, 2.0, "sockets to be closed")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_listener_closes_itself_when_the_loop_dies(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url, metrics={"port": 0, "serve": True}))
    client.connect()
    try:
        assert client._conn is not None and client.health_url is not None
        port = urlsplit(client.health_url).port
        assert port is not None
        listener = [t for t in threading.enumerate() if t.name.startswith("kryten-sync-http-")]

        def die() -> None:
            raise SystemExit("injected")

        client._conn.loop.call_soon(die)
        for thread in listener:
            thread.join(2.0)
            assert not thread.is_alive()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        client.disconnect(timeout=1.0)


def test_port_in_use_fails_connect_with_reason(shared_server: NatsServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = make_config(shared_server.url, metrics={"port": port, "serve": True})
        client = KrytenClient(cfg)
        with pytest.raises(KrytenError, match=rf"127\.0\.0\.1:{port}.*in use") as info:
            client.connect()
        assert isinstance(info.value.__cause__, OSError)
        assert not client.is_connected


def test_config_errors_at_construction(shared_server: NatsServer) -> None:
    with pytest.raises(KrytenValidationError, match="different paths"):
        KrytenClient(
            make_config(
                shared_server.url,
                metrics={"port": 0, "health_path": "/x", "metrics_path": "/x", "serve": True},
            )
        )
    with pytest.raises(KrytenValidationError, match="no port is configured"):
        KrytenClient(make_config(shared_server.url, metrics={"serve": True}))
    # Without any endpoint configured nothing listens and the URLs are None.
    with KrytenClient(make_config(shared_server.url, service={"name": "nohttp"})) as client:
        assert client.health_url is None and client.metrics_url is None


def test_metrics_section_alone_binds_nothing_and_needs_no_prometheus(
    shared_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kryten-py's behaviour: the section names the bot's own endpoints, which the bot may
    # serve itself on that very port; they are only advertised.
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = make_config(shared_server.url, service={"name": "own-server"}, metrics={"port": port})
        t = Tap(shared_server.url, "kryten.lifecycle.own-server.startup")
        try:
            with KrytenClient(cfg) as client:
                assert client.health_url is None and client.metrics_url is None
                startup = t.wait("kryten.lifecycle.own-server.startup")[0]
        finally:
            t.close()
    assert startup["metadata"]["endpoints"] == {
        "health": {"port": port, "path": "/health"},
        "metrics": {"port": port, "path": "/metrics"},
    }


def test_missing_prometheus_client_names_the_extra(
    shared_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'kryten-sync\[metrics\]'"):
        KrytenClient(make_config(shared_server.url, metrics={"port": 0, "serve": True}))
    # A health endpoint alone does not need it.
    cfg = make_config(
        shared_server.url,
        service={"name": "h", "health_port": free_port()},
        metrics={"serve": True},
    )
    with KrytenClient(cfg) as client:
        assert client.metrics_url is None
        assert health(client)[0] == 200
