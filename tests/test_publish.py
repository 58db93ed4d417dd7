"""Publisher, the publish path from any thread into the loop
(kryten_sync/_core/publish.py): per-thread order, one wake-up per batch, the buffer
while reconnecting, what is written off (never sent, unconfirmed) and the guards.

No nats-server: a stand-in for the nats-py client records what reaches ``publish``. The
real connection is covered by the integration tests (test_threads, test_wire).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from kryten_sync._core.loop import LoopThread
from kryten_sync._core.publish import Publisher, lost_messages
from kryten_sync.errors import ClientClosedError, NotConnectedError, PublishError
from kryten_sync.stats import RateLimitedLog

T = TypeVar("T")
WAIT = 5.0  # bound on every wait; the tests finish in milliseconds
BUFFER = 100  # payload bytes the publisher keeps while disconnected


class StandInNats:
    """The attributes of ``nats.aio.client.Client`` that Publisher reads, a ``publish``
    that records ``(subject, payload, headers)`` and yields to the loop, and a flush
    whose PING is answered at once, or with ``auto_pong`` off, by :meth:`answer`."""

    def __init__(self) -> None:
        self.is_connected = True
        self.is_reconnecting = False
        self.is_closed = False
        self.max_payload = 1024
        self.sent: list[tuple[str, bytes, dict[str, str] | None]] = []
        self.threads: set[threading.Thread] = set()
        self.fail: BaseException | None = None
        self.fail_subject: str | None = None
        self.auto_pong = True
        self.pongs: list[threading.Event] = []  # one per PING, answered in order

    def reconnecting(self) -> None:
        self.is_connected = False
        self.is_reconnecting = True

    def reconnected(self) -> None:
        self.is_connected = True
        self.is_reconnecting = False

    async def _flush_pending(self, force_flush: bool = False) -> None:
        if self.is_connected:  # like nats-py: no suspension while disconnected
            await asyncio.sleep(0)

    @property
    def pings(self) -> int:
        return len(self.pongs)

    def answer(self) -> None:
        """Answer the oldest PING not answered yet."""
        next(p for p in self.pongs if not p.is_set()).set()

    async def flush(self, timeout: int = 10) -> None:
        if not self.is_connected:
            return  # nats-py returns at once, without a PONG, once its reader is gone
        pong = threading.Event()
        if self.auto_pong:
            pong.set()
        self.pongs.append(pong)
        while not pong.is_set():
            await asyncio.sleep(0.001)

    async def publish(
        self, subject: str, payload: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.threads.add(threading.current_thread())
        # A real publish may suspend; order must hold across that.
        await asyncio.sleep(0)
        if self.fail is not None and self.fail_subject in (None, subject):
            raise self.fail
        self.sent.append((subject, payload, headers))


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    thread = LoopThread()
    thread.start()
    yield thread
    thread.stop(WAIT)


@pytest.fixture
def nc() -> StandInNats:
    return StandInNats()


@pytest.fixture
def publisher(lt: LoopThread, nc: StandInNats) -> Publisher:
    pub = Publisher(lt, RateLimitedLog(logging.getLogger("tests.publish")), WAIT, BUFFER)
    pub.nc = nc  # type: ignore[assignment]
    return pub


def drain(lt: LoopThread, publisher: Publisher) -> None:
    """Wait until everything put so far has reached the stand-in."""
    lt.call(publisher.drain(), WAIT, "drain")


@contextmanager
def loop_held(lt: LoopThread) -> Iterator[None]:
    """Keep the loop thread busy (blocked) for the duration of the block."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(WAIT)

    lt.call_soon(hold)
    assert holding.wait(WAIT)
    try:
        yield
    finally:
        release.set()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def count_calls(lt: LoopThread, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``lt.call_soon`` (each is one loop wake-up); a one-item list."""
    original: Callable[..., None] = lt.call_soon
    count = [0]

    def counted(fn: Callable[..., object], *args: object) -> None:
        count[0] += 1
        original(fn, *args)

    monkeypatch.setattr(lt, "call_soon", counted)
    return count


def test_each_threads_items_reach_nats_in_the_order_it_put_them(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    n_threads, per_thread = 8, 500
    start = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def body(tid: int) -> None:
        try:
            start.wait(WAIT)
            for seq in range(per_thread):
                publisher.put(f"t.{tid}", f"{tid}:{seq}".encode(), None, None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    drain(lt, publisher)

    assert len(nc.sent) == n_threads * per_thread
    for tid in range(n_threads):
        seqs = [int(p.split(b":")[1]) for s, p, _ in nc.sent if s == f"t.{tid}"]
        assert seqs == list(range(per_thread)), f"thread {tid} out of order"
    assert nc.threads == {lt.thread}
    assert publisher.sent == n_threads * per_thread
    assert publisher.errors == 0


def test_a_batch_put_while_the_loop_is_busy_wakes_it_once(
    lt: LoopThread, nc: StandInNats, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    with loop_held(lt):
        wakeups = count_calls(lt, monkeypatch)
        for seq in range(100):
            publisher.put("batch", str(seq).encode(), {"n": str(seq)}, "chat")
        assert wakeups[0] == 1
    drain(lt, publisher)
    assert [p for _, p, _ in nc.sent] == [str(seq).encode() for seq in range(100)]
    assert nc.sent[0][2] == {"n": "0"}
    assert publisher.sent_by_tag == {"chat": 100}

    publisher.put("batch", b"next", None, None)  # the drain ended: the next put wakes again
    assert wakeups[0] == 2
    drain(lt, publisher)


def on_loop(lt: LoopThread, fn: Callable[[], T]) -> T:
    """``fn()`` run on the loop thread (where the connection calls the publisher)."""

    async def run() -> T:
        return fn()

    return lt.call(run(), WAIT, "on the loop")


def test_put_while_reconnecting_waits_in_the_client_until_resumed(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.reconnecting()
    publisher.put("r", b"1", None, None)
    publisher.put("r", b"2", None, "chat")
    drain(lt, publisher)
    assert nc.sent == []  # nothing handed to nats-py while it reconnects
    assert publisher.buffered == 2
    assert publisher.sent == 0
    nc.reconnected()
    on_loop(lt, publisher.resume)
    wait_for(lambda: len(nc.sent) == 2)
    assert [p for _, p, _ in nc.sent] == [b"1", b"2"]
    assert (publisher.buffered, publisher.sent, publisher.sent_by_tag) == (0, 2, {"chat": 1})


def test_what_was_queued_before_the_drop_goes_first_after_the_reconnect(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    with loop_held(lt):
        publisher.put("q", b"1", None, None)
        publisher.put("q", b"2", None, None)
        nc.reconnecting()
    publisher.put("q", b"3", None, None)
    drain(lt, publisher)
    assert nc.sent == []
    nc.reconnected()
    on_loop(lt, publisher.resume)
    publisher.put("q", b"4", None, None)
    wait_for(lambda: len(nc.sent) == 4)
    assert [p for _, p, _ in nc.sent] == [b"1", b"2", b"3", b"4"]


def test_a_full_reconnect_buffer_raises_a_retryable_publish_error_counted_once(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.reconnecting()
    publisher.put("r", b"x" * BUFFER, None, None)
    with pytest.raises(PublishError, match="reconnect buffer is full") as caught:
        publisher.put("r", b"y", None, None)
    assert caught.value.retryable
    assert publisher.errors == 0  # put() leaves counting to the caller...
    with pytest.raises(PublishError):
        publisher.publish("r", b"y", None, None)
    assert publisher.errors == 1  # ...publish() counts the call
    assert publisher.buffered == 1


def test_a_message_nats_py_refuses_on_the_loop_is_written_off_and_reported(
    lt: LoopThread,
    nc: StandInNats,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused: list[list[tuple[str, bytes, object, object]]] = []
    publisher.on_refused = refused.append
    nc.fail, nc.fail_subject = RuntimeError("broken"), "bad"
    with caplog.at_level(logging.WARNING, logger="tests.publish"):
        publisher.put("ok", b"1", None, None)
        publisher.put("bad", b"2", None, "chat")  # known only on the loop: no error here
        publisher.put("ok", b"3", None, None)
        drain(lt, publisher)
    assert [p for _, p, _ in nc.sent] == [b"1", b"3"]
    assert (publisher.sent, publisher.errors) == (2, 0)
    assert (publisher.lost, publisher.commands_lost) == (1, 1)
    assert refused == [[("bad", b"2", None, "chat")]]
    assert "publish to 'bad' failed" in caplog.text


def test_close_writes_off_what_waits_and_refuses_later_puts(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.reconnecting()
    publisher.put("a", b"1", None, "chat")
    publisher.put("b", b"2", None, None)
    not_sent, unconfirmed = on_loop(lt, publisher.close)
    assert not_sent == [("a", b"1", None, "chat"), ("b", b"2", None, None)]
    assert unconfirmed == []
    assert (publisher.lost, publisher.commands_lost, publisher.buffered) == (2, 1, 0)
    assert (publisher.sent, publisher.unconfirmed) == (0, 0)
    with pytest.raises(ClientClosedError):
        publisher.put("c", b"3", None, None)
    assert on_loop(lt, publisher.close) == ([], [])  # idempotent: nothing counted twice
    assert publisher.lost == 2


def test_sent_messages_stay_unconfirmed_until_the_pong(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.auto_pong = False  # the server does not answer yet
    publisher.put("s", b"1", None, None)
    publisher.put("s", b"2", None, "chat")
    drain(lt, publisher)
    wait_for(lambda: nc.pings >= 1)
    assert nc.sent and publisher.sent == 2
    # The connection drops before the PONG: both are written off as unconfirmed.
    nc.reconnecting()
    unconfirmed = on_loop(lt, publisher.connection_lost)
    assert [p for _, p, _, _ in unconfirmed] == [b"1", b"2"]
    assert (publisher.unconfirmed, publisher.commands_unconfirmed) == (2, 1)
    assert publisher.lost == 0


def test_a_pong_confirms_what_was_sent_before_its_ping(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    publisher.put("s", b"1", None, None)
    drain(lt, publisher)
    lt.call(publisher.confirm(), WAIT, "confirm")
    nc.reconnecting()
    assert on_loop(lt, publisher.connection_lost) == []
    assert publisher.unconfirmed == 0


def test_overlapping_confirmations_each_confirm_only_their_own_batches(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.auto_pong = False
    publisher.put("s", b"1", None, None)
    drain(lt, publisher)  # batch 1; the background confirmation sends PING 1
    wait_for(lambda: nc.pings == 1)
    flush_call = asyncio.run_coroutine_threadsafe(publisher.confirm(), lt.loop)  # PING 2
    wait_for(lambda: nc.pings == 2)
    publisher.put("s", b"2", None, None)
    drain(lt, publisher)  # batch 2, written after both PINGs
    nc.answer()  # PONG 1 confirms batch 1; the background loop pings for batch 2
    wait_for(lambda: nc.pings == 3)
    nc.answer()  # PONG 2 covers batch 1 only: batch 2 must stay unconfirmed
    flush_call.result(WAIT)
    nc.reconnecting()
    unconfirmed = on_loop(lt, publisher.connection_lost)
    assert [p for _, p, _, _ in unconfirmed] == [b"2"]


def test_the_background_confirmation_ends_when_the_connection_drops(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.auto_pong = False
    publisher.put("s", b"1", None, None)
    drain(lt, publisher)
    wait_for(lambda: nc.pings == 1)
    nc.reconnecting()
    nc.answer()  # the flush returns, but the connection is down: nothing is confirmed
    time.sleep(0.05)  # the stand-in's flush sees the answer within a millisecond
    # A confirmation loop retrying at once would hold the loop thread (nats-py's flush
    # does not suspend while disconnected): the loop must stay responsive.
    on_loop(lt, lambda: None)
    assert nc.pings == 1
    assert [p for _, p, _, _ in on_loop(lt, publisher.connection_lost)] == [b"1"]


def test_lost_messages_carry_the_commands_action_and_correlation_id() -> None:
    body = json.dumps({"action": "chat", "data": {}, "correlation_id": "abc"}).encode()
    items = [("kryten.commands.cytube.lounge.chat", body, None, "chat"), ("raw", b"x", None, None)]
    command, raw = lost_messages(items, "not sent")
    assert (command.action, command.correlation_id, command.reason) == ("chat", "abc", "not sent")
    assert (command.subject, command.payload) == items[0][:2]
    assert (raw.action, raw.correlation_id, raw.payload) == (None, None, b"x")


def test_put_without_a_connection_raises_not_connected(publisher: Publisher) -> None:
    publisher.nc = None
    with pytest.raises(NotConnectedError, match="not connected"):
        publisher.put("s", b"x", None, None)


def test_put_on_a_closed_connection_raises_client_closed(
    nc: StandInNats, publisher: Publisher
) -> None:
    nc.is_closed = True
    with pytest.raises(ClientClosedError):
        publisher.put("s", b"x", None, None)
    assert nc.sent == []


def test_payload_over_max_payload_raises_publish_error_naming_both_sizes(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    with pytest.raises(PublishError, match=r"1025 bytes exceeds .* max_payload of 1024 bytes"):
        publisher.put("big", b"x" * 1025, None, None)
    publisher.put("fits", b"x" * 1024, None, None)
    drain(lt, publisher)
    assert [s for s, _, _ in nc.sent] == ["fits"]


def test_put_on_a_closing_loop_raises_client_closed(lt: LoopThread, publisher: Publisher) -> None:
    lt.closing = True
    with pytest.raises(ClientClosedError, match="client is closed"):
        publisher.put("s", b"x", None, None)
