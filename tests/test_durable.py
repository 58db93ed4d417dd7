"""Durable events (``events.durable``) against real nats-servers with JetStream: events
published while a bot is stopped or disconnected arrive when it is back, in order;
failing handlers are redelivered up to ``max_deliver`` then skipped; repeats are dropped;
several instances share one consumer and keep each channel's order; a stream or consumer
that conflicts with the settings is a clear error.

Events are published by an independent raw nats-py connection (``tests._nats.AsyncNats``)
as the bridge publishes them (``tests.bridge_format``), each carrying its number ``n``.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import nats.js.errors as jse
import pytest
from nats.js import api

from kryten_sync import KrytenClient, KrytenConnectionError, RawEvent, StreamConfigError
from kryten_sync.durable import RecentIds, covers
from tests import bridge_format as bf
from tests._helpers import kryten_threads, make_config, wait_until
from tests._nats import AsyncNats, NatsServer

EVENT = "seqTest"  # not a typed event: handlers get a RawEvent with payload {"n": ...}


def durable_config(url: str, *, service: str = "bot", **events: Any) -> dict[str, Any]:
    nats = events.pop("nats", {})
    return make_config(
        url,
        service={"name": service, "enable_lifecycle": False},
        events={"durable": True, **events},
        nats=nats,
    )


def publish(url: str, numbers: range) -> None:
    """Publish one event per number, in order, as the bridge does."""
    with AsyncNats(url) as pub:
        pub.publish_many(bf.numbered(EVENT, numbers))


class Log:
    """Handled events across instances: ``(n, instance, start, end)`` in start order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[int, int, float, float]] = []
        self.calls: list[int] = []  # every call, failed ones included

    def handler(self, instance: int, fail: Callable[[int], bool] = lambda n: False) -> Any:
        def handle(event: RawEvent) -> None:
            start = time.perf_counter()
            n = event.payload["n"]
            with self.lock:
                self.calls.append(n)
            if fail(n):
                raise RuntimeError(f"handler fails on {n}")
            end = time.perf_counter()
            with self.lock:
                self.rows.append((n, instance, start, end))

        return handle

    def numbers(self) -> list[int]:
        with self.lock:
            return [row[0] for row in self.rows]

    def wait(self, count: int, timeout: float = 30.0) -> list[int]:
        wait_until(lambda: len(self.numbers()) >= count, timeout, f"{count} handled events")
        return self.numbers()


def bot(url: str, log: Log, instance: int = 0, **events: Any) -> KrytenClient:
    fail = events.pop("fail", lambda n: False)
    client = KrytenClient(durable_config(url, **events))
    client.on(EVENT, handler=log.handler(instance, fail))
    return client


def consumer_info(url: str, name: str, stream: str = "KRYTEN_EVENTS") -> api.ConsumerInfo:
    with AsyncNats(url) as nc:
        info: api.ConsumerInfo = nc.call(nc.nc.jetstream().consumer_info(stream, name))
        return info


def has_consumer(url: str, name: str) -> bool:
    try:
        consumer_info(url, name)
    except jse.NotFoundError:
        return False
    return True


# --------------------------------------------------------------------------- survival


def test_events_published_while_the_bot_was_stopped_arrive_in_order(
    nats_server: NatsServer,
) -> None:
    log = Log()
    client = bot(nats_server.url, log)
    client.connect()  # creates the stream and the consumer
    client.disconnect()
    publish(nats_server.url, range(200))
    client.connect()
    try:
        assert log.wait(200) == list(range(200))
        (status,) = client.channels
        assert (status.received, status.redelivered, status.skipped, status.duplicates) == (
            200,
            0,
            0,
            0,
        )
        wait_until(
            lambda: consumer_info(nats_server.url, "bot@lounge").num_ack_pending == 0,
            5,
            "every event acknowledged",
        )
        info = consumer_info(nats_server.url, "bot@lounge")
        assert info.num_pending == 0
        assert info.delivered is not None and info.delivered.consumer_seq == 200
    finally:
        client.disconnect()


def test_events_published_while_the_bot_was_disconnected_arrive_in_order(
    nats_server: NatsServer,
) -> None:
    log = Log()
    client = bot(nats_server.url, log, nats={"reconnect_time_wait": 1.0})
    client.connect()
    try:
        publish(nats_server.url, range(100))
        assert log.wait(100) == list(range(100))
        dropped = threading.Event()
        client.on_disconnect(dropped.set)
        nats_server.stop()
        assert dropped.wait(5)
        nats_server.start()  # same port, same JetStream store directory
        assert not client.is_connected
        publish(nats_server.url, range(100, 200))  # before the bot is back
        assert log.wait(200) == list(range(200))
        assert client.is_connected
    finally:
        client.disconnect()


def test_a_server_back_without_its_jetstream_state_gets_stream_and_consumer_again(
    nats_server: NatsServer,
) -> None:
    log = Log()
    client = bot(nats_server.url, log, nats={"reconnect_time_wait": 0.1})
    client.connect()
    try:
        publish(nats_server.url, range(10))
        assert log.wait(10) == list(range(10))
        back = threading.Event()
        client.on_reconnect(back.set)
        nats_server.stop()
        shutil.rmtree(nats_server.log_path.parent / "js")  # a new, empty store
        nats_server.start()
        assert back.wait(10)
        wait_until(lambda: has_consumer(nats_server.url, "bot@lounge"), 10, "the consumer")
        publish(nats_server.url, range(10, 20))
        assert log.wait(20) == list(range(20))
    finally:
        client.disconnect()


def test_each_channel_has_its_own_consumer_and_order(nats_server: NatsServer) -> None:
    got: dict[str, list[int]] = {"lounge": [], "other-room": []}
    config = durable_config(nats_server.url)
    config["channels"] = [
        {"domain": "cytu.be", "channel": "lounge"},
        {"domain": "cytu.be", "channel": "Other-Room"},
        {"domain": "cytu.be", "channel": "other-room"},  # the same token: one consumer
    ]
    client = KrytenClient(config)

    @client.on(EVENT)
    def handle(event: RawEvent) -> None:
        got["other-room" if event.channel != "lounge" else "lounge"].append(event.payload["n"])

    client.connect()
    client.disconnect()
    with AsyncNats(nats_server.url) as pub:
        pub.publish_many(bf.numbered(EVENT, range(100)))
        pub.publish_many(bf.numbered(EVENT, range(100), channel="Other-Room"))
    client.connect()
    try:
        wait_until(lambda: sum(map(len, got.values())) >= 200, 10, "200 events")
        assert got == {"lounge": list(range(100)), "other-room": list(range(100))}
        assert has_consumer(nats_server.url, "bot@other-room")
        assert [c.token for c in client.channels] == ["lounge", "other-room", "other-room"]
    finally:
        client.disconnect()


# --------------------------------------------------------------------------- failures


def test_a_failing_handler_is_redelivered_up_to_max_deliver_then_skipped(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    log = Log()
    client = bot(nats_server.url, log, max_deliver=3, fail=lambda n: n == 5)
    client.connect()
    try:
        publish(nats_server.url, range(10))
        assert log.wait(9) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        # Each event after the failing one waits for it: the channel's order holds.
        assert log.calls == [0, 1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9]
        (status,) = client.channels
        assert (status.redelivered, status.skipped) == (2, 1)
        assert client.health().handler_errors == 3
        skipped = [r for r in caplog.records if "skipped the seqTest event" in r.getMessage()]
        assert len(skipped) == 1 and skipped[0].levelno == logging.ERROR
        assert "3 deliveries (events.max_deliver)" in skipped[0].getMessage()
    finally:
        client.disconnect()


def test_an_event_is_acknowledged_only_after_its_handlers_ran(nats_server: NatsServer) -> None:
    release = threading.Event()
    started = threading.Event()
    client = KrytenClient(durable_config(nats_server.url, ack_wait=1))

    @client.on(EVENT)
    def slow(event: RawEvent) -> None:
        started.set()
        assert release.wait(10)

    client.connect()
    try:
        publish(nats_server.url, range(1))
        assert started.wait(5)
        time.sleep(2.5)  # past ack_wait: the deadline is extended while the handler runs
        info = consumer_info(nats_server.url, "bot@lounge")
        assert info.num_ack_pending == 1 and info.num_redelivered == 0
        release.set()
        wait_until(
            lambda: consumer_info(nats_server.url, "bot@lounge").num_ack_pending == 0,
            5,
            "the acknowledgement",
        )
        assert client.channels[0].redelivered == 0
    finally:
        release.set()
        client.disconnect()


def test_disconnect_lets_the_event_in_flight_finish_and_acknowledges_it(
    nats_server: NatsServer,
) -> None:
    started = threading.Event()
    log = Log()
    client = KrytenClient(durable_config(nats_server.url))

    @client.on(EVENT)
    def slow(event: RawEvent) -> None:
        started.set()
        time.sleep(0.5)
        log.handler(0)(event)

    client.connect()
    publish(nats_server.url, range(3))
    assert started.wait(5)
    client.disconnect()  # while the first event is being handled
    assert log.numbers() == [0]
    info = consumer_info(nats_server.url, "bot@lounge")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert info.ack_floor is not None and info.ack_floor.consumer_seq == 1
    later = bot(nats_server.url, log)
    later.connect()
    try:
        assert log.wait(3) == [0, 1, 2]
    finally:
        later.disconnect()


def test_concurrent_handlers_are_waited_for_before_the_acknowledgement(
    nats_server: NatsServer,
) -> None:
    calls: list[int] = []
    client = KrytenClient(durable_config(nats_server.url))

    @client.on(EVENT, concurrent=True)
    def flaky(event: RawEvent) -> None:
        calls.append(event.payload["n"])
        if len(calls) == 1:
            raise RuntimeError("first call fails")

    client.connect()
    try:
        publish(nats_server.url, range(2))
        wait_until(lambda: len(calls) >= 3, 5, "three calls")
        assert calls == [0, 0, 1]
        assert client.channels[0].redelivered == 1
    finally:
        client.disconnect()


def test_repeats_are_dropped_by_correlation_id(nats_server: NatsServer) -> None:
    log = Log()
    client = bot(nats_server.url, log)
    client.connect()
    try:
        same = str(uuid.uuid4())
        with AsyncNats(nats_server.url) as pub:
            pub.publish_many(
                (bf.subject("lounge", EVENT), bf.envelope(EVENT, {"n": n}, correlation_id=cid))
                for n, cid in [(0, same), (1, same), (2, "")]
            )
        assert log.wait(2) == [0, 2]  # no correlation id: never taken for a repeat
        wait_until(lambda: client.channels[0].duplicates == 1, 5, "the repeat counted")
    finally:
        client.disconnect()


def test_a_repeat_after_the_client_reconnects_is_dropped(nats_server: NatsServer) -> None:
    log = Log()
    client = bot(nats_server.url, log)
    client.connect()
    try:
        same = str(uuid.uuid4())
        body = bf.envelope(EVENT, {"n": 0}, correlation_id=same)
        with AsyncNats(nats_server.url) as pub:
            pub.publish(bf.subject("lounge", EVENT), body)
        assert log.wait(1) == [0]
        client.disconnect()
        with AsyncNats(nats_server.url) as pub:
            pub.publish(bf.subject("lounge", EVENT), body)
            pub.publish(bf.subject("lounge", EVENT), bf.envelope(EVENT, {"n": 1}))
        client.connect()
        assert log.wait(2) == [0, 1]
        assert client.channels[0].duplicates == 1
    finally:
        client.disconnect()


def test_a_message_not_sent_by_jetstream_is_counted_and_ignored(nats_server: NatsServer) -> None:
    log = Log()
    client = bot(nats_server.url, log)
    client.connect()
    try:
        with AsyncNats(nats_server.url) as pub:
            pub.publish("kryten.durable.bot.lounge", bf.envelope(EVENT, {"n": -1}))
        publish(nats_server.url, range(3))
        assert log.wait(3) == [0, 1, 2]
        assert client.channels[0].malformed == 1
    finally:
        client.disconnect()


def test_recent_ids_keeps_only_the_last_ones() -> None:
    recent = RecentIds(3)
    for item in "abcd":
        recent.add(item)
    assert "a" not in recent and all(x in recent for x in "bcd") and len(recent) == 3
    recent.add("b")  # already there: nothing moves
    assert len(recent) == 3
    off = RecentIds(0)
    off.add("a")
    assert "a" not in off


# --------------------------------------------------------------------------- instances


@pytest.mark.parametrize("instances", [2, 3])
def test_instances_handle_each_event_once_in_channel_order(
    nats_server: NatsServer, clients: list[KrytenClient], instances: int
) -> None:
    log = Log()
    for index in range(instances):
        clients.append(bot(nats_server.url, log, index))
        clients[-1].connect()
    publish(nats_server.url, range(3000))
    assert log.wait(3000, 60) == list(range(3000))  # once each, in order
    rows = log.rows
    # One after the other across instances: each event starts after the previous ended.
    assert all(later[2] >= earlier[3] for earlier, later in itertools.pairwise(rows))
    shares = [sum(1 for row in rows if row[1] == i) for i in range(instances)]
    assert all(share > 0 for share in shares), shares
    assert sum(c.channels[0].received for c in clients) == 3000


def test_an_instance_leaving_loses_nothing(
    nats_server: NatsServer, clients: list[KrytenClient]
) -> None:
    log = Log()
    for index in range(2):
        clients.append(bot(nats_server.url, log, index, ack_wait=2))
        clients[-1].connect()
    publisher = threading.Thread(target=publish, args=(nats_server.url, range(1000)))
    publisher.start()
    wait_until(lambda: len(log.numbers()) >= 300, 30, "300 handled events")
    clients[0].disconnect()  # while events keep coming
    publisher.join(30)
    assert log.wait(1000, 60) == list(range(1000))


# --------------------------------------------------------------------------- the stream


def add_stream(url: str, **config: Any) -> None:
    with AsyncNats(url) as nc:
        nc.call(nc.nc.jetstream().add_stream(api.StreamConfig(**config)))


def refused(url: str, **events: Any) -> str:
    before = kryten_threads()
    client = KrytenClient(durable_config(url, **events))
    with pytest.raises(StreamConfigError) as info:
        client.connect()
    wait_until(lambda: kryten_threads() <= before, 5, "the client's threads to end")
    assert not client.is_connected
    return str(info.value)


def test_the_stream_is_created_with_bounded_retention(nats_server: NatsServer) -> None:
    client = KrytenClient(durable_config(nats_server.url, max_age=60, max_msgs=500))
    client.connect()
    client.disconnect()
    with AsyncNats(nats_server.url) as nc:
        info = nc.call(nc.nc.jetstream().stream_info("KRYTEN_EVENTS"))
    config = info.config
    assert config.subjects == ["kryten.events.cytube.>"]
    assert (config.max_age, config.max_msgs, config.max_bytes) == (60, 500, 1024**3)
    assert config.storage == api.StorageType.FILE


def test_an_existing_stream_is_bound_as_it_is(nats_server: NatsServer) -> None:
    add_stream(nats_server.url, name="ALL_KRYTEN", subjects=["kryten.events.>"], max_age=3600)
    log = Log()
    client = bot(nats_server.url, log, stream="ALL_KRYTEN")  # bounds left at default
    client.connect()
    try:
        publish(nats_server.url, range(5))
        assert log.wait(5) == list(range(5))
    finally:
        client.disconnect()


def test_a_stream_that_owns_the_subjects_under_another_name_is_named(
    nats_server: NatsServer,
) -> None:
    add_stream(nats_server.url, name="BRIDGE", subjects=["kryten.events.cytube.>"])
    message = refused(nats_server.url)
    assert "stream 'BRIDGE' already captures kryten.events.cytube.>" in message
    assert "set events.stream to 'BRIDGE'" in message


@pytest.mark.parametrize(
    ("stream", "events", "expected"),
    [
        (
            {"subjects": ["kryten.events.cytube.other.>"]},
            {},
            "do not capture kryten.events.cytube.lounge.>",
        ),
        (
            {"subjects": ["kryten.events.>"], "retention": api.RetentionPolicy.WORK_QUEUE},
            {},
            "it is a work queue",
        ),
        (
            {"subjects": ["kryten.events.>"], "max_age": 3600},
            {"max_age": 60},
            "its max_age is 3600 s, events.max_age is 60 s",
        ),
        (
            {"subjects": ["kryten.events.>"]},
            {"max_msgs": 10},
            "its max_msgs is unlimited, events.max_msgs is 10",
        ),
    ],
)
def test_a_conflicting_stream_is_a_clear_error(
    nats_server: NatsServer, stream: dict[str, Any], events: dict[str, Any], expected: str
) -> None:
    add_stream(nats_server.url, name="EVENTS", **stream)
    message = refused(nats_server.url, stream="EVENTS", **events)
    assert message.startswith("the events stream 'EVENTS' exists but ")
    assert expected in message
    assert "name another stream in events.stream" in message


def test_a_consumer_serving_something_else_is_a_clear_error(nats_server: NatsServer) -> None:
    client = KrytenClient(durable_config(nats_server.url))
    client.connect()
    client.disconnect()
    with AsyncNats(nats_server.url) as nc:
        js = nc.nc.jetstream()
        nc.call(js.delete_consumer("KRYTEN_EVENTS", "bot@lounge"))
        config = api.ConsumerConfig(
            durable_name="bot@lounge",
            deliver_subject="elsewhere",
            filter_subject="kryten.events.cytube.lounge.>",
        )
        nc.call(js.add_consumer("KRYTEN_EVENTS", config))
    message = refused(nats_server.url)
    assert "the consumer 'bot@lounge' of stream 'KRYTEN_EVENTS' exists with" in message
    assert "deliver_subject 'elsewhere'" in message
    assert "set events.group to another name" in message


def test_changed_delivery_limits_update_the_consumer(nats_server: NatsServer) -> None:
    for max_deliver in (5, 2):
        client = KrytenClient(durable_config(nats_server.url, max_deliver=max_deliver))
        client.connect()
        client.disconnect()
        assert consumer_info(nats_server.url, "bot@lounge").config.max_deliver == max_deliver


def test_without_jetstream_connect_says_so() -> None:
    with NatsServer(jetstream=False) as server:
        client = KrytenClient(durable_config(server.url))
        with pytest.raises(KrytenConnectionError, match="JetStream is not available"):
            client.connect()


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("kryten.events.cytube.>", "kryten.events.cytube.lounge.>", True),
        ("kryten.events.>", "kryten.events.cytube.lounge.>", True),
        (">", "kryten.events.cytube.lounge.>", True),
        ("kryten.*.cytube.>", "kryten.events.cytube.lounge.>", True),
        ("kryten.events.cytube.lounge.>", "kryten.events.cytube.lounge.>", True),
        ("kryten.events.cytube.other.>", "kryten.events.cytube.lounge.>", False),
        ("kryten.events.cytube.*.*", "kryten.events.cytube.lounge.>", False),
        ("kryten.events.cytube.lounge.>", "kryten.events.cytube.lounge", False),
        ("kryten.events.cytube.lounge.chatmsg", "kryten.events.cytube.lounge.chatmsg", True),
    ],
)
def test_covers(pattern: str, subject: str, expected: bool) -> None:
    assert covers(pattern, subject) is expected
