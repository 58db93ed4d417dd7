"""Publisher, the publish path from any thread into the loop
(kryten_sync/_core/publish.py): per-thread order, one wake-up per batch, the blocking
path while reconnecting and the guards.

No nats-server: a stand-in for the nats-py client records what reaches ``publish``. The
real connection is covered by the integration tests (test_threads, test_wire).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import nats.errors
import pytest

from kryten_sync._core.loop import LoopThread
from kryten_sync._core.publish import Publisher
from kryten_sync.errors import ClientClosedError, NotConnectedError, PublishError
from kryten_sync.stats import RateLimitedLog

WAIT = 5.0  # bound on every wait; the tests finish in milliseconds


class StandInNats:
    """The attributes of ``nats.aio.client.Client`` that Publisher reads, and a
    ``publish`` that records ``(subject, payload, headers)`` and yields to the loop."""

    def __init__(self) -> None:
        self.is_connected = True
        self.is_reconnecting = False
        self.is_closed = False
        self.max_payload = 1024
        self.sent: list[tuple[str, bytes, dict[str, str] | None]] = []
        self.threads: set[threading.Thread] = set()
        self.fail: BaseException | None = None
        self.fail_subject: str | None = None

    def reconnecting(self) -> None:
        self.is_connected = False
        self.is_reconnecting = True

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
    pub = Publisher(lt, RateLimitedLog(logging.getLogger("tests.publish")), WAIT)
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


def test_put_while_reconnecting_publishes_before_returning(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.reconnecting()
    publisher.put("r", b"now", None, None)
    # No drain needed: the blocking path has handed it over when put returns.
    assert nc.sent == [("r", b"now", None)]
    assert nc.threads == {lt.thread}


def test_put_while_reconnecting_sends_what_was_queued_first(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    with loop_held(lt):
        publisher.put("q", b"1", None, None)
        publisher.put("q", b"2", None, None)
        nc.reconnecting()
    publisher.put("q", b"3", None, None)
    assert [p for _, p, _ in nc.sent] == [b"1", b"2", b"3"]


def test_error_while_reconnecting_surfaces_in_the_caller_as_publish_error(
    lt: LoopThread, nc: StandInNats, publisher: Publisher
) -> None:
    nc.reconnecting()
    buffer_full = nats.errors.OutboundBufferLimitError()
    nc.fail = buffer_full
    with pytest.raises(PublishError, match="outbound buffer is full") as caught:
        publisher.put("r", b"lost", None, None)
    assert caught.value.retryable
    assert caught.value.__cause__ is buffer_full
    assert nc.sent == []
    assert publisher.errors == 1


def test_error_in_a_pipelined_publish_is_counted_and_logged_not_raised(
    lt: LoopThread,
    nc: StandInNats,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nc.fail, nc.fail_subject = RuntimeError("broken"), "bad"
    with caplog.at_level(logging.WARNING, logger="tests.publish"):
        publisher.put("ok", b"1", None, None)
        publisher.put("bad", b"2", None, None)  # no error here: it is known only on the loop
        publisher.put("ok", b"3", None, None)
        drain(lt, publisher)
    assert [p for _, p, _ in nc.sent] == [b"1", b"3"]
    assert (publisher.sent, publisher.errors) == (2, 1)
    assert "publish to 'bad' failed" in caplog.text


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
