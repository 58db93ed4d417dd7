"""Connecting and disconnecting KrytenClient against a real nats-server: threads and
file descriptors, loop death, run()/stop(), health(), and reconnects (SCENARIOS.md 3-7,
28-30). Service lifecycle messages are in test_service_lifecycle."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kryten_sync import (
    KrytenClient,
    KrytenConnectionError,
    KrytenError,
    LoopDiedError,
    NotConnectedError,
    PublishError,
)
from tests import bridge_format as bf
from tests._helpers import kryten_threads, make_config, run_in_thread, wait_until
from tests._nats import NatsServer, free_port

CHAT_SUBJECT = "kryten.commands.cytube.lounge.chat"
PREFIX = "kryten-sync"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def chat_event(msg: str, username: str = "alice") -> bytes:
    return bf.envelope("chatMsg", {**bf.CHAT_MSG, "msg": msg, "username": username})


CHAT_EVENT_SUBJECT = bf.subject("lounge", "chatMsg")


@pytest.fixture
def server() -> Iterator[NatsServer]:
    """A fresh server the test may stop and restart on the same port."""
    srv = NatsServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    c = KrytenClient(make_config(shared_server.url))
    c.connect()
    try:
        yield c
    finally:
        c.disconnect(timeout=2.0)


# -- scenario 3: `with` leaves no threads ------------------------------------------------


def test_with_block_end_leaves_no_client_threads(shared_server: NatsServer) -> None:
    before = kryten_threads()
    got: list[str] = []
    with KrytenClient(make_config(shared_server.url)) as client:
        # Exercise every kind of thread: channel worker, raw subscription worker,
        # concurrent pool, control worker.
        client.on("chatMsg", handler=lambda ev: got.append(ev.message))
        client.on("chatMsg", concurrent=True, handler=lambda ev: got.append("c:" + ev.message))
        sub_got: list[bytes] = []
        client.subscribe("lifecycle.with", lambda m: sub_got.append(m.data))
        client.publish(CHAT_EVENT_SUBJECT, chat_event("hi"))
        client.publish("lifecycle.with", b"x")
        client.flush()
        wait_until(lambda: len(got) == 2 and sub_got == [b"x"], 2.0, "handlers to run")
        during = kryten_threads() - before
        names = sorted(t.name for t in during)
        assert any(n.startswith("kryten-sync-loop-") for n in names), names
        assert any(n.startswith("kryten-sync-pool-") for n in names), names
    deadline = time.monotonic() + 1.0
    while (alive := [t.name for t in during if t.is_alive()]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert alive == [], f"client threads still alive 1 s after the with block: {alive}"
    assert kryten_threads() - before == set()


# -- scenario 4: disconnect twice, then every call fails fast -----------------------------


def test_disconnect_twice_then_every_call_raises_not_connected_promptly(
    shared_server: NatsServer,
) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    client.disconnect()
    client.disconnect()  # idempotent: no error
    client.close()  # alias, still no error
    assert client.is_connected is False
    assert client.health().state == "disconnected"

    calls: dict[str, Callable[[], object]] = {
        "publish": lambda: client.publish("x.y", b"1"),
        "request": lambda: client.request("x.y", b"1", timeout=5),
        "request_message": lambda: client.request_message("x.y", b"1", timeout=5),
        "send_chat": lambda: client.send_chat("lounge", "hello"),
        "subscribe": lambda: client.subscribe("x.y", lambda m: None),
        "flush": lambda: client.flush(timeout=5),
    }
    for name, call in calls.items():
        start = time.perf_counter()
        with pytest.raises(NotConnectedError) as info:
            call()
        elapsed = time.perf_counter() - start
        assert elapsed < 0.010, f"{name} after disconnect took {elapsed * 1000:.1f} ms"
        assert "connect" in str(info.value), f"{name}: unclear message {info.value!r}"


def test_wait_for_after_disconnect_raises_promptly(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    client.disconnect()
    start = time.perf_counter()
    with pytest.raises(NotConnectedError):
        client.wait_for("chatMsg", timeout=5)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.010, f"wait_for() after disconnect took {elapsed * 1000:.1f} ms"


def test_disconnect_wakes_a_thread_blocked_in_request(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    client.subscribe("lifecycle.silent", lambda m: None)
    box: dict[str, Any] = {}

    def blocked() -> None:
        try:
            client.request("lifecycle.silent", b"?", timeout=30)
        except BaseException as exc:
            box["error"] = exc
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()
    start = time.monotonic()
    _, error = run_in_thread(lambda: client.disconnect(timeout=2.0), 5.0)
    assert error is None, repr(error)
    thread.join(2.0)
    assert not thread.is_alive(), "a request(timeout=30) still blocks after disconnect()"
    assert isinstance(box.get("error"), NotConnectedError), f"got {box.get('error')!r}"
    assert box["ended"] - start < 1.0, f"woken {box['ended'] - start:.2f} s after disconnect"


# -- scenario 5: disconnect from inside a handler ------------------------------------------


def test_disconnect_from_handler_returns_without_self_join(shared_server: NatsServer) -> None:
    before = kryten_threads()
    client = KrytenClient(make_config(shared_server.url))
    record: dict[str, Any] = {}
    after = threading.Event()

    def handler(event: Any) -> None:
        record["thread"] = threading.current_thread()
        start = time.monotonic()
        try:
            client.disconnect("from handler", timeout=2.0)
        except BaseException as exc:
            record["error"] = exc
        record["elapsed"] = time.monotonic() - start
        record["connected_after"] = client.is_connected
        after.set()

    client.on("chatMsg", handler=handler)
    client.connect()
    client.publish(CHAT_EVENT_SUBJECT, chat_event("bye"))
    assert after.wait(5.0), "the handler's code after disconnect() never ran"
    assert "error" not in record, f"disconnect() in a handler raised {record.get('error')!r}"
    assert record["elapsed"] < 2.0 + 0.3, (
        f"disconnect() in a handler took {record['elapsed']:.2f} s (timeout 2 s)"
    )
    assert record["connected_after"] is False
    assert client.is_connected is False
    assert client.health().state == "disconnected"
    with pytest.raises(NotConnectedError):
        client.publish("x.y", b"1")
    # The handler's own thread ends once the handler returns; nothing else lingers.
    wait_until(
        lambda: not (kryten_threads() - before),
        1.0,
        "client threads to end after a disconnect from a handler",
    )
    # Python 3.13 drops a thread from threading.enumerate() a moment before is_alive()
    # turns False: join, with a bound, rather than read is_alive() at once.
    record["thread"].join(2.0)
    assert not record["thread"].is_alive()


# -- scenario 6: connect/disconnect cycles leak nothing -------------------------------------


def test_hundred_connect_disconnect_cycles_leak_no_threads_or_fds(
    shared_server: NatsServer,
) -> None:
    config = make_config(shared_server.url)
    # One warm-up cycle first: the first connect imports modules and creates process-wide
    # state lazily (not per-client resources), which is not a leak.
    with KrytenClient(config) as c:
        c.publish("cycles.x", b"1")
    before = kryten_threads()
    threads0 = threading.active_count()
    fds0 = open_fds()
    reused = KrytenClient(config)
    for i in range(100):
        client = reused if i % 2 else KrytenClient(config)
        client.connect()
        client.publish("cycles.x", b"1")
        client.disconnect()
    # "<=": a thread or fd left by an earlier test may end meanwhile.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if threading.active_count() <= threads0 and open_fds() <= fds0:
            break
        time.sleep(0.02)
    leaked = sorted(t.name for t in kryten_threads() - before)
    assert leaked == [], f"client threads alive after 100 cycles: {leaked}"
    assert threading.active_count() <= threads0, (
        f"threads: {threads0} before, {threading.active_count()} after 100 cycles"
    )
    # No tolerance needed: measured, a cycle closes every socket and pipe it opened.
    assert open_fds() <= fds0, f"fds: {fds0} before, {open_fds()} after 100 cycles"


# -- scenario 7: the loop thread dies ---------------------------------------------------


def _kill_loop(client: KrytenClient) -> list[BaseException]:
    raised: list[BaseException] = []

    def raise_system_exit() -> None:
        exc = SystemExit("injected")
        raised.append(exc)
        raise exc

    assert client._conn is not None
    client._conn.loop.call_soon(raise_system_exit)
    return raised


def test_loop_death_next_call_raises_loop_died_with_cause(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    try:
        assert client._conn is not None
        loop_thread = client._conn.loop.thread
        raised = _kill_loop(client)
        wait_until(lambda: not loop_thread.is_alive(), 2.0, "the loop thread to die")
        assert len(raised) == 1
        calls: dict[str, Callable[[], object]] = {
            "publish": lambda: client.publish("x.y", b"1"),
            "request": lambda: client.request("x.y", b"1", timeout=5),
            "send_chat": lambda: client.send_chat("lounge", "hi"),
            "subscribe": lambda: client.subscribe("x.y", lambda m: None),
            "flush": lambda: client.flush(timeout=5),
        }
        for name, call in calls.items():
            start = time.monotonic()
            _, error = run_in_thread(call, 3.0)
            elapsed = time.monotonic() - start
            assert isinstance(error, LoopDiedError), f"{name} raised {error!r}"
            assert error.__cause__ is raised[0], f"{name}: cause {error.__cause__!r}"
            assert elapsed < 0.1, f"{name} took {elapsed:.3f} s after loop death"
    finally:
        _, error = run_in_thread(lambda: client.disconnect(timeout=1.0), 3.0)
    assert error is None, f"disconnect() after loop death raised {error!r}"


def test_loop_death_is_reported_by_is_connected_and_health(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    try:
        assert client._conn is not None
        loop_thread = client._conn.loop.thread
        _kill_loop(client)
        wait_until(lambda: not loop_thread.is_alive(), 2.0, "the loop thread to die")
        health = client.health()
        assert (client.is_connected, health.connected) == (False, False), (
            f"a client whose loop thread died reports is_connected={client.is_connected}, "
            f"health().connected={health.connected}, state={health.state!r}"
        )
        assert health.state != "connected"
    finally:
        run_in_thread(lambda: client.disconnect(timeout=1.0), 3.0)


def test_loop_death_fails_call_in_progress(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    try:
        # A responder that never answers: the request stays in flight.
        client.subscribe("lifecycle.silent", lambda m: None)
        box: dict[str, Any] = {}

        def blocked_request() -> None:
            start = time.monotonic()
            try:
                client.request("lifecycle.silent", b"?", timeout=5.0)
            except BaseException as exc:
                box["error"] = exc
            box["elapsed_after_kill"] = time.monotonic() - box.get("killed_at", start)

        thread = threading.Thread(target=blocked_request, daemon=True)
        thread.start()
        time.sleep(0.3)  # the request is in flight now
        assert thread.is_alive(), f"request ended early: {box}"
        box["killed_at"] = time.monotonic()
        raised = _kill_loop(client)
        thread.join(2.0)
        assert not thread.is_alive(), "a request in flight hangs after the loop died"
        error = box.get("error")
        assert isinstance(error, LoopDiedError), f"in-flight request raised {error!r}"
        assert raised and error.__cause__ is raised[0], f"cause {error.__cause__!r}"
        assert box["elapsed_after_kill"] < 1.0, box
    finally:
        run_in_thread(lambda: client.disconnect(timeout=1.0), 3.0)


def test_disconnect_after_loop_death_ends_all_client_threads(
    shared_server: NatsServer,
) -> None:
    before = kryten_threads()
    client = KrytenClient(make_config(shared_server.url))
    client.on("chatMsg", handler=lambda ev: None)
    client.connect()
    assert client._conn is not None
    loop_thread = client._conn.loop.thread
    _kill_loop(client)
    wait_until(lambda: not loop_thread.is_alive(), 2.0, "the loop thread to die")
    _, error = run_in_thread(lambda: client.disconnect(timeout=1.0), 3.0)
    assert error is None, f"disconnect() after loop death raised {error!r}"
    deadline = time.monotonic() + 1.0
    while (alive := kryten_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive, (
        "threads of a client whose loop died are still alive 1 s after disconnect(): "
        f"{sorted(t.name for t in alive)}"
    )


# -- connect errors, calls before connect, connect twice, reconnect on same client ----------


def test_connect_to_wrong_port_raises_connection_error_mentioning_refused() -> None:
    before = kryten_threads()
    client = KrytenClient(make_config(f"nats://127.0.0.1:{free_port()}"))
    start = time.monotonic()
    with pytest.raises(KrytenConnectionError) as info:
        client.connect()
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, f"connect() to a closed port took {elapsed:.2f} s"
    assert "refused" in str(info.value).lower(), str(info.value)
    assert client.is_connected is False
    assert client.health().state == "disconnected"
    with pytest.raises(NotConnectedError):
        client.publish("x.y", b"1")
    wait_until(lambda: not (kryten_threads() - before), 1.0, "threads of a failed connect to end")


def test_calls_before_connect_raise_not_connected(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    calls: dict[str, Callable[[], object]] = {
        "publish": lambda: client.publish("x.y", b"1"),
        "request": lambda: client.request("x.y", b"1"),
        "request_message": lambda: client.request_message("x.y", b"1"),
        "send_chat": lambda: client.send_chat("lounge", "hello"),
        "subscribe": lambda: client.subscribe("x.y", lambda m: None),
        "flush": client.flush,
    }
    for name, call in calls.items():
        start = time.perf_counter()
        with pytest.raises(NotConnectedError, match="connect"):
            call()
        assert time.perf_counter() - start < 0.010, name
    assert client.is_connected is False
    client.disconnect()  # disconnect before connect: a no-op


def test_connect_twice_is_a_no_op(shared_server: NatsServer) -> None:
    before = kryten_threads()
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    try:
        conn = client._conn
        threads = kryten_threads() - before
        client.connect()
        assert client._conn is conn, "a second connect() replaced the connection"
        assert kryten_threads() - before == threads, "a second connect() started threads"
        assert client.is_connected
    finally:
        client.disconnect()


def test_connect_disconnect_connect_on_same_client(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    got: list[str] = []
    client.on("chatMsg", handler=lambda ev: got.append(ev.message))
    for round_ in range(3):
        client.connect()
        assert client.is_connected
        sub = client.subscribe("lifecycle.echo", lambda m: m.respond(m.data))
        assert client.request_message("lifecycle.echo", f"r{round_}", timeout=2).data == (
            f"r{round_}".encode()
        )
        client.publish(CHAT_EVENT_SUBJECT, chat_event(f"m{round_}"))
        wait_until(lambda r=round_: len(got) == r + 1, 2.0, f"event of round {round_}")
        sub.unsubscribe()
        client.disconnect()
        assert not client.is_connected
    assert got == ["m0", "m1", "m2"]


# -- run() / stop() -------------------------------------------------------------------------


def test_run_from_non_main_thread_returns_after_stop(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            client.run()  # connects first
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="runner")
    thread.start()
    try:
        wait_until(lambda: client.is_connected, 5.0, "run() to connect")
        time.sleep(0.3)
        assert thread.is_alive(), f"run() returned before stop(): {box}"
        stopped_at = time.monotonic()
        client.stop()
        thread.join(1.0)
        assert not thread.is_alive(), "run() did not return within 1 s of stop()"
        assert time.monotonic() - stopped_at < 1.0
        assert "error" not in box, f"run() raised {box['error']!r}"
    finally:
        client.disconnect()


def test_stop_from_handler_ends_run(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.on("chatMsg", handler=lambda ev: client.stop())
    client.connect()
    try:
        other = KrytenClient(make_config(shared_server.url))
        with other:

            def trigger() -> None:
                time.sleep(0.3)
                other.publish(CHAT_EVENT_SUBJECT, chat_event("stop"))

            threading.Thread(target=trigger, daemon=True).start()
            _, error = run_in_thread(client.run, 5.0)
        assert error is None, f"run() raised {error!r}"
    finally:
        client.disconnect()


def test_run_returns_when_the_connection_is_lost_for_good(server: NatsServer) -> None:
    client = KrytenClient(
        make_config(server.url, nats={"reconnect_time_wait": 0.1, "max_reconnect_attempts": 2})
    )
    client.connect()
    try:
        thread = threading.Thread(target=client.run, daemon=True, name="runner")
        thread.start()
        time.sleep(0.2)
        assert thread.is_alive()
        server.stop()
        thread.join(5.0)
        assert not thread.is_alive(), "run() still blocks after reconnect attempts ran out"
        assert client.is_connected is False
        assert client.health().state == "closed"
    finally:
        run_in_thread(lambda: client.disconnect(timeout=1.0), 3.0)


# -- health() and is_connected ---------------------------------------------------------------


def test_health_before_while_and_after_connect(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    h = client.health()
    assert (h.connected, h.state, h.uptime_seconds) == (False, "disconnected", 0.0)
    assert (h.events_received, h.messages_published, h.commands_sent) == (0, 0, 0)
    assert (h.handler_calls, h.handler_errors, h.reconnects) == (0, 0, 0)
    assert [(c.domain, c.channel, c.token) for c in h.channels] == [("cytu.be", "lounge", "lounge")]
    assert client.is_connected is False

    got: list[str] = []
    client.on("chatMsg", handler=lambda ev: got.append(ev.message))
    client.connect()
    try:
        assert client.is_connected is True
        client.publish(CHAT_EVENT_SUBJECT, chat_event("one"))
        client.send_chat("lounge", "hello")
        client.flush()
        wait_until(lambda: got == ["one"], 2.0, "the event")
        wait_until(lambda: client.health().handler_calls == 1, 1.0, "handler stats")
        h = client.health()
        assert h.connected is True
        assert h.state == "connected"
        assert h.uptime_seconds > 0
        assert h.events_received == 1, h
        assert h.channels[0].received == 1, h
        assert h.messages_published == 2, h
        assert h.commands_sent == 1, h
        assert h.handler_calls == 1 and h.handler_errors == 0, h
        assert h.publish_errors == 0 and h.malformed_events == 0, h
        assert h.reconnects == 0
        assert h.to_dict()["errors"] == 0
    finally:
        client.disconnect()
    h = client.health()
    assert (h.connected, h.state) == (False, "disconnected")
    assert client.is_connected is False


# -- scenario 28: user reconnect callbacks raise --------------------------------------------


def test_raising_disconnect_and_reconnect_callbacks_do_not_stop_reconnection(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kryten_sync")
    client = KrytenClient(make_config(server.url, nats={"reconnect_time_wait": 0.1}))
    calls: list[str] = []

    @client.on_disconnect
    def on_disconnect() -> None:
        calls.append("disconnect")
        raise RuntimeError("boom in on_disconnect")

    @client.on_reconnect
    def on_reconnect() -> None:
        calls.append("reconnect")
        raise RuntimeError("boom in on_reconnect")

    client.connect()
    try:
        client.subscribe("lifecycle.echo", lambda m: m.respond(m.data))
        server.stop()
        wait_until(lambda: "disconnect" in calls, 5.0, "the disconnect callback")
        assert client.is_connected is False
        assert client.health().state == "reconnecting"
        server.start()
        wait_until(lambda: client.is_connected, 5.0, "the client to reconnect")
        wait_until(lambda: "reconnect" in calls, 2.0, "the reconnect callback")
        assert calls == ["disconnect", "reconnect"]
        h = client.health()
        assert (h.state, h.reconnects) == ("connected", 1), h
        assert client.request_message("lifecycle.echo", b"ping", timeout=2).data == b"ping"
        for text in ("boom in on_disconnect", "boom in on_reconnect"):
            matching = [
                r
                for r in caplog.records
                if r.levelno >= logging.ERROR and r.exc_info and text in str(r.exc_info[1])
            ]
            assert len(matching) == 1, f"expected one ERROR record for {text!r}: {matching}"
    finally:
        client.disconnect(timeout=2.0)


# -- scenarios 29/30: server restart -----------------------------------------------------------


def test_commands_during_outage_are_delivered_after_reconnect(server: NatsServer) -> None:
    client = KrytenClient(make_config(server.url, nats={"reconnect_time_wait": 0.1}))
    commands: list[str] = []
    raw: list[int] = []
    events: list[str] = []
    client.on("chatMsg", handler=lambda ev: events.append(ev.message))
    client.connect()
    try:
        # The client's own subscriptions observe what it sends: nats-py replays SUBs
        # before the client sends what it buffered, so nothing races the reconnect.
        client.subscribe(CHAT_SUBJECT, lambda m: commands.append(m.json()["data"]["message"]))
        client.subscribe("outage.raw", lambda m: raw.append(int(m.data)))
        client.flush()
        server.stop()
        wait_until(lambda: client.health().state == "reconnecting", 5.0, "the disconnect")

        # flush() while disconnected must not report success.
        start = time.monotonic()
        with pytest.raises(KrytenError) as info:
            client.flush(timeout=0.3)
        assert time.monotonic() - start < 1.5
        assert isinstance(info.value, TimeoutError | NotConnectedError), repr(info.value)

        sent_cmds: list[str] = []
        sent_raw: list[int] = []
        sent_events: list[str] = []
        failures: list[BaseException] = []
        for i in range(100):
            try:
                client.send_chat("lounge", f"c{i}")
                sent_cmds.append(f"c{i}")
            except PublishError as exc:
                failures.append(exc)
            try:
                client.publish("outage.raw", str(i))
                sent_raw.append(i)
            except PublishError as exc:
                failures.append(exc)
            if i % 5 == 0:
                try:
                    client.publish(CHAT_EVENT_SUBJECT, chat_event(f"e{i}"))
                    sent_events.append(f"e{i}")
                except PublishError as exc:
                    failures.append(exc)
        assert client.is_connected is False, "the server came back on its own?"
        # 100 small commands fit the reconnect buffer: none should fail.
        assert failures == []

        server.start()
        wait_until(lambda: client.is_connected, 5.0, "the client to reconnect")
        client.flush(timeout=5)
        wait_until(
            lambda: (
                (len(commands), len(raw), len(events))
                == (len(sent_cmds), len(sent_raw), len(sent_events))
            ),
            3.0,
            f"outage traffic: got {len(commands)}/{len(sent_cmds)} commands, "
            f"{len(raw)}/{len(sent_raw)} raw, {len(events)}/{len(sent_events)} events",
        )
        assert commands == sent_cmds
        assert raw == sent_raw
        assert events == sent_events
        assert client.health().publish_errors == 0
    finally:
        client.disconnect(timeout=2.0)


def test_outage_overflow_raises_publish_error_for_each_message_not_buffered(
    server: NatsServer,
) -> None:
    client = KrytenClient(make_config(server.url, nats={"reconnect_time_wait": 0.1}))
    client.connect()
    try:
        got: list[bytes] = []
        client.subscribe("outage.big", lambda m: got.append(m.data[:8]))
        client.flush()
        server.stop()
        wait_until(lambda: not client.is_connected, 5.0, "the disconnect")
        # 30 x 100 KB exceed the 2 MiB reconnect buffer (nats.reconnect_buffer_size).
        accepted: list[bytes] = []
        refused: list[PublishError] = []
        for i in range(30):
            head = f"{i:08d}".encode()
            try:
                client.publish("outage.big", head + b"x" * 100_000)
                accepted.append(head)
            except PublishError as exc:
                refused.append(exc)
        assert len(accepted) + len(refused) == 30
        assert refused, "30 x 100 KB fit the reconnect buffer: the test needs more data"
        assert accepted, "nothing was buffered during the outage"
        assert all(e.retryable for e in refused), [repr(e) for e in refused]
        # Once full it stays full: the accepted ones are exactly the first ones.
        assert accepted == [f"{i:08d}".encode() for i in range(len(accepted))]
        server.start()
        wait_until(lambda: client.is_connected, 5.0, "the reconnect")
        client.flush(timeout=5)
        wait_until(lambda: len(got) >= len(accepted), 3.0, f"buffered messages ({len(got)})")
        time.sleep(0.1)
        assert got == accepted, "every accepted message, and only those, arrives in order"
    finally:
        client.disconnect(timeout=2.0)


def test_flush_during_outage_waits_for_reconnect(server: NatsServer) -> None:
    client = KrytenClient(make_config(server.url, nats={"reconnect_time_wait": 0.1}))
    client.connect()
    try:
        got: list[bytes] = []
        client.subscribe("outage.flush", lambda m: got.append(m.data))
        client.flush()
        server.stop()
        wait_until(lambda: not client.is_connected, 5.0, "the disconnect")
        client.publish("outage.flush", b"during")
        box: dict[str, Any] = {}

        def flusher() -> None:
            try:
                client.flush(timeout=6.0)
                box["reconnects"] = client.health().reconnects
                box["connected"] = client.is_connected
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=flusher, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), f"flush() returned while the server was down: {box}"
        server.start()
        thread.join(5.0)
        assert not thread.is_alive(), "flush() did not return after the reconnect"
        assert "error" not in box, f"flush() raised {box.get('error')!r}"
        assert box == {"reconnects": 1, "connected": True}
        wait_until(lambda: got == [b"during"], 2.0, f"the buffered publish (got {got})")
    finally:
        client.disconnect(timeout=2.0)


def test_traffic_across_server_restart_keeps_order_and_resumes_subscriptions(
    server: NatsServer,
) -> None:
    client = KrytenClient(make_config(server.url, nats={"reconnect_time_wait": 0.1}))
    received: list[int] = []
    events: list[str] = []
    client.on("chatMsg", handler=lambda ev: events.append(ev.message))
    client.connect()
    try:
        client.subscribe("traffic.seq", lambda m: received.append(int(m.data)))
        client.subscribe("traffic.echo", lambda m: m.respond(m.data))
        client.flush()
        # (seq, phase): "before" = connected and not yet reconnected, "outage" = the client
        # knew it was disconnected, "after" = reconnected.
        sent: list[tuple[int, str]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def publisher() -> None:
            seq = 0
            while not stop.is_set():
                if not client.is_connected:
                    phase = "outage"
                elif client.health().reconnects:
                    phase = "after"
                else:
                    phase = "before"
                try:
                    client.publish("traffic.seq", str(seq))
                    sent.append((seq, phase))
                except PublishError as exc:
                    errors.append(exc)
                except BaseException as exc:  # anything else is a bug
                    errors.append(exc)
                    return
                seq += 1
                time.sleep(0.0005)

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        time.sleep(0.3)
        server.stop()
        wait_until(lambda: not client.is_connected, 5.0, "the disconnect")
        time.sleep(0.2)  # publish for a while into the outage
        server.start()
        wait_until(lambda: client.is_connected, 5.0, "the reconnect")
        wait_until(lambda: sum(p == "after" for _, p in sent) >= 200, 3.0, "traffic after")
        stop.set()
        thread.join(2.0)
        assert not thread.is_alive()
        assert all(isinstance(e, PublishError) for e in errors), errors
        client.flush(timeout=5)
        last = sent[-1][0]
        wait_until(lambda: received and received[-1] == last, 3.0, "the last message")

        assert received == sorted(set(received)), "order broken or duplicates after restart"
        got = set(received)
        phases = {"before", "outage", "after"}
        lost = {p: [s for s, ph in sent if ph == p and s not in got] for p in phases}
        counts = {p: sum(ph == p for _, ph in sent) for p in phases}
        assert counts["outage"] > 0 and counts["after"] > 0, counts
        # Publishes made while the client knew it was disconnected, or after the
        # reconnect, must all arrive; only messages in flight when the server died may
        # be lost (core NATS is at-most-once).
        assert lost["outage"] == [], f"lost during outage: {lost['outage'][:20]} {counts}"
        assert lost["after"] == [], f"lost after reconnect: {lost['after'][:20]} {counts}"

        # Subscriptions and the channel events subscription resumed without user action.
        with KrytenClient(make_config(server.url)) as other:
            assert other.request_message("traffic.echo", b"e", timeout=2).data == b"e"
            for i in range(20):
                other.publish(CHAT_EVENT_SUBJECT, chat_event(f"after{i}"))
            other.flush()
            wait_until(lambda: len(events) == 20, 2.0, f"events after reconnect: {events}")
        assert events == [f"after{i}" for i in range(20)]
    finally:
        client.disconnect(timeout=2.0)
