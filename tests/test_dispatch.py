"""The Dispatcher on its own: routing by name, channel and domain, order, concurrency,
bad input and callbacks. No server: a stand-in Link records what the dispatcher
subscribes and the test plays the channel's worker thread."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from kryten_sync import ChatMessageEvent, KrytenConfig, RawEvent
from kryten_sync._core.dispatch import Dispatcher, Handler
from kryten_sync._core.workers import invoke
from kryten_sync.stats import HandlerStats, RateLimitedLog, SourceStats

LOG = logging.getLogger("test_dispatch")


class FakeSource:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = SourceStats()
        self.handler_stats = HandlerStats()
        self.worker = SimpleNamespace(pending=0, dropped=0)


class FakeLink:
    """Just what the dispatcher uses of a connection."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.log = RateLimitedLog(LOG)
        self.subscribed: dict[str, tuple[FakeSource, Callable[[Any, bytes], None]]] = {}
        self.jobs: list[Callable[[], None]] = []
        self.accept_jobs = True
        # What a health snapshot reads.
        self.is_connected = True
        self.state = "connected"
        self.connected_at = 0.0
        self.reconnects = 0
        self.disconnected_seconds = self.last_gap_seconds = 0.0
        self.publisher = SimpleNamespace(
            sent=0,
            errors=0,
            sent_by_tag={},
            lost=0,
            commands_lost=0,
            unconfirmed=0,
            commands_unconfirmed=0,
            buffered=0,
        )

    async def asubscribe(
        self, subject: str, name: str, process: Any, item: Any, **_: Any
    ) -> FakeSource:
        source = FakeSource(name)
        self.subscribed[subject] = (source, process)
        return source

    def invoke(self, fn: Callable[[Any], None], arg: Any, stats: HandlerStats) -> None:
        invoke(
            fn, arg, stats=stats, log=self.log, on_error=self.dispatcher.error_hook, slow_after=60.0
        )

    def run_job(self, job: Callable[[], None]) -> bool:
        if self.accept_jobs:
            self.jobs.append(job)
        return self.accept_jobs

    def handler_stats(self) -> HandlerStats:
        total = HandlerStats()
        for source, _ in self.subscribed.values():
            total.merge(source.handler_stats)
        return total

    def deliver(self, channel_token: str, body: object) -> FakeSource:
        """Play the channel's worker thread: hand it one message."""
        source, process = self.subscribed[f"kryten.events.cytube.{channel_token}.>"]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        process(source, data)
        return source


def envelope(name: str, payload: Any, channel: str = "lounge", domain: str = "cytu.be") -> dict:
    return {
        "event_name": name,
        "payload": payload,
        "channel": channel,
        "domain": domain,
        "timestamp": "2026-01-01T00:00:00+00:00",
        "correlation_id": "c0ffee",
    }


def chat(text: str, channel: str = "lounge", domain: str = "cytu.be") -> dict:
    return envelope("chatMsg", {"username": "alice", "msg": text, "time": 1}, channel, domain)


def make(channels: list[tuple[str, str]] | None = None) -> tuple[Dispatcher, FakeLink]:
    config = KrytenConfig.coerce(
        {
            "nats": {"servers": ["nats://127.0.0.1:4222"]},
            "channels": [
                {"domain": d, "channel": c} for d, c in channels or [("cytu.be", "lounge")]
            ],
        }
    )
    dispatcher = Dispatcher(config)
    link = FakeLink(dispatcher)
    asyncio.run(dispatcher.on_open(link))  # type: ignore[arg-type]
    return dispatcher, link


def add(dispatcher: Dispatcher, event: str, fn: Callable[[Any], None], **filters: Any) -> None:
    dispatcher.registry.add(
        Handler(
            fn,
            event.lower(),
            filters.get("channel"),
            filters.get("domain"),
            filters.get("concurrent", False),
        )
    )


def test_one_subscription_per_channel_token() -> None:
    _, link = make([("cytu.be", "Lounge"), ("other.tv", "lounge"), ("cytu.be", "movies")])
    assert sorted(link.subscribed) == [
        "kryten.events.cytube.lounge.>",
        "kryten.events.cytube.movies.>",
    ]


def test_names_match_case_insensitively_and_star_sees_everything() -> None:
    dispatcher, link = make()
    seen: list[str] = []
    add(dispatcher, "CHATMSG", lambda e: seen.append(f"chat:{e.message}"))
    add(dispatcher, "*", lambda e: seen.append(f"any:{e.event_name}"))
    add(dispatcher, "userLeave", lambda e: seen.append("leave"))
    link.deliver("lounge", chat("hi"))
    link.deliver("lounge", envelope("mediaUpdate", {"currentTime": 1, "paused": False}))
    assert seen == ["chat:hi", "any:chatMsg", "any:mediaUpdate"]


def test_handlers_of_one_event_run_in_registration_order_with_typed_events() -> None:
    dispatcher, link = make()
    seen: list[tuple[int, Any]] = []
    for n in range(3):
        add(dispatcher, "chatMsg", lambda e, n=n: seen.append((n, e)))
    link.deliver("lounge", chat("a"))
    link.deliver("lounge", chat("b"))
    assert [n for n, _ in seen] == [0, 1, 2, 0, 1, 2]
    assert all(isinstance(e, ChatMessageEvent) for _, e in seen)
    assert seen[0][1] is seen[2][1], "one event object per event, shared by its handlers"
    assert [e.message for n, e in seen if n == 0] == ["a", "b"]


def test_channel_and_domain_filters_compare_after_normalisation() -> None:
    dispatcher, link = make([("cytu.be", "lounge")])
    seen: list[str] = []
    add(dispatcher, "chatMsg", lambda e: seen.append("channel"), channel="lounge")
    add(dispatcher, "chatMsg", lambda e: seen.append("domain"), domain="cytube")
    add(dispatcher, "chatMsg", lambda e: seen.append("other"), channel="movies")
    link.deliver("lounge", chat("x", channel="LOUNGE", domain="CYTU.BE"))
    link.deliver("lounge", chat("y", channel="lounge", domain="example.org"))
    assert seen == ["channel", "domain", "channel"]


def test_malformed_messages_are_counted_and_later_events_still_flow() -> None:
    dispatcher, link = make()
    seen: list[str] = []
    add(dispatcher, "chatMsg", lambda e: seen.append(e.message))
    source = link.deliver("lounge", b"not json")
    link.deliver("lounge", {"event_name": "chatMsg"})  # no payload, channel, domain
    link.deliver("lounge", [1, 2])
    link.deliver("lounge", chat("after"))
    assert source.stats.malformed == 3
    assert source.stats.received == 1
    assert seen == ["after"]


def test_a_payload_that_does_not_fit_arrives_raw() -> None:
    dispatcher, link = make()
    seen: list[Any] = []
    add(dispatcher, "chatMsg", seen.append)
    link.deliver("lounge", envelope("chatMsg", {"username": ["not", "a", "name"]}))
    assert len(seen) == 1 and isinstance(seen[0], RawEvent)


def test_a_raising_handler_is_counted_and_reported_and_the_next_one_runs() -> None:
    dispatcher, link = make()
    reported: list[tuple[BaseException, Any]] = []
    dispatcher.error_hook = lambda exc, event: reported.append((exc, event))
    seen: list[str] = []

    def broken(event: Any) -> None:
        raise ValueError("boom")

    add(dispatcher, "chatMsg", broken)
    add(dispatcher, "chatMsg", lambda e: seen.append(e.message))
    source = link.deliver("lounge", chat("still"))
    assert seen == ["still"]
    assert source.handler_stats.errors == 1 and source.handler_stats.calls == 2
    assert isinstance(reported[0][0], ValueError) and reported[0][1].message == "still"


def test_concurrent_handlers_run_on_the_pool_and_are_counted() -> None:
    dispatcher, link = make()
    done = threading.Event()
    threads: list[str] = []

    def on_pool(event: Any) -> None:
        threads.append(threading.current_thread().name)
        done.set()

    add(dispatcher, "chatMsg", on_pool, concurrent=True)
    link.deliver("lounge", chat("x"))
    assert done.wait(5)
    assert threads[0].startswith("kryten-sync-pool-")
    assert dispatcher.handler_stats(link).calls == 1  # type: ignore[arg-type]
    pool = dispatcher._pool
    assert pool is not None
    dispatcher.after_close(link)  # type: ignore[arg-type]
    for thread in pool.threads:
        thread.join(5)
        assert not thread.is_alive(), "the pool's threads end when the connection closes"


def test_disconnect_and_reconnect_callbacks_go_to_the_control_worker() -> None:
    dispatcher, link = make()
    calls: list[str] = []
    dispatcher.disconnect_callbacks = (lambda: calls.append("down"),)
    dispatcher.reconnect_callbacks = (lambda: calls.append("up"), lambda: calls.append("up2"))
    dispatcher.on_disconnect(link)  # type: ignore[arg-type]
    dispatcher.on_reconnect(link)  # type: ignore[arg-type]
    assert calls == [], "user code must not run on the loop thread"
    for job in link.jobs:
        job()
    assert calls == ["down", "up", "up2"]


def test_after_close_forgets_the_connection() -> None:
    dispatcher, link = make()
    seen: list[str] = []
    add(dispatcher, "chatMsg", lambda e: seen.append("late"))
    source, process = link.subscribed["kryten.events.cytube.lounge.>"]
    dispatcher.after_close(link)  # type: ignore[arg-type]
    process(source, json.dumps(chat("late")).encode())
    assert seen == []
    assert dispatcher.channel_statuses()[0].received == 0


@pytest.mark.parametrize("count", [1, 3])
def test_channel_statuses_count_per_token(count: int) -> None:
    dispatcher, link = make([("cytu.be", "lounge"), ("other.tv", "Lounge")])
    for _ in range(count):
        link.deliver("lounge", chat("x"))
    statuses = dispatcher.channel_statuses()
    assert [s.received for s in statuses] == [count, count]
    assert dispatcher.health(link).events_received == count  # type: ignore[arg-type]


def test_concurrent_pool_starts_threads_only_as_calls_need_them() -> None:
    from kryten_sync._core.workers import ConcurrentPool

    pool = ConcurrentPool(1000, 100)
    assert pool.threads == []  # nothing started for a large maximum
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocking(stats: Any) -> None:
        started.release()
        release.wait(5)

    try:
        for _ in range(3):
            pool.submit(blocking)
            assert started.acquire(timeout=5)
        assert len(pool.threads) == 3  # three calls at once, three threads
        release.set()
        done = threading.Event()
        for _ in range(20):  # sequential calls reuse the idle threads
            done.clear()
            pool.submit(lambda stats: done.set())
            assert done.wait(5)
        assert len(pool.threads) <= 4
    finally:
        release.set()
        pool.close()
    for thread in pool.threads:
        thread.join(5)
        assert not thread.is_alive()


def test_concurrent_pool_never_exceeds_its_size() -> None:
    from kryten_sync._core.workers import ConcurrentPool

    pool = ConcurrentPool(2, 100)
    release = threading.Event()
    try:
        for _ in range(6):
            pool.submit(lambda stats: release.wait(5))
        assert len(pool.threads) == 2
    finally:
        release.set()
        pool.close()
    for thread in pool.threads:
        thread.join(5)
