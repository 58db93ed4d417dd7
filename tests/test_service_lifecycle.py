"""Service lifecycle messages (PROTOCOL.md section 4) against a real nats-server.

An independent nats-py subscriber (its own connection on its own thread) taps
``kryten.lifecycle.>`` and ``kryten.service.>``, so every assertion is about what really
went over the wire: subjects, exact payload keys, explicit-offset timestamps, heartbeat
timing, discovery re-announces, group-restart notices, and the shutdown message on
disconnect, on interpreter exit without disconnect, and on SIGTERM to ``run()``.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime as dt
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from nats.aio.msg import Msg

from kryten_sync import KrytenClient, KrytenValidationError
from kryten_sync.subjects import DISCOVERY_POLL, GROUP_RESTART
from tests._helpers import kryten_threads, make_config, wait_until
from tests._nats import AsyncNats, NatsServer, env_with_repo, free_port

BASE_KEYS = {"service", "version", "hostname", "timestamp", "uptime_seconds"}


def assert_utc_timestamp(text: object) -> None:
    assert isinstance(text, str), text
    parsed = dt.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), f"timestamp without a UTC offset: {text!r}"
    assert text.endswith(("+00:00", "Z")), text
    assert abs((parsed - dt.now(parsed.tzinfo)).total_seconds()) < 60


class Tap(AsyncNats):
    """Records ``(subject, decoded body, monotonic arrival time)`` of what it subscribes."""

    def __init__(self, url: str, *subjects: str) -> None:
        self._cond = threading.Condition()
        self.messages: list[tuple[str, Any, float]] = []
        super().__init__(url, connect_timeout=5, max_reconnect_attempts=0)
        self.subscribe(*subjects, cb=self._record)

    def _record(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = msg.data
        with self._cond:
            self.messages.append((msg.subject, body, time.monotonic()))
            self._cond.notify_all()

    def of(self, subj: str) -> list[tuple[Any, float]]:
        with self._cond:
            return [(body, at) for s, body, at in self.messages if s == subj]

    def bodies(self, subj: str) -> list[Any]:
        return [body for body, _ in self.of(subj)]

    def wait(self, subj: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := [b for s, b, _ in self.messages if s == subj]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [s for s, _, _ in self.messages]
                    raise AssertionError(f"{count} x {subj} not seen in {timeout} s; got {seen}")
                self._cond.wait(remaining)
        return found


@pytest.fixture
def tap(shared_server: NatsServer) -> Iterator[Callable[..., Tap]]:
    taps: list[Tap] = []

    def make(*subjects: str, url: str | None = None) -> Tap:
        t = Tap(url or shared_server.url, *(subjects or ("kryten.lifecycle.>",)))
        taps.append(t)
        return t

    yield make
    for t in taps:
        t.close()


# -- startup, heartbeat, shutdown --------------------------------------------------------


def test_startup_heartbeats_shutdown_exact_payloads(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    before = kryten_threads()
    t = tap()
    service = {"name": "DJ Bot", "version": "2.3.4", "heartbeat_interval": 0.2}
    client = KrytenClient(
        make_config(shared_server.url, service=service, metrics={"port": 0, "serve": True})
    )
    client.lifecycle.set_metadata(role="dj", shards=[1, 2])
    client.connect()
    try:
        url = client.health_url
        assert url is not None
        port = urlsplit(url).port
        assert port and port != 0
        startup = t.wait("kryten.lifecycle.dj-bot.startup")[0]
        t.wait("kryten.lifecycle.dj-bot.heartbeat", 4, timeout=3.0)
    finally:
        client.disconnect("Maintenance window")
    shutdown = t.wait("kryten.lifecycle.dj-bot.shutdown")[0]

    endpoints = {
        "health": {"port": port, "path": "/health"},
        "metrics": {"port": port, "path": "/metrics"},
    }
    for body in (startup, shutdown, *t.bodies("kryten.lifecycle.dj-bot.heartbeat")):
        expected_keys = BASE_KEYS | {"metadata"} | ({"reason"} if body is shutdown else set())
        assert set(body) == expected_keys, body
        assert body["service"] == "dj-bot"
        assert body["version"] == "2.3.4"
        assert body["hostname"] == socket.gethostname()
        assert_utc_timestamp(body["timestamp"])
        assert isinstance(body["uptime_seconds"], int | float) and body["uptime_seconds"] >= 0
        assert body["metadata"] == {"endpoints": endpoints, "role": "dj", "shards": [1, 2]}
    assert shutdown["reason"] == "Maintenance window"

    # Timing: first beat promptly after startup, then about one interval apart.
    (_, started_at) = t.of("kryten.lifecycle.dj-bot.startup")[0]
    beats = t.of("kryten.lifecycle.dj-bot.heartbeat")
    assert beats[0][1] - started_at < 0.3, "first heartbeat came a whole interval late"
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(beats)]
    assert all(0.1 < gap < 0.45 for gap in gaps), gaps
    uptimes = [b["uptime_seconds"] for b, _ in beats]
    assert uptimes == sorted(uptimes) and uptimes[-1] > uptimes[0]
    assert t.bodies("kryten.lifecycle.dj-bot.shutdown")[0]["uptime_seconds"] >= uptimes[-1]

    # Heartbeats stop with the connection; nothing of the client is left running.
    count = len(beats)
    time.sleep(0.5)
    assert len(t.of("kryten.lifecycle.dj-bot.heartbeat")) == count
    assert [s for s, _, _ in t.messages][-1] == "kryten.lifecycle.dj-bot.shutdown"
    wait_until(lambda: not (kryten_threads() - before), 1.0, "client threads to end")
    assert client.health_url is None


def test_no_metadata_key_no_heartbeat_when_disabled(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    t = tap()
    service = {"name": "quiet", "enable_heartbeat": False, "heartbeat_interval": 0.05}
    with KrytenClient(make_config(shared_server.url, service=service)):
        startup = t.wait("kryten.lifecycle.quiet.startup")[0]
        time.sleep(0.3)
    shutdown = t.wait("kryten.lifecycle.quiet.shutdown")[0]
    assert set(startup) == BASE_KEYS, startup
    assert set(shutdown) == BASE_KEYS | {"reason"}
    assert shutdown["reason"] == "Normal shutdown"
    assert t.of("kryten.lifecycle.quiet.heartbeat") == []


def test_lifecycle_disabled_or_no_service_publishes_nothing(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    t = tap()
    off = {"name": "off", "enable_lifecycle": False}
    with KrytenClient(make_config(shared_server.url, service=off)) as a:
        with KrytenClient(make_config(shared_server.url)) as b:
            a.flush()
            b.flush()
            t.publish(DISCOVERY_POLL, b"{}")
            time.sleep(0.2)
    time.sleep(0.1)
    assert t.messages == []


def test_service_endpoints_from_service_ports(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    health_port, metrics_port = free_port(), free_port()
    service = {
        "name": "ports",
        "health_port": health_port,
        "health_path": "/healthz",
        "metrics_port": metrics_port,
        "enable_heartbeat": False,
    }
    t = tap()
    cfg = make_config(shared_server.url, service=service, metrics={"serve": True})
    with KrytenClient(cfg) as client:
        startup = t.wait("kryten.lifecycle.ports.startup")[0]
        assert client.health_url == f"http://127.0.0.1:{health_port}/healthz"
        assert client.metrics_url == f"http://127.0.0.1:{metrics_port}/metrics"
    assert startup["metadata"] == {
        "endpoints": {
            "health": {"port": health_port, "path": "/healthz"},
            "metrics": {"port": metrics_port, "path": "/metrics"},
        }
    }


# -- discovery ---------------------------------------------------------------------------


def test_discovery_poll_reannounces_startup(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    t = tap()
    on = {"name": "finder", "enable_heartbeat": False}
    off = {"name": "hidden", "enable_heartbeat": False, "enable_discovery": False}
    with KrytenClient(make_config(shared_server.url, service=on)) as a:
        with KrytenClient(make_config(shared_server.url, service=off)) as b:
            t.wait("kryten.lifecycle.finder.startup")
            t.wait("kryten.lifecycle.hidden.startup")
            a.flush()
            b.flush()
            t.publish(DISCOVERY_POLL, b'{"from": "test"}')
            second = t.wait("kryten.lifecycle.finder.startup", 2)[1]
            t.publish(DISCOVERY_POLL, b"")
            t.wait("kryten.lifecycle.finder.startup", 3)
            # Metadata set after connect is in the next message; announce() sends one now.
            a.lifecycle.set_metadata(shard=2)
            a.lifecycle.announce()
            fourth = t.wait("kryten.lifecycle.finder.startup", 4)[3]
            time.sleep(0.2)
            assert len(t.of("kryten.lifecycle.hidden.startup")) == 1
    assert set(second) == BASE_KEYS
    assert fourth["metadata"] == {"shard": 2}
    assert_utc_timestamp(second["timestamp"])


# -- group restart -----------------------------------------------------------------------


def test_group_restart_callbacks_run_on_worker_thread(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    t = tap(GROUP_RESTART)
    got: list[tuple[str, dict[str, Any], threading.Thread]] = []
    lock = threading.Lock()

    def record(tag: str) -> Callable[[dict[str, Any]], None]:
        def callback(notice: dict[str, Any]) -> None:
            with lock:
                got.append((tag, notice, threading.current_thread()))

        return callback

    def broken(notice: dict[str, Any]) -> None:
        raise RuntimeError("callback bug")

    service = {"name": "boss", "enable_heartbeat": False}
    client = KrytenClient(make_config(shared_server.url, service=service))
    client.on_group_restart(broken)
    client.on_group_restart(record("before-connect"))
    with client, KrytenClient(make_config(shared_server.url)) as plain:
        client.on_group_restart(record("after-connect"))
        assert client._conn is not None
        loop_thread = client._conn.loop.thread

        client.publish_group_restart("config update", delay_seconds=7)
        wait_until(lambda: len(got) == 2, 3.0, "both callbacks")
        # Bad input from another producer is skipped; later notices still arrive.
        t.publish(GROUP_RESTART, b"not json")
        t.publish(GROUP_RESTART, b"[1, 2]")
        plain.publish_group_restart("from a plain client")
        wait_until(lambda: len(got) == 4, 3.0, "the second notice")

    wire = t.wait(GROUP_RESTART, 4)
    assert set(wire[0]) == {"initiator", "reason", "delay_seconds", "timestamp"}
    assert wire[0]["initiator"] == "boss" and wire[0]["delay_seconds"] == 7
    assert wire[3]["initiator"] == "kryten-sync" and wire[3]["delay_seconds"] == 5
    tags = [tag for tag, _, _ in got]
    assert tags == ["before-connect", "after-connect"] * 2, tags
    first, second = got[0][1], got[2][1]
    assert first == wire[0]
    assert first["reason"] == "config update"
    assert_utc_timestamp(first["timestamp"])
    assert second["initiator"] == "kryten-sync" and second["reason"] == "from a plain client"
    for _, _, thread in got:
        assert thread is not loop_thread
        assert thread is not threading.main_thread()
        assert thread.name.startswith("kryten-sync-control"), thread.name


def test_lifecycle_api_validation(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url, service={"name": "v"}))

    async def async_callback(notice: dict[str, Any]) -> None:
        pass

    with pytest.raises(TypeError, match="async"):
        client.on_group_restart(async_callback)  # type: ignore[arg-type]
    with pytest.raises(KrytenValidationError, match="JSON"):
        client.lifecycle.set_metadata(bad=object())
    with pytest.raises(KrytenValidationError):
        client.publish_group_restart("x", delay_seconds=-1)
    with pytest.raises(KrytenValidationError):
        client.publish_group_restart(42)  # type: ignore[arg-type]
    with pytest.raises(KrytenValidationError):
        client.publish_group_restart("x", delay_seconds=True)


# -- shutdown at exit and on SIGTERM (child processes) -----------------------------------

SCRIPT = """\
import json, sys, time
from kryten_sync import KrytenClient
client = KrytenClient(json.loads(sys.argv[1]))
client.connect()
print("ready", flush=True)
{tail}
print("after", flush=True)
"""


# Says "running" once run() has installed its SIGTERM handler.
RUN_TAIL = """\
import signal, threading
def say_running():
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.01)
    print("running", flush=True)
threading.Thread(target=say_running, daemon=True).start()
client.run()
"""


def spawn(tmp_path: Path, name: str, tail: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    script = tmp_path / f"{name}.py"
    script.write_text(SCRIPT.format(tail=textwrap.dedent(tail)))
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_with_repo(),
        text=True,
    )


def test_shutdown_published_at_exit_and_on_sigterm(
    shared_server: NatsServer, tap: Callable[..., Tap], tmp_path: Path
) -> None:
    t = tap()
    exiting = spawn(
        tmp_path, "exiting", "", make_config(shared_server.url, service={"name": "forgetful"})
    )
    running = spawn(
        tmp_path, "running", RUN_TAIL, make_config(shared_server.url, service={"name": "daemon"})
    )
    try:
        t.wait("kryten.lifecycle.daemon.startup", timeout=15.0)
        assert running.stdout is not None
        assert running.stdout.readline().strip() == "ready"
        assert running.stdout.readline().strip() == "running"
        running.send_signal(signal.SIGTERM)
        out, err = running.communicate(timeout=10)
        assert running.returncode == 0, err
        assert out.strip() == "after", (out, err)
        sigterm = t.wait("kryten.lifecycle.daemon.shutdown")[0]
        assert sigterm["reason"] == "Received SIGTERM"

        out, err = exiting.communicate(timeout=10)
        assert exiting.returncode == 0, err
        assert out.split() == ["ready", "after"], (out, err)
        at_exit = t.wait("kryten.lifecycle.forgetful.shutdown")[0]
        assert at_exit["reason"] == "Interpreter exit"
        assert set(at_exit) == BASE_KEYS | {"reason"}
        assert_utc_timestamp(at_exit["timestamp"])
        assert "Traceback" not in err, err
    finally:
        for proc in (exiting, running):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_client_dropped_while_connected_announces_its_shutdown(
    shared_server: NatsServer, tap: Callable[..., Tap]
) -> None:
    t = tap()
    client = KrytenClient(
        make_config(
            shared_server.url, service={"name": "dropped"}, metrics={"port": 0, "serve": True}
        )
    )
    client.connect()
    t.wait("kryten.lifecycle.dropped.startup")
    del client  # the last reference: collected at once, its finalizer closes it
    shutdown = t.wait("kryten.lifecycle.dropped.shutdown")[0]
    assert shutdown["reason"] == "Client garbage-collected"
    wait_until(lambda: not kryten_threads(), 5, "the dropped client's threads to end")
