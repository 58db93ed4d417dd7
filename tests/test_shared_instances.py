"""Instances that share the work in core mode (``events.shared``), against a real
nats-server: the instances of one group split each channel's events through a NATS queue
group, so each event is handled by exactly one of them, typed handlers included; each
instance sees its share in publish order, but consecutive events may be handled by two
instances at once (no order between instances: durable mode gives that, see
test_durable.py). Plain ``subscribe()`` subscribers still get every event."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kryten_sync import ChatMessageEvent, KrytenClient, Message
from tests import bridge_format as bf
from tests._helpers import make_config, wait_until
from tests._nats import AsyncNats, NatsServer

EVENT = "chatMsg"  # typed handlers: each gets a ChatMessageEvent whose message is n


def shared_config(url: str, **events: Any) -> dict[str, Any]:
    return make_config(
        url,
        service={"name": "bot", "enable_lifecycle": False},
        events={"shared": True, **events},
    )


def publish(url: str, count: int) -> None:
    with AsyncNats(url) as pub:
        pub.publish_many(
            (bf.subject("lounge", EVENT), bf.envelope(EVENT, {**bf.CHAT_MSG, "msg": str(n)}))
            for n in range(count)
        )


def start(clients: list[KrytenClient], config: dict[str, Any], count: int) -> list[list[int]]:
    """Connect ``count`` clients with one handler each; the numbers each one handles."""
    seen: list[list[int]] = []
    lock = threading.Lock()
    for _ in range(count):
        mine: list[int] = []
        seen.append(mine)
        client = KrytenClient(config)

        def handle(event: ChatMessageEvent, mine: list[int] = mine) -> None:
            with lock:
                mine.append(int(event.message))

        client.on(EVENT, handler=handle)
        client.connect()
        clients.append(client)
    return seen


def total(seen: list[list[int]]) -> int:
    return sum(len(mine) for mine in seen)


@pytest.mark.parametrize("instances", [2, 3])
def test_each_event_is_handled_by_exactly_one_instance(
    shared_server: NatsServer, clients: list[KrytenClient], instances: int
) -> None:
    seen = start(clients, shared_config(shared_server.url), instances)
    raw: list[bytes] = []
    clients[0].subscribe(bf.subject("lounge", EVENT), lambda msg: raw.append(msg.data))
    publish(shared_server.url, 3000)
    wait_until(lambda: total(seen) >= 3000 and len(raw) >= 3000, 30, "3000 events")
    clients[0].flush()
    handled = sorted(n for mine in seen for n in mine)
    assert handled == list(range(3000))  # once each, none lost
    assert all(mine for mine in seen), [len(mine) for mine in seen]  # the work is split
    assert all(mine == sorted(mine) for mine in seen)  # each instance's share in order
    assert len(raw) == 3000  # a plain subscriber sees everything
    assert sum(c.channels[0].received for c in clients) == 3000


def test_an_explicit_group_shares_between_different_service_names(
    shared_server: NatsServer, clients: list[KrytenClient]
) -> None:
    seen = start(clients, shared_config(shared_server.url, group="greeters"), 1)
    other = make_config(
        shared_server.url,
        service={"name": "other-name", "enable_lifecycle": False},
        events={"shared": True, "group": "greeters"},
    )
    seen += start(clients, other, 1)
    publish(shared_server.url, 500)
    wait_until(lambda: total(seen) >= 500, 30, "500 events")
    assert sorted(n for mine in seen for n in mine) == list(range(500))


def test_without_sharing_every_instance_gets_every_event(
    shared_server: NatsServer, clients: list[KrytenClient]
) -> None:
    config = make_config(shared_server.url, service={"name": "bot", "enable_lifecycle": False})
    seen = start(clients, config, 2)
    publish(shared_server.url, 300)
    wait_until(lambda: total(seen) >= 600, 30, "300 events twice")
    assert seen == [list(range(300)), list(range(300))]


def test_raw_subscriptions_are_not_shared(
    shared_server: NatsServer, clients: list[KrytenClient]
) -> None:
    start(clients, shared_config(shared_server.url), 2)
    got: list[list[Message]] = [[], []]
    for client, mine in zip(clients, got, strict=True):
        client.subscribe(bf.subject("lounge", EVENT), mine.append)
    publish(shared_server.url, 50)
    wait_until(lambda: all(len(mine) == 50 for mine in got), 10, "50 events on each")
