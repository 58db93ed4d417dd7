"""Threads, handlers and the blocking bridge against a real nats-server: no deadlocks,
thread-safe publishing, timeouts, foreign loops, handler errors, subscriptions and the
blocking consumers (SCENARIOS.md 11-15, 17, 20, 26, 27)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kryten_sync import (
    ChatMessageEvent,
    ClientClosedError,
    KrytenClient,
    KrytenTimeoutError,
    KrytenValidationError,
    Message,
    NoRespondersError,
    WrongThreadError,
)
from kryten_sync._core.publish import CONFIRM_TASK
from tests import bridge_format as bf
from tests._helpers import make_config, run_in_thread, wait_until
from tests._nats import AsyncNats, NatsServer

CHAT_SUBJECT = "kryten.commands.cytube.lounge.chat"
CHAT_EVENT_SUBJECT = bf.subject("lounge", "chatMsg")


def chat_event(msg: str, channel: str = "lounge", username: str = "alice") -> bytes:
    return bf.envelope(
        "chatMsg", {**bf.CHAT_MSG, "msg": msg, "username": username}, channel=channel
    )


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    c = KrytenClient(make_config(shared_server.url))
    c.connect()
    try:
        yield c
    finally:
        run_in_thread(lambda: c.disconnect(timeout=2.0), 5.0)


@pytest.fixture
def observer(shared_server: NatsServer) -> Iterator[KrytenClient]:
    """A second client, to watch what the client under test sends."""
    c = KrytenClient(
        make_config(
            shared_server.url,
            nats={"pending_msgs_limit": 1_000_000, "pending_bytes_limit": 512 * 1024 * 1024},
            handler_queue_size=100_000,
        )
    )
    c.connect()
    try:
        yield c
    finally:
        run_in_thread(lambda: c.disconnect(timeout=2.0), 5.0)


# -- scenario 11: a handler sends a command ----------------------------------------------


def test_handler_send_chat_does_not_deadlock(client: KrytenClient, observer: KrytenClient) -> None:
    seen: list[dict[str, Any]] = []
    observer.subscribe(CHAT_SUBJECT, lambda m: seen.append(m.json()))
    observer.flush()
    returned: list[str] = []
    errors: list[BaseException] = []

    def handler(event: ChatMessageEvent) -> None:
        try:
            returned.append(client.send_chat("lounge", f"re: {event.message}"))
        except BaseException as exc:
            errors.append(exc)

    client.on("chatMsg", handler=handler)
    for i in range(20):
        client.publish(CHAT_EVENT_SUBJECT, chat_event(f"m{i}"))
    wait_until(lambda: len(seen) == 20, 2.0, f"20 chat commands (saw {len(seen)}, {errors})")
    assert errors == []
    assert [s["data"] for s in seen] == [{"message": f"re: m{i}"} for i in range(20)]
    assert [s["correlation_id"] for s in seen] == returned
    assert {s["action"] for s in seen} == {"chat"}


# -- scenario 12: a handler requests a responder of the same client ------------------------


def _responder(msg: Message) -> None:
    msg.respond({"echo": msg.json()})


def test_handler_request_to_own_other_subscription_replies_within_1s(
    client: KrytenClient,
) -> None:
    client.subscribe("threads.echo", _responder)
    results: list[tuple[Any, float]] = []
    errors: list[BaseException] = []

    def handler(event: ChatMessageEvent) -> None:
        start = time.monotonic()
        try:
            reply = client.request("threads.echo", {"m": event.message}, timeout=3)
        except BaseException as exc:
            errors.append(exc)
            return
        results.append((reply, time.monotonic() - start))

    client.on("chatMsg", handler=handler)
    client.publish(CHAT_EVENT_SUBJECT, chat_event("ping"))
    wait_until(lambda: results or errors, 3.0, "the handler's request")
    assert errors == []
    reply, elapsed = results[0]
    assert reply == {"echo": {"m": "ping"}}
    assert elapsed < 1.0, f"request from a handler took {elapsed:.3f} s"


def _eight_at_once(
    client: KrytenClient,
    register: Callable[[Callable[[Any], None]], None],
    trigger: Callable[[], None],
) -> None:
    client.subscribe("threads.echo8", _responder)
    barrier = threading.Barrier(8, timeout=3)
    results: list[tuple[Any, float]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def handler(event: ChatMessageEvent) -> None:
        try:
            barrier.wait()  # all 8 handlers are running at once
            start = time.monotonic()
            reply = client.request("threads.echo8", {"m": event.message}, timeout=3)
            elapsed = time.monotonic() - start
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append((reply, elapsed))

    register(handler)
    trigger()
    wait_until(
        lambda: len(results) + len(errors) == 8,
        5.0,
        f"8 handler requests ({len(results)} ok, {errors})",
    )
    assert errors == []
    assert sorted(r["echo"]["m"] for r, _ in results) == [f"m{i}" for i in range(8)]
    slow = [e for _, e in results if e >= 1.0]
    assert slow == [], f"requests slower than 1 s: {slow}"


def test_eight_channel_handlers_request_at_once(shared_server: NatsServer) -> None:
    channels = [f"room{i}" for i in range(8)]
    with KrytenClient(make_config(shared_server.url, channels)) as client:

        def register(handler: Callable[[Any], None]) -> None:
            client.on("chatMsg", handler=handler)

        def trigger() -> None:
            for i, ch in enumerate(channels):
                client.publish(bf.subject(ch, "chatMsg"), chat_event(f"m{i}", channel=ch))

        _eight_at_once(client, register, trigger)


def test_eight_concurrent_handlers_request_at_once(client: KrytenClient) -> None:
    def register(handler: Callable[[Any], None]) -> None:
        client.on("chatMsg", concurrent=True, handler=handler)

    def trigger() -> None:
        for i in range(8):
            client.publish(CHAT_EVENT_SUBJECT, chat_event(f"m{i}"))

    _eight_at_once(client, register, trigger)


# -- scenario 13: a blocking call on the loop thread ---------------------------------------


def test_blocking_call_on_loop_thread_raises_wrong_thread_and_loop_stays_responsive(
    client: KrytenClient,
) -> None:
    client.subscribe("threads.echo", _responder)
    calls: dict[str, Callable[[], object]] = {
        "request": lambda: client.request("threads.echo", {"x": 1}, timeout=5),
        "request_message": lambda: client.request_message("threads.echo", b"1", timeout=5),
        "flush": lambda: client.flush(timeout=5),
        "subscribe": lambda: client.subscribe("threads.other", lambda m: None),
    }
    outcomes: dict[str, tuple[BaseException | None, float]] = {}
    done = threading.Event()

    def on_loop() -> None:
        for name, call in calls.items():
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                call()
            except BaseException as exc:
                error = exc
            outcomes[name] = (error, time.perf_counter() - start)
        done.set()

    assert client._conn is not None
    client._conn.loop.call_soon(on_loop)
    assert done.wait(3.0), "blocking calls made on the loop thread hang"
    for name, (error, elapsed) in outcomes.items():
        assert isinstance(error, WrongThreadError), f"{name} on the loop thread: {error!r}"
        assert elapsed < 0.010, f"{name} on the loop thread took {elapsed * 1000:.1f} ms"
    # The loop is still responsive.
    start = time.monotonic()
    assert client.request("threads.echo", {"y": 2}, timeout=2) == {"echo": {"y": 2}}
    assert time.monotonic() - start < 0.5


def test_disconnect_on_loop_thread_does_not_block_the_loop(shared_server: NatsServer) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("kryten-sync")}
    client = KrytenClient(make_config(shared_server.url, shutdown_timeout=2.0))
    client.connect()
    client.subscribe("threads.echo", _responder)
    box: dict[str, Any] = {}
    done = threading.Event()

    def on_loop() -> None:
        start = time.perf_counter()
        try:
            client.disconnect("from the loop thread")
        except BaseException as exc:
            box["error"] = type(exc)
        box["elapsed"] = time.perf_counter() - start
        done.set()

    try:
        assert client._conn is not None
        client._conn.loop.call_soon(on_loop)
        assert done.wait(5.0), "disconnect() on the loop thread hangs"
        # Either refused at once (WrongThreadError) or scheduled without blocking: it
        # must not stall the loop for the shutdown timeout.
        assert box["elapsed"] < 0.1, (
            f"disconnect() on the loop thread blocked the loop for {box['elapsed']:.2f} s "
            f"(outcome {box.get('error')})"
        )
        if box.get("error") is WrongThreadError:
            assert client.request("threads.echo", [1], timeout=2) == {"echo": [1]}
        else:
            assert "error" not in box, box
            wait_until(
                lambda: (
                    not any(
                        t.name.startswith("kryten-sync") and t not in before
                        for t in threading.enumerate()
                    )
                ),
                3.0,
                "the client's threads to end",
            )
    finally:
        run_in_thread(lambda: client.disconnect(timeout=1.0), 5.0)


def test_refused_blocking_calls_leave_no_unawaited_coroutines(client: KrytenClient) -> None:
    # Keep only the exception types: a kept exception's traceback would keep the
    # coroutines alive past the check.
    outcome: list[type[BaseException] | None] = []
    done = threading.Event()

    def on_loop() -> None:
        for call in (
            lambda: client.request("threads.echo", b"1", timeout=1),
            lambda: client.flush(timeout=1),
            lambda: client.subscribe("threads.other", lambda m: None),
        ):
            try:
                call()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(type(exc))
        done.set()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client._conn is not None
        client._conn.loop.call_soon(on_loop)
        assert done.wait(3.0)
        time.sleep(0.05)
        gc.collect()
    assert outcome == [WrongThreadError] * 3, outcome
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert unawaited == [], f"a refused call leaked coroutines: {unawaited}"


# -- scenario 14: a handler requests its own subscription ------------------------------------


def test_handler_requesting_its_own_subscription_times_out_without_hanging(
    client: KrytenClient,
) -> None:
    box: dict[str, Any] = {}

    def handler(msg: Message) -> None:
        if msg.data == b"outer":
            start = time.monotonic()
            try:
                box["reply"] = client.request_message("threads.self", b"inner", timeout=1.0)
            except BaseException as exc:
                box["error"] = exc
            box["elapsed"] = time.monotonic() - start
        elif msg.reply:
            msg.respond(b"late")

    client.subscribe("threads.self", handler)
    client.publish("threads.self", b"outer")
    wait_until(lambda: "elapsed" in box, 3.0, "the handler's request to end")
    error = box.get("error")
    # The subscription's worker is busy in this very handler: the inner request cannot be
    # answered, so it must fail within the request timeout.
    assert isinstance(error, KrytenTimeoutError), f"got {box!r}"
    assert box["elapsed"] < 1.0 + 0.2, f"took {box['elapsed']:.2f} s (timeout 1 s)"
    # The subscription keeps working afterwards.
    assert client.request_message("threads.self", b"again", timeout=2).data == b"late"


# -- scenario 15: many threads publish at once -------------------------------------------------


def _per_thread_order_check(
    n_threads: int,
) -> tuple[Callable[[str], None], Callable[[], int], list[str]]:
    last = [-1] * n_threads
    problems: list[str] = []
    count = [0]

    def record(text: str) -> None:
        tid, seq = map(int, text.split(":"))
        if seq != last[tid] + 1:
            problems.append(f"thread {tid}: {seq} after {last[tid]}")
        last[tid] = seq
        count[0] += 1

    return record, lambda: count[0], problems


def _run_threads(n: int, body: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def target(tid: int) -> None:
        try:
            start.wait()
            body(tid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20.0)
    assert not any(t.is_alive() for t in threads), "publisher threads hang"
    return errors


def test_sixteen_threads_publish_ten_thousand_each_all_delivered_in_order(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    n_threads, per_thread = 16, 10_000
    received: list[bytes] = []
    # A raw nats-py subscriber as a fast counter: a kryten-sync handler observer tops out
    # near 20 k msg/s on 2 cores, which would make the 160 k-message test take ~8 s.
    with AsyncNats(shared_server.url) as observer:
        observer.subscribe(
            "load.seq",
            cb=lambda msg: received.append(msg.data),
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )

        def body(tid: int) -> None:
            publish = client.publish
            for i in range(per_thread):
                publish("load.seq", f"{tid}:{i}".encode())

        errors = _run_threads(n_threads, body)
        assert errors == []
        client.flush(timeout=10)
        total = n_threads * per_thread
        wait_until(lambda: len(received) >= total, 10.0, f"{total} messages ({len(received)})")
        time.sleep(0.05)
        record, count, problems = _per_thread_order_check(n_threads)
        for data in received:
            record(data.decode())
        assert count() == total
        assert problems == [], problems[:10]
        assert client.health().messages_published == total
        assert client.health().publish_errors == 0


def test_eight_threads_send_chat_thousand_each_all_delivered_in_order(
    client: KrytenClient, observer: KrytenClient
) -> None:
    n_threads, per_thread = 8, 1_000
    record, count, problems = _per_thread_order_check(n_threads)
    observer.subscribe(CHAT_SUBJECT, lambda m: record(m.json()["data"]["message"]))
    observer.flush()

    def body(tid: int) -> None:
        for i in range(per_thread):
            client.send_chat("lounge", f"{tid}:{i}")

    errors = _run_threads(n_threads, body)
    assert errors == []
    client.flush(timeout=10)
    total = n_threads * per_thread
    wait_until(lambda: count() >= total, 10.0, f"{total} chat commands (got {count()})")
    time.sleep(0.05)
    assert count() == total
    assert problems == [], problems[:10]
    assert client.health().commands_sent == total


# -- scenario 17: timeouts and no responders ------------------------------------------------


def _pending_tasks(client: KrytenClient) -> int:
    assert client._conn is not None
    loop = client._conn.loop.loop
    box: list[int] = []
    done = threading.Event()

    def count() -> None:
        # The publisher's confirmation task follows the traffic and ends by itself.
        tasks = [t for t in asyncio.all_tasks(loop) if t.get_name() != CONFIRM_TASK]
        box.append(sum(not t.done() for t in tasks))
        done.set()

    client._conn.loop.call_soon(count)
    assert done.wait(2.0)
    return box[0]


def test_request_timeout_raises_timeout_error_on_time(client: KrytenClient) -> None:
    client.subscribe("threads.silent", lambda m: None)
    client.subscribe("threads.echo", _responder)
    # The first request starts nats-py's long-lived reply-inbox subscription task.
    assert client.request("threads.echo", [0], timeout=2) == {"echo": [0]}
    tasks_before = _pending_tasks(client)
    for timeout in (0.3, 1.0):
        start = time.monotonic()
        with pytest.raises(KrytenTimeoutError) as info:
            client.request("threads.silent", b"?", timeout=timeout)
        elapsed = time.monotonic() - start
        assert isinstance(info.value, TimeoutError)
        assert not isinstance(info.value, NoRespondersError)
        assert abs(elapsed - timeout) <= 0.2, f"timeout {timeout} s raised after {elapsed:.3f} s"
        assert "threads.silent" in str(info.value)
    time.sleep(0.05)
    assert _pending_tasks(client) == tasks_before, "a timed-out request left a task running"
    # The client still works.
    assert client.request("threads.echo", [1], timeout=2) == {"echo": [1]}


def test_request_without_responders_raises_no_responders_promptly(
    client: KrytenClient,
) -> None:
    start = time.monotonic()
    with pytest.raises(NoRespondersError) as info:
        client.request("threads.nobody", b"?", timeout=3)
    assert time.monotonic() - start < 0.5
    assert not isinstance(info.value, TimeoutError)
    assert "threads.nobody" in str(info.value)


# -- scenario 20: a foreign running loop in the caller's thread ------------------------------


def test_works_inside_asyncio_run(shared_server: NatsServer) -> None:
    result: dict[str, Any] = {}

    async def main() -> None:
        assert asyncio.get_running_loop() is not None
        client = KrytenClient(make_config(shared_server.url))
        got = threading.Event()
        client.on("chatMsg", handler=lambda ev: (result.setdefault("event", ev.message), got.set()))
        client.connect()
        try:
            seen: list[str] = []
            client.subscribe(CHAT_SUBJECT, lambda m: seen.append(m.json()["data"]["message"]))
            client.subscribe("threads.echo", _responder)
            client.publish(CHAT_EVENT_SUBJECT, chat_event("from asyncio"))
            result["request"] = client.request("threads.echo", {"a": 1}, timeout=2)
            client.send_chat("lounge", "chat from asyncio")
            client.flush()
            result["handler_ran"] = got.wait(2.0)
            wait_until(lambda: seen, 2.0, "the chat command")
            result["chat"] = seen
        finally:
            client.disconnect()

    asyncio.run(main())
    assert result == {
        "event": "from asyncio",
        "request": {"echo": {"a": 1}},
        "handler_ran": True,
        "chat": ["chat from asyncio"],
    }


# -- scenarios 26/27: handler errors ------------------------------------------------------------


def _error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_handler_exception_is_logged_once_reported_and_worker_carries_on(
    client: KrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kryten_sync")
    handled: list[str] = []
    hook_calls: list[tuple[BaseException, Any]] = []
    boom = ValueError("boom in handler")

    def handler(event: ChatMessageEvent) -> None:
        handled.append(event.message)
        if event.message == "bad":
            raise boom

    client.on("chatMsg", handler=handler)
    client.on_error(lambda exc, ev: hook_calls.append((exc, ev)))
    before = client.health().handler_errors
    for text in ("bad", "good"):
        client.publish(CHAT_EVENT_SUBJECT, chat_event(text))
    wait_until(lambda: handled == ["bad", "good"], 2.0, f"both events (got {handled})")
    wait_until(lambda: client.health().handler_errors == before + 1, 1.0, "the error counter")
    records = _error_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.exc_info is not None and record.exc_info[1] is boom
    assert "Traceback" in caplog.text and "boom in handler" in caplog.text
    assert len(hook_calls) == 1
    exc, event = hook_calls[0]
    assert exc is boom
    assert isinstance(event, ChatMessageEvent) and event.message == "bad"
    assert client.health().handler_calls >= 2


def test_raising_on_error_hook_is_logged_and_worker_survives(
    client: KrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kryten_sync")
    handled: list[str] = []

    def handler(event: ChatMessageEvent) -> None:
        handled.append(event.message)
        if event.message.startswith("bad"):
            raise ValueError(f"handler failed on {event.message}")

    @client.on_error
    def hook(exc: BaseException, event: Any) -> None:
        raise RuntimeError("the hook itself failed")

    client.on("chatMsg", handler=handler)
    for text in ("bad1", "good", "bad2", "good2"):
        client.publish(CHAT_EVENT_SUBJECT, chat_event(text))
    wait_until(lambda: len(handled) == 4, 2.0, f"all events (got {handled})")
    assert handled == ["bad1", "good", "bad2", "good2"]
    records = _error_records(caplog)
    hook_records = [r for r in records if r.exc_info and "hook itself" in str(r.exc_info[1])]
    handler_records = [r for r in records if r.exc_info and "handler failed" in str(r.exc_info[1])]
    assert len(hook_records) == 2, [r.getMessage() for r in records]
    assert len(handler_records) == 2, [r.getMessage() for r in records]
    assert client.health().handler_errors == 2
    # The worker is still alive for later events.
    client.publish(CHAT_EVENT_SUBJECT, chat_event("later"))
    wait_until(lambda: handled[-1:] == ["later"], 2.0, "an event after the hook failures")


# -- registration checks ------------------------------------------------------------------------


def test_async_handlers_are_refused_at_registration(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))

    async def async_handler(event: Any) -> None:
        pass

    class AsyncCallable:
        async def __call__(self, event: Any) -> None:
            pass

    registrations: dict[str, Callable[[], object]] = {
        "on(handler=)": lambda: client.on("chatMsg", handler=async_handler),
        "@on": lambda: client.on("chatMsg")(async_handler),
        "on(async __call__)": lambda: client.on("chatMsg", handler=AsyncCallable()),
        "on_error": lambda: client.on_error(async_handler),  # type: ignore[arg-type]
        "on_disconnect": lambda: client.on_disconnect(async_handler),  # type: ignore[arg-type]
        "on_reconnect": lambda: client.on_reconnect(async_handler),  # type: ignore[arg-type]
        "subscribe": lambda: client.subscribe("x.y", async_handler),  # type: ignore[arg-type]
    }
    for name, register in registrations.items():
        with pytest.raises(TypeError) as info:
            register()
        message = str(info.value)
        assert "async" in message and "plain `def`" in message, f"{name}: {message}"
    assert client._dispatcher.registry.handlers == (), "a refused handler was registered anyway"


# -- subscribe / unsubscribe / respond ---------------------------------------------------------


def test_subscribe_respond_and_unsubscribe(client: KrytenClient) -> None:
    seen: list[Message] = []

    def handler(msg: Message) -> None:
        seen.append(msg)
        if msg.reply:
            msg.respond({"got": msg.json(), "hdr": dict(msg.headers or {})})

    sub = client.subscribe("threads.sub.*", handler)
    assert sub.active and sub.subject == "threads.sub.*"
    reply = client.request_message("threads.sub.a", {"n": 1}, headers={"X-Test": "1"}, timeout=2)
    assert reply.json() == {"got": {"n": 1}, "hdr": {"X-Test": "1"}}
    client.publish("threads.sub.b", "text")
    client.flush()
    wait_until(lambda: len(seen) == 2, 2.0, "the plain publish")
    assert seen[1].subject == "threads.sub.b" and seen[1].text == "text"
    assert seen[1].reply == ""
    with pytest.raises(KrytenValidationError):
        seen[1].respond(b"nowhere to go")

    sub.unsubscribe()
    sub.unsubscribe()  # idempotent
    assert not sub.active
    client.publish("threads.sub.c", b"after")
    client.flush()
    with pytest.raises(NoRespondersError):
        client.request("threads.sub.d", b"?", timeout=1)
    time.sleep(0.1)
    assert [m.subject for m in seen] == ["threads.sub.a", "threads.sub.b"]


def test_unsubscribe_from_its_own_handler_does_not_hang(client: KrytenClient) -> None:
    got: list[bytes] = []
    box: dict[str, Any] = {}

    def handler(msg: Message) -> None:
        got.append(msg.data)
        start = time.monotonic()
        try:
            box["sub"].unsubscribe()
        except BaseException as exc:
            box["error"] = exc
        box["elapsed"] = time.monotonic() - start

    box["sub"] = client.subscribe("threads.once", handler)
    client.publish("threads.once", b"1")
    wait_until(lambda: "elapsed" in box, 3.0, "unsubscribe() inside the handler to return")
    assert "error" not in box, repr(box.get("error"))
    assert box["elapsed"] < 1.0, f"unsubscribe() in its handler took {box['elapsed']:.2f} s"
    client.publish("threads.once", b"2")
    client.flush()
    time.sleep(0.1)
    assert got == [b"1"]


def test_queue_group_delivers_each_message_once(client: KrytenClient) -> None:
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def member(name: str) -> Callable[[Message], None]:
        def handler(msg: Message) -> None:
            with lock:
                got.append((name, msg.data))

        return handler

    client.subscribe("threads.q", member("a"), queue="workers")
    client.subscribe("threads.q", member("b"), queue="workers")
    for i in range(100):
        client.publish("threads.q", str(i))
    client.flush()
    wait_until(lambda: len(got) >= 100, 2.0, f"100 messages (got {len(got)})")
    time.sleep(0.1)
    assert sorted(int(d) for _, d in got) == list(range(100)), "each message exactly once"


# -- wait_for / events ----------------------------------------------------------------------------


def _publish_later(client: KrytenClient, delay: float, *messages: bytes) -> threading.Thread:
    def target() -> None:
        time.sleep(delay)
        for m in messages:
            client.publish(CHAT_EVENT_SUBJECT, m)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_wait_for_returns_the_next_matching_event(client: KrytenClient) -> None:
    handled: list[str] = []
    client.on("chatMsg", handler=lambda ev: handled.append(ev.message))
    client.publish(CHAT_EVENT_SUBJECT, chat_event("old"))
    wait_until(lambda: handled == ["old"], 2.0, "the old event")

    _publish_later(client, 0.1, chat_event("new"))
    event = client.wait_for("chatMsg", timeout=2)
    assert isinstance(event, ChatMessageEvent) and event.message == "new"

    _publish_later(
        client, 0.1, chat_event("skip", username="alice"), chat_event("pick", username="bob")
    )
    event = client.wait_for("chatmsg", predicate=lambda ev: ev.username == "bob", timeout=2)
    assert (event.username, event.message) == ("bob", "pick")


def test_wait_for_times_out(client: KrytenClient) -> None:
    start = time.monotonic()
    with pytest.raises(KrytenTimeoutError):
        client.wait_for("chatMsg", timeout=0.5)
    elapsed = time.monotonic() - start
    assert abs(elapsed - 0.5) <= 0.2, f"wait_for(timeout=0.5) took {elapsed:.3f} s"
    assert client._dispatcher.registry.handlers == (), "wait_for left its handler registered"


def test_events_iterates_in_order_and_ends_when_stream_closed(client: KrytenClient) -> None:
    with client.events("chatMsg") as stream:
        for i in range(5):
            client.publish(CHAT_EVENT_SUBJECT, chat_event(f"e{i}"))
        got: list[str] = []
        for event in stream:
            got.append(event.message)
            if len(got) == 5:
                break
        assert got == [f"e{i}" for i in range(5)]

        # A thread blocked iterating ends when the stream is closed.
        ended = threading.Event()
        threading.Thread(target=lambda: (list(stream), ended.set()), daemon=True).start()
        time.sleep(0.1)
        stream.close()
        assert ended.wait(1.0), "iteration did not end after stream.close()"
    assert client._dispatcher.registry.handlers == ()


def test_events_iteration_ends_when_client_disconnects(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    client.connect()
    got: list[str] = []
    ended = threading.Event()
    stream = client.events("chatMsg")

    def consume() -> None:
        with stream:
            for event in stream:
                got.append(event.message)
        ended.set()

    threading.Thread(target=consume, daemon=True).start()
    client.publish(CHAT_EVENT_SUBJECT, chat_event("one"))
    wait_until(lambda: got == ["one"], 2.0, "the event")
    client.disconnect()
    assert ended.wait(1.0), "iteration did not end after disconnect()"
    with pytest.raises(ClientClosedError):
        stream.get(timeout=0.1)


def test_events_counts_drops_when_buffer_full(client: KrytenClient) -> None:
    with client.events("chatMsg", maxsize=2) as stream:
        for i in range(5):
            client.publish(CHAT_EVENT_SUBJECT, chat_event(f"d{i}"))
        client.flush()
        wait_until(lambda: client.channels[0].received == 5, 2.0, "5 events received")
        wait_until(lambda: stream.dropped == 3, 1.0, f"3 drops (got {stream.dropped})")
        assert [stream.get(timeout=1).message for _ in range(2)] == ["d0", "d1"]
        with pytest.raises(KrytenTimeoutError):
            stream.get(timeout=0.2)
