"""Registering for events through a real nats-server: names and channels that will
never match speak up once, the new typed events reach on(), wait_for() and events(),
and wait_for()/events() deliveries are not counted as handler calls in health()."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kryten_sync import KrytenClient
from kryten_sync.events import ChatMessageEvent, LeaderEvent, PollOpenedEvent, RawEvent
from tests import bridge_format as bf
from tests._nats import AsyncNats, NatsServer

CONFIG_CHANNELS = [
    {"domain": "cytu.be", "channel": "lounge"},
    {"domain": "cytu.be", "channel": "Movie-Night"},
]


@pytest.fixture(scope="module")
def publisher(shared_server: NatsServer) -> Iterator[AsyncNats]:
    with AsyncNats(shared_server.url, name="test-bridge", timeout=30.0) as pub:
        yield pub


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    config = {"nats": {"servers": [shared_server.url]}, "channels": CONFIG_CHANNELS}
    with KrytenClient(config) as client:
        yield client


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kryten_sync" and r.levelno == logging.WARNING
    ]


def publish(publisher: AsyncNats, name: str, payload: Any, channel: str = "lounge") -> None:
    publisher.publish(bf.subject(channel, name), bf.envelope(name, payload, channel=channel))


def poll(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- warnings


def test_a_misspelt_event_name_warns_once_with_did_you_mean_and_still_registers(
    client: KrytenClient, publisher: AsyncNats, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Any] = []
    client.on("chatmsgg", handler=got.append)
    client.on("CHATMSGG", handler=got.append)  # the same name: no second warning
    assert warnings(caplog) == [
        "on('chatmsgg'): 'chatmsgg' is not an event CyTube sends through the bridge; did "
        "you mean 'chatMsg'? (registered anyway: custom events are allowed)"
    ]
    publish(publisher, "chatmsgg", {"custom": 1})  # a custom producer may send it
    poll(lambda: len(got) == 2, "both handlers of the custom event")
    assert all(isinstance(event, RawEvent) for event in got)


def test_cytube_names_in_any_case_and_star_do_not_warn(
    client: KrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("chatMsg", "chatmsg", "setAFK", "setafk", "userlist", "rank", "*"):
        client.on(name, handler=lambda event: None)
    client.on("chatMsg", channel="LOUNGE", domain="Cytu.Be", handler=lambda event: None)
    client.on("chatMsg", channel="movie-night", handler=lambda event: None)
    assert warnings(caplog) == []


def test_a_channel_or_domain_not_in_the_config_warns_once(
    client: KrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    client.on("chatMsg", channel="otherchan", handler=lambda event: None)
    client.on("addUser", channel="OtherChan", handler=lambda event: None)
    client.on("chatMsg", domain="example.org", handler=lambda event: None)
    assert warnings(caplog) == [
        "on(channel='otherchan'): not a configured channel ('lounge', 'Movie-Night'); the "
        "client subscribes only to those, so this filter never matches",
        "on(domain='example.org'): no configured channel has this domain ('cytu.be')",
    ]


def test_events_and_wait_for_warn_with_their_own_names(
    client: KrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    with client.events("setafc"):
        pass
    with pytest.raises(Exception, match="no matching event"):
        client.wait_for("newpol", channel="nowhere", timeout=0.05)
    assert warnings(caplog) == [
        "events('setafc'): 'setafc' is not an event CyTube sends through the bridge; did "
        "you mean 'setAFK'? (registered anyway: custom events are allowed)",
        "wait_for('newpol'): 'newpol' is not an event CyTube sends through the bridge; did "
        "you mean 'newPoll'? (registered anyway: custom events are allowed)",
        "wait_for(channel='nowhere'): not a configured channel ('lounge', 'Movie-Night'); "
        "the client subscribes only to those, so this filter never matches",
    ]


# --------------------------------------------------------------------------- delivery


def test_new_typed_events_reach_wait_for_events_and_handlers(
    client: KrytenClient, publisher: AsyncNats
) -> None:
    leaders: list[Any] = []
    client.on("setLeader", channel="Movie-Night", handler=leaders.append)
    poll_payload = {
        "title": "Next?",
        "options": ["Alien", "Heat"],
        "counts": [0, 0],
        "initiator": "alice",
        "timestamp": 1_700_000_000_000,
    }

    def bridge() -> None:
        time.sleep(0.1)
        publish(publisher, "newPoll", poll_payload)
        publish(publisher, "setLeader", "bob", channel="Movie-Night")

    with client.events("setLeader") as stream:
        threading.Thread(target=bridge, daemon=True).start()
        poll_event = client.wait_for("newPoll", timeout=5)
        leader = stream.get(timeout=5)
    assert isinstance(poll_event, PollOpenedEvent)
    assert poll_event.options == ["Alien", "Heat"]
    assert isinstance(leader, LeaderEvent)
    assert (leader.username, leader.channel) == ("bob", "Movie-Night")
    poll(lambda: len(leaders) == 1, "the setLeader handler")
    assert leaders[0] == leader


# --------------------------------------------------------------------------- health


def test_wait_for_and_events_deliveries_are_not_handler_calls(
    client: KrytenClient, publisher: AsyncNats
) -> None:
    calls: list[Any] = []
    client.on("chatMsg", handler=calls.append)
    n = 5
    with client.events("chatMsg") as stream, client.events("*") as everything:

        def bridge() -> None:
            time.sleep(0.1)
            for i in range(n):
                publish(publisher, "chatMsg", {**bf.CHAT_MSG, "msg": str(i)})

        threading.Thread(target=bridge, daemon=True).start()
        first = client.wait_for("chatMsg", timeout=5)
        seen = [stream.get(timeout=5) for _ in range(n)]
        assert len([everything.get(timeout=5) for _ in range(n)]) == n
    assert isinstance(first, ChatMessageEvent)
    assert [event.message for event in seen] == [str(i) for i in range(n)]
    poll(lambda: len(calls) == n, "the handler's calls")
    poll(lambda: client.health().handler_calls == n, f"handler_calls == {n}")
    time.sleep(0.1)  # nothing more arrives late
    health = client.health()
    assert (health.handler_calls, health.events_received) == (n, n)
