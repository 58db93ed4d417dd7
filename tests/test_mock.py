"""MockKrytenClient: kryten-py's test double, with no nats-server.

The central test runs one scenario twice: on a MockKrytenClient, and on a real
KrytenClient with FakeBridges over a real nats-server. What the handlers saw (event
types, names, channels, fields, order, errors) and what was sent (subjects, actions,
data) must be the same: a test written against the mock means what it means against
FakeBridge.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kryten_sync
from kryten_sync import (
    KrytenClient,
    KrytenConfig,
    KrytenTimeoutError,
    MockKrytenClient,
    NotConnectedError,
)
from kryten_sync.commands import COMMANDS, build
from kryten_sync.testing import FakeBridge, MemoryBucket
from tests._helpers import kryten_threads, make_config, run_in_thread, wait_until
from tests._nats import NatsServer
from tests.command_samples import SAMPLE_CHANNEL, iter_samples

CHANNELS = ["lounge", "Movies"]
Emit = Callable[[str, Any, str], None]


def mock_config(**overrides: Any) -> dict[str, Any]:
    # The nats section is replaced by the mock: any URL will do.
    return make_config("nats://localhost:4222", CHANNELS, **overrides)


@pytest.fixture
def mock() -> Iterator[MockKrytenClient]:
    with MockKrytenClient(mock_config()) as m:
        yield m


def describe(event: Any) -> tuple[str, dict[str, Any]]:
    """An event as the handlers saw it, without what differs per run."""
    return type(event).__name__, event.model_dump(
        mode="json", exclude={"timestamp", "correlation_id"}
    )


def scenario(client: KrytenClient, emit: Emit) -> dict[str, Any]:
    """Handlers with every kind of filter, events of every kind, commands from handlers."""
    seen: list[tuple[str, tuple[str, dict[str, Any]]]] = []
    errors: list[tuple[str, str, str]] = []
    ids: list[str] = []

    def record(label: str) -> Callable[[Any], None]:
        return lambda event: seen.append((label, describe(event)))

    client.on("chatmsg", handler=record("chat"))
    client.on("CHATMSG", channel="LOUNGE", handler=record("chat in lounge"))
    client.on("chatMsg", domain="Cytu.be", handler=record("chat on cytu.be"))
    client.on("chatMsg", channel="movies", handler=record("chat in movies"))
    client.on("chatMsg", domain="other.example", handler=record("never"))
    client.on("*", handler=record("everything"))

    @client.on("chatMsg")
    def commands(event: Any) -> None:
        if getattr(event, "message", "").startswith("!"):  # a RawEvent has none
            ids.append(client.send_chat(event.channel, f"echo {event.message[1:]}"))
            ids.append(client.kick_user(event.channel, event.username, "too loud"))
            ids.append(client.jump_to(event.channel, 12))

    @client.on("addUser")
    def failing(event: Any) -> None:
        raise ValueError(f"no room for {event.username}")

    client.on("addUser", handler=record("after the failure"))
    client.on_error(
        lambda exc, event: errors.append((type(exc).__name__, str(exc), event.username))
    )

    emit("chatMsg", {"username": "bob", "msg": "!hi", "time": 1_700_000_000_000}, "lounge")
    emit("chatMsg", {"user": {"name": "amy", "rank": 1.5}, "message": "yo"}, "Movies")
    emit("addUser", {"name": "carl", "rank": 1, "time": 1_700_000_001_000}, "lounge")
    emit("usercount", 12, "lounge")
    emit("setMotd", "<b>héllo</b>", "Movies")
    emit("changeMedia", {"type": "yt", "id": "x1", "title": "T", "seconds": 61}, "lounge")
    emit("pm", {"username": "bob", "msg": "psst", "to": "bot"}, "lounge")
    emit("chatMsg", {"username": 5, "msg": "a number as name"}, "lounge")  # -> RawEvent
    emit("emoteList", [{"name": "Kappa", "image": "k.png"}], "Movies")  # untyped
    ids.append(client.delete_media("Movies", 3))
    ids.append(client.set_motd("lounge", "welcome"))
    client.flush()  # health counts a command once nats-py has it
    health = client.health()
    return {
        "seen": seen,
        "errors": errors,
        "ids": ids,
        "events_received": health.events_received,
        "commands_sent": health.commands_sent,
    }


def test_the_mock_means_what_fake_bridge_on_a_real_server_means(
    shared_server: NatsServer,
) -> None:
    with MockKrytenClient(mock_config()) as m:
        on_mock = scenario(m, lambda name, payload, ch: m.simulate_event(name, payload, channel=ch))
        sent_by_mock = m.get_published_commands()

    fakes = {ch: FakeBridge(shared_server.url, channel=ch) for ch in CHANNELS}
    for fake in fakes.values():
        fake.start()
    try:
        with KrytenClient(make_config(shared_server.url, CHANNELS)) as client:

            def emit(name: str, payload: Any, channel: str) -> None:
                # What simulate_event does, by hand: wait until the handlers ran.
                cid = str(uuid.uuid4())
                with client.events(name, predicate=lambda e: e.correlation_id == cid) as s:
                    fakes[channel].emit(name, payload, correlation_id=cid)
                    s.get(10)

            on_real = scenario(client, emit)
            wait_until(
                lambda: sum(len(f.commands) for f in fakes.values()) >= len(sent_by_mock),
                10,
                "the commands at the fake bridges",
            )
        received = sorted(
            (c for f in fakes.values() for c in f.commands),
            key=lambda c: on_real["ids"].index(c.correlation_id),
        )
    finally:
        for fake in fakes.values():
            fake.stop()

    assert on_mock["seen"] == on_real["seen"]
    assert on_mock["errors"] == on_real["errors"] == [("ValueError", "no room for carl", "carl")]
    assert (on_mock["events_received"], on_mock["commands_sent"]) == (
        on_real["events_received"],
        on_real["commands_sent"],
    )
    assert [(c["subject"], c["action"], c["data"], c["problems"]) for c in sent_by_mock] == [
        (c.subject, c.action, c.data, c.problems) for c in received
    ]
    assert [c["correlation_id"] for c in sent_by_mock] == on_mock["ids"]
    # What the scenario is about, spelt out once.
    labels = [label for label, _ in on_mock["seen"]]
    assert labels[:4] == ["chat", "chat in lounge", "chat on cytu.be", "everything"]
    assert "never" not in labels
    in_movies = [d for label, d in on_mock["seen"] if label == "chat in movies"]
    assert [(kind, d["username"], d["rank"]) for kind, d in in_movies] == [
        ("ChatMessageEvent", "amy", 1.5)
    ]
    kinds = {d[0] for _, d in on_mock["seen"]}
    assert kinds >= {"ChatMessageEvent", "UserJoinEvent", "UserCountEvent", "MotdEvent"}
    assert "RawEvent" in kinds and "PrivateMessageEvent" in kinds
    assert [c["action"] for c in sent_by_mock] == ["chat", "kick", "jump", "delete", "setMotd"]
    assert sent_by_mock[2]["data"] == {"uid": "12"}


# --- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "expected"),
    list(iter_samples()),
    ids=[f"{m}-{i}" for i, (m, *_) in enumerate(iter_samples())],
)
def test_every_command_method_is_recorded_in_the_bridges_format(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    with MockKrytenClient(make_config("nats://localhost:4222", ["Test-Channel"])) as m:
        correlation_id = getattr(m, method)(SAMPLE_CHANNEL, *args, **kwargs)
        (entry,) = m.get_published_commands()
    command = build(method, SAMPLE_CHANNEL, *args, **kwargs)
    assert entry == {
        "subject": command.subject,
        "action": COMMANDS[method].action,
        "data": expected,
        "channel": "test-channel",
        "domain": "cytu.be",
        "correlation_id": correlation_id,
        "timestamp": entry["timestamp"],
        "request": False,
        "problems": [],
    }
    assert entry["timestamp"].endswith("+00:00")


def test_clear_and_commands_from_other_threads(mock: MockKrytenClient) -> None:
    threads = [threading.Thread(target=mock.send_chat, args=("lounge", f"m{i}")) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c["data"]["message"] for c in mock.get_published_commands()) == [
        f"m{i}" for i in range(5)
    ]
    mock.clear_published_commands()
    assert mock.get_published_commands() == []
    mock.pause("Movies")
    assert [c["channel"] for c in mock.get_published_commands()] == ["movies"]


def test_bridge_queries_are_answered_by_the_fake_bridges(mock: MockKrytenClient) -> None:
    assert mock.get_version() == mock.bridge.version
    assert [b.channel for b in mock.bridges] == CHANNELS
    mock.bridge.rank = 1
    assert not mock.safe_set_motd("lounge", "hi")["success"]
    mock.bridge.rank = 3
    assert mock.safe_set_motd("lounge", "hi")["success"]
    mock.bridge.userlist = [{"name": "bob", "rank": 2}]
    assert [u["name"] for u in mock.get_userlist("lounge")] == ["bob"]
    sent = mock.get_published_commands()
    assert [(c["action"], c["request"]) for c in sent if not c["request"]] == [("setMotd", False)]
    assert {c["action"] for c in sent if c["request"]} >= {"system.version", "state.userlist"}


def test_economy_service(mock: MockKrytenClient) -> None:
    payload = {"command": "balance.get", "channel": "lounge", "username": "bob"}
    assert mock.request("kryten.economy.command", payload) == {"success": True, "data": {}}
    mock._economy_responses["balance.get"] = {"success": True, "data": {"balance": 2000}}
    assert mock.economy_responses is mock._economy_responses
    assert mock.request("kryten.economy.command", payload)["data"] == {"balance": 2000}
    entry = mock.get_published_commands()[-1]
    assert (entry["subject"], entry["action"], entry["data"], entry["request"]) == (
        "kryten.economy.command",
        "balance.get",
        {"username": "bob"},
        True,
    )
    assert entry["channel"] == "lounge"


# --- events --------------------------------------------------------------------------------


def test_simulate_event_waits_for_the_handlers(mock: MockKrytenClient) -> None:
    done: list[str] = []

    @mock.on("chatMsg")
    def slow(event: Any) -> None:
        time.sleep(0.2)
        done.append(event.username)

    mock.simulate_event("chatMsg", {"username": "bob", "msg": "hi", "time": 1_700_000_000_000})
    assert done == ["bob"]
    with pytest.raises(KrytenTimeoutError):
        mock.simulate_event("chatMsg", {"username": "late", "msg": "x"}, timeout=0.05)
    wait_until(lambda: done == ["bob", "late"], 5, "the slow handler")


def test_typed_event_fields(mock: MockKrytenClient) -> None:
    got: list[Any] = []
    mock.on("chatMsg", handler=got.append)
    mock.simulate_event(
        "chatMsg",
        {"username": "bob", "msg": "hi", "time": 1_700_000_000_000, "rank": 2},
        channel="Movies",
        domain="cytu.be",
    )
    event = got[0]
    assert (event.username, event.message, event.rank) == ("bob", "hi", 2.0)
    assert (event.channel, event.domain, event.event_name) == ("Movies", "cytu.be", "chatMsg")
    assert event.timestamp.timestamp() == 1_700_000_000
    assert uuid.UUID(event.correlation_id)


def test_simulate_event_from_a_handler_queues_it_after_the_current_one(
    mock: MockKrytenClient,
) -> None:
    order: list[str] = []

    @mock.on("chatMsg")
    def first(event: Any) -> None:
        order.append(event.message)
        if event.message == "outer":
            mock.simulate_event("chatMsg", {"username": "x", "msg": "inner"})
            order.append("outer returned")

    _, error = run_in_thread(
        lambda: mock.simulate_event("chatMsg", {"username": "x", "msg": "outer"}), 10
    )
    assert error is None
    wait_until(lambda: len(order) == 3, 5, "the inner event")
    assert order == ["outer", "outer returned", "inner"]


def test_events_of_other_channels_reach_no_handler(
    mock: MockKrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Any] = []
    mock.on("*", handler=got.append)
    mock.simulate_event("chatMsg", {"username": "x", "msg": "y"}, channel="elsewhere")
    mock.simulate_event("usercount", 3)
    assert [e.event_name for e in got] == ["usercount"]
    assert "'elsewhere' is not a configured channel" in caplog.text


def test_custom_event_names_are_delivered_without_a_warning_of_the_mock(
    mock: MockKrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Any] = []
    mock.on("myCustomEvent", handler=got.append)
    caplog.clear()
    mock.simulate_event("myCustomEvent", {"x": 1})
    assert [(type(e).__name__, e.payload) for e in got] == [("RawEvent", {"x": 1})]
    assert caplog.records == []


def test_not_connected() -> None:
    m = MockKrytenClient(mock_config())
    with pytest.raises(NotConnectedError):
        m.simulate_event("chatMsg", {})
    with pytest.raises(NotConnectedError):
        m.send_chat("lounge", "hi")
    assert m.get_published_commands() == []
    assert not m.is_connected


# --- key-value, in memory -------------------------------------------------------------------


def test_key_value_in_memory_as_kryten_py(mock: MockKrytenClient) -> None:
    mock.kv_put("counter", "count", 41, as_json=True)
    mock.kv_put("counter", "name", "Alice")
    mock.kv_put("counter", "number", 7)
    assert mock.kv_get("counter", "count", default=0, parse_json=True) == 41
    assert mock.kv_get("counter", "name") == b"Alice"  # bytes, as the real client reads
    assert mock.kv_get("counter", "name", default="d", parse_json=True) == "d"
    assert mock.kv_get("counter", "missing", default=0) == 0
    assert mock.kv_keys("counter") == ["count", "name", "number"]
    assert mock.kv_get_all("counter", parse_json=True) == {"count": 41, "number": 7}
    mock.kv_delete("counter", "name")
    assert mock.kv_get_all("counter") == {"count": b"41", "number": b"7"}
    bucket = mock.get_or_create_kv_bucket("counter", "desc", 1024)
    assert isinstance(bucket, MemoryBucket) and bucket is mock.get_kv_bucket("counter")
    assert kryten_sync.kv_get(bucket, "count", parse_json=True) == 41
    assert mock.kv_keys("never-written") == []


def test_state_readers_in_memory(mock: MockKrytenClient) -> None:
    assert mock.get_state_playlist_items("lounge") == []
    assert mock.get_state_current_media("lounge") is None
    assert mock.get_state_current_uid("lounge") is None
    items = [{"uid": 7, "media": {"id": "x", "type": "yt", "title": "T", "seconds": 1}}]
    mock.kv_put("kryten_lounge_playlist", "items", items, as_json=True)
    mock.kv_put("kryten_lounge_playlist", "current", {"id": "x", "type": "yt", "uid": 7}, True)
    assert mock.get_state_playlist_items("lounge")[0]["uid"] == 7
    assert mock.get_state_current_media("lounge") == {"id": "x", "type": "yt", "uid": 7}
    assert mock.get_state_current_uid("lounge") == "7"


# --- lifecycle -----------------------------------------------------------------------------


def test_connect_disconnect_run_stop_and_no_thread_left() -> None:
    before = kryten_threads()
    m = MockKrytenClient(mock_config())
    for _ in range(2):
        m.connect()
        m.connect()  # no-op
        assert m.is_connected and m.health().connected
        threading.Timer(0.2, m.stop).start()
        m.run()  # returns after stop()
        m.disconnect()
        m.disconnect()  # idempotent
        assert not m.is_connected
    m.close()
    wait_until(lambda: kryten_threads() <= before, 10, "the mock's threads to end")


def test_a_dropped_connected_mock_is_cleaned_up() -> None:
    before = kryten_threads()
    m = MockKrytenClient(mock_config())
    m.connect()
    m.simulate_event("usercount", 1)
    del m
    gc.collect()
    wait_until(lambda: kryten_threads() <= before, 10, "the dropped mock's threads to end")


def test_config_is_kept_but_nats_and_http_endpoints(caplog: pytest.LogCaptureFixture) -> None:
    config = mock_config(
        nats={"user": "u", "password": "p"},
        metrics={"port": 1},
        service={"name": "bot", "health_port": 1, "metrics_port": 2},
        retry_attempts=5,
    )
    m = MockKrytenClient(config, logging.getLogger("test.mock"))
    assert m.logger.name == "test.mock"
    assert m.config.nats.servers[0].startswith("nats://127.0.0.1:")
    assert m.config.nats.user is None and m.config.metrics is None
    assert m.config.service is not None
    assert (m.config.service.health_port, m.config.service.metrics_port) == (None, None)
    assert m.config.retry_attempts == 5
    with m:  # binds no HTTP port (port 1 would need root)
        assert m.health_url is None
    m2 = MockKrytenClient(KrytenConfig.coerce(make_config("nats://x:1", ["lounge"])))
    assert m2.config.nats.servers != ["nats://x:1"]
    m2.close()


def test_the_readme_example_runs() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"<!-- mock-example -->\s*```python\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "the MockKrytenClient example is missing from the README"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    namespace["test_bot_echoes"]()
