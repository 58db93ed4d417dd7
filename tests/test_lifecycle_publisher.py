"""kryten-py's LifecycleEventPublisher over a KrytenClient, against a real nats-server.

An independent nats-py tap (tests.test_service_lifecycle.Tap) records what went over the
wire: subjects, exact keys (docs/protocol.md section 4), timestamps with an explicit UTC
offset, heartbeats, discovery answers and group restart notices.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kryten_sync import KrytenClient, KrytenValidationError, LifecycleEventPublisher
from kryten_sync.subjects import DISCOVERY_POLL, GROUP_RESTART
from tests._helpers import kryten_threads, make_config, wait_until
from tests._nats import AsyncNats, NatsServer
from tests.test_service_lifecycle import BASE_KEYS, Tap, assert_utc_timestamp

LOG = logging.getLogger("test.lifecycle")


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with KrytenClient(make_config(shared_server.url)) as c:
        yield c


@pytest.fixture
def tap(shared_server: NatsServer) -> Iterator[Callable[..., Tap]]:
    taps: list[Tap] = []

    def make(*subjects: str) -> Tap:
        t = Tap(shared_server.url, *(subjects or ("kryten.lifecycle.>",)))
        taps.append(t)
        return t

    yield make
    for t in taps:
        t.close()


@pytest.fixture
def publishers() -> Iterator[list[LifecycleEventPublisher]]:
    made: list[LifecycleEventPublisher] = []
    yield made
    for p in made:
        p.stop()


def check_base(body: dict[str, Any], service: str, version: str) -> None:
    assert body["service"] == service
    assert body["version"] == version
    assert body["hostname"] == socket.gethostname()
    assert_utc_timestamp(body["timestamp"])
    assert isinstance(body["uptime_seconds"], int | float) and body["uptime_seconds"] >= 0


def test_each_publish_method_sends_the_protocols_message(
    client: KrytenClient, tap: Callable[..., Tap]
) -> None:
    t = tap()
    life = LifecycleEventPublisher("Example Bot", client, LOG, version="1.0.0")
    life.publish_startup(config_version="1.0", features=["chat", "moderation"])
    life.publish_heartbeat(load=0.5)
    life.publish_connected("NATS")
    life.publish_disconnected("CyTube", reason="User shutdown")
    life.publish_disconnected("db")
    life.publish_shutdown(reason="User requested shutdown", code=3)
    life.publish_shutdown()

    prefix = "kryten.lifecycle.example-bot"
    startup = t.wait(f"{prefix}.startup")[0]
    assert set(startup) == BASE_KEYS | {"config_version", "features"}
    assert startup["features"] == ["chat", "moderation"]
    assert startup["uptime_seconds"] == 0.0  # not started
    heartbeat = t.wait(f"{prefix}.heartbeat")[0]
    assert set(heartbeat) == BASE_KEYS | {"load"}
    connected = t.wait(f"{prefix}.connected")[0]
    assert set(connected) == BASE_KEYS | {"target"} and connected["target"] == "NATS"
    first, second = t.wait(f"{prefix}.disconnected", 2)
    assert (first["target"], first["reason"]) == ("CyTube", "User shutdown")
    assert (second["target"], second["reason"]) == ("db", "Unknown")
    a, b = t.wait(f"{prefix}.shutdown", 2)
    assert set(a) == BASE_KEYS | {"reason", "code"} and a["reason"] == "User requested shutdown"
    assert b["reason"] == "Normal shutdown"
    for body in (startup, heartbeat, connected, first, second, a, b):
        check_base(body, "example-bot", "1.0.0")


def test_metadata_and_endpoints(client: KrytenClient, tap: Callable[..., Tap]) -> None:
    t = tap()
    life = LifecycleEventPublisher("meta", client, LOG, health_port=8080, metrics_port=9090)
    life.set_metadata("role", "dj")
    life.update_metadata({"shards": [1, 2], "role": "mod"})
    life.publish_startup()
    life.set_endpoints(health_port=28282)  # one port for both in kryten-py's example
    life.set_endpoints()  # nothing given: nothing changes
    life.publish_heartbeat()
    startup = t.wait("kryten.lifecycle.meta.startup")[0]
    assert startup["metadata"] == {
        "endpoints": {
            "health": {"port": 8080, "path": "/health"},
            "metrics": {"port": 9090, "path": "/metrics"},
        },
        "role": "mod",
        "shards": [1, 2],
    }
    heartbeat = t.wait("kryten.lifecycle.meta.heartbeat")[0]
    assert heartbeat["metadata"]["endpoints"] == {"health": {"port": 28282, "path": "/health"}}
    with pytest.raises(KrytenValidationError, match="metadata"):
        life.set_metadata("bad", object())
    with pytest.raises(KrytenValidationError):
        life.update_metadata({"nan": float("nan")})


def test_metadata_is_left_out_when_empty(client: KrytenClient, tap: Callable[..., Tap]) -> None:
    t = tap()
    LifecycleEventPublisher("bare", client, LOG).publish_startup()
    assert set(t.wait("kryten.lifecycle.bare.startup")[0]) == BASE_KEYS


def test_group_restart_notice(client: KrytenClient, tap: Callable[..., Tap]) -> None:
    t = tap(GROUP_RESTART)
    life = LifecycleEventPublisher("dj", client, LOG)
    life.publish_group_restart("Configuration update")
    life.publish_group_restart("Deploy", 30, "admin", ticket="T-1")
    first, second = t.wait(GROUP_RESTART, 2)
    assert set(first) == {"initiator", "reason", "delay_seconds", "timestamp"}
    assert (first["initiator"], first["reason"], first["delay_seconds"]) == (
        "dj",
        "Configuration update",
        5,
    )
    assert second == {**second, "initiator": "admin", "delay_seconds": 30, "ticket": "T-1"}
    for body in (first, second):
        assert_utc_timestamp(body["timestamp"])


def test_extra_keys_cannot_replace_the_protocols_own(
    client: KrytenClient, tap: Callable[..., Tap], caplog: pytest.LogCaptureFixture
) -> None:
    t = tap("kryten.lifecycle.>")
    life = LifecycleEventPublisher("strict", client, LOG)
    life.publish_startup(timestamp="2024-01-01T00:00:00")  # naive: would break the bridge
    life.publish_group_restart("x", timestamp="now")
    life.publish_heartbeat(unserialisable=object())
    life.publish_startup()
    t.wait("kryten.lifecycle.strict.startup")
    client.flush()
    assert len(t.bodies("kryten.lifecycle.strict.startup")) == 1
    assert t.bodies(GROUP_RESTART) == [] and t.bodies("kryten.lifecycle.strict.heartbeat") == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Failed to publish startup event" in m and "timestamp" in m for m in errors)
    assert any("Failed to publish restart notice" in m for m in errors)
    assert any("Failed to publish heartbeat event" in m for m in errors)


def test_start_heartbeats_discovery_and_restart_notices(
    shared_server: NatsServer,
    client: KrytenClient,
    tap: Callable[..., Tap],
    publishers: list[LifecycleEventPublisher],
) -> None:
    t = tap()
    notices: list[tuple[dict[str, Any], str]] = []
    life = LifecycleEventPublisher("beat", client, LOG, heartbeat_interval=0.2)
    publishers.append(life)
    life.on_restart_notice(lambda n: notices.append((n, threading.current_thread().name)))
    assert not life.is_running
    life.start()
    assert life.is_running
    started = time.monotonic()
    beats = t.wait("kryten.lifecycle.beat.heartbeat", 3, timeout=3)
    elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 2.5, elapsed
    assert beats[-1]["uptime_seconds"] > beats[0]["uptime_seconds"] > 0
    assert t.bodies("kryten.lifecycle.beat.startup") == [], "start() announces nothing"

    with AsyncNats(shared_server.url) as nc:
        nc.publish(DISCOVERY_POLL, b"{}")
        t.wait("kryten.lifecycle.beat.startup")
        notice = {"initiator": "ops", "reason": "upgrade", "delay_seconds": 7, "timestamp": "t"}
        nc.publish(GROUP_RESTART, json.dumps(notice).encode())
        wait_until(lambda: len(notices) == 1, 5, "the restart callback")
    assert notices[0][0] == notice
    assert notices[0][1].startswith("kryten-sync-"), "the callback runs on a worker thread"

    life.stop()
    assert not life.is_running
    time.sleep(0.1)
    count = len(t.bodies("kryten.lifecycle.beat.heartbeat"))
    with AsyncNats(shared_server.url) as nc:
        nc.publish(DISCOVERY_POLL, b"{}")
        nc.publish(GROUP_RESTART, json.dumps(notice).encode())
    time.sleep(0.5)
    client.flush()
    assert len(t.bodies("kryten.lifecycle.beat.heartbeat")) == count
    assert len(t.bodies("kryten.lifecycle.beat.startup")) == 1
    assert len(notices) == 1
    life.stop()  # idempotent


def test_without_heartbeat_or_discovery(
    shared_server: NatsServer,
    client: KrytenClient,
    tap: Callable[..., Tap],
    publishers: list[LifecycleEventPublisher],
) -> None:
    t = tap()
    life = LifecycleEventPublisher(
        "quiet", client, LOG, heartbeat_interval=0.1, enable_heartbeat=False, enable_discovery=False
    )
    publishers.append(life)
    threads = kryten_threads()
    life.start()
    with AsyncNats(shared_server.url) as nc:
        nc.publish(DISCOVERY_POLL, b"{}")
    time.sleep(0.4)
    client.flush()
    assert t.messages == []
    assert not any("heartbeat" in th.name for th in kryten_threads() - threads)


def test_bad_notices_and_failing_callbacks_are_logged(
    shared_server: NatsServer,
    client: KrytenClient,
    publishers: list[LifecycleEventPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[dict[str, Any]] = []

    def callback(notice: dict[str, Any]) -> None:
        calls.append(notice)
        raise RuntimeError("cannot restart now")

    life = LifecycleEventPublisher("careful", client, LOG, enable_heartbeat=False)
    publishers.append(life)
    life.on_restart_notice(callback)
    life.start()
    life.start()  # a second start only warns
    with AsyncNats(shared_server.url) as nc:
        nc.publish(GROUP_RESTART, b"not json")
        nc.publish(GROUP_RESTART, b"[1, 2]")
        nc.publish(GROUP_RESTART, b'{"reason": "r"}')
    wait_until(lambda: "Error in restart callback" in caplog.text, 5, "the callback error")
    assert calls == [{"reason": "r"}]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Invalid restart notice JSON" in m for m in messages) == 2
    assert "Lifecycle event publisher already running" in messages
    assert any("notice received from unknown: r (restarting in 5s)" in m for m in messages)


def test_publishing_on_a_closed_client_logs_instead_of_raising(
    shared_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    c = KrytenClient(make_config(shared_server.url))
    life = LifecycleEventPublisher("gone", c, LOG)
    life.publish_startup()
    life.publish_group_restart("r")
    life.start()  # the subscriptions fail: logged
    life.stop()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(m.startswith("Failed to publish startup event") for m in messages), messages
    assert any(m.startswith("Failed to publish restart notice") for m in messages), messages
    assert any(m.startswith("Failed to subscribe to restart notices") for m in messages)


def test_arguments_are_checked() -> None:
    with pytest.raises(KrytenValidationError):
        LifecycleEventPublisher("a b*", None, LOG)  # type: ignore[arg-type]
    with pytest.raises(KrytenValidationError, match="heartbeat_interval"):
        LifecycleEventPublisher("svc", None, LOG, heartbeat_interval=0)  # type: ignore[arg-type]

    async def coroutine(notice: dict[str, Any]) -> None: ...

    life = LifecycleEventPublisher("svc", None, LOG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async"):
        life.on_restart_notice(coroutine)
