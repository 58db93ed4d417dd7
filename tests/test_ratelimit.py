"""The chat rate limiter, mostly on a fake clock (no real sleeping)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from kryten_sync._ratelimit import DEFAULT_CHAT_BURST, DEFAULT_CHAT_MIN_DELAY, RateLimiter
from kryten_sync.errors import KrytenValidationError


class FakeTime:
    """A clock that only moves when told to (or, if ``advance_on_sleep``, when slept on)."""

    def __init__(self, *, advance_on_sleep: bool = True) -> None:
        self.now = 1000.0
        self.advance_on_sleep = advance_on_sleep
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds

    def limiter(self, burst: int, min_delay: float) -> RateLimiter:
        return RateLimiter(burst, min_delay, clock=self.clock, sleep=self.sleep)


def test_defaults_are_cytube_antiflood() -> None:
    assert (DEFAULT_CHAT_BURST, DEFAULT_CHAT_MIN_DELAY) == (4, 1.0)


def test_burst_then_one_per_min_delay() -> None:
    fake = FakeTime()
    limiter = fake.limiter(4, 1.0)
    assert limiter.enabled
    assert [limiter.acquire() for _ in range(4)] == [0.0] * 4
    assert fake.sleeps == []
    start = fake.now
    assert [limiter.acquire() for _ in range(3)] == [1.0, 1.0, 1.0]
    assert fake.sleeps == [1.0, 1.0, 1.0]
    assert fake.now == start + 3.0


def test_back_to_back_callers_without_sleeping_get_increasing_slots() -> None:
    fake = FakeTime(advance_on_sleep=False)
    limiter = fake.limiter(4, 0.5)
    assert [limiter.reserve() for _ in range(8)] == [0, 0, 0, 0, 0.5, 1.0, 1.5, 2.0]


def test_idle_time_earns_the_burst_back() -> None:
    fake = FakeTime()
    limiter = fake.limiter(3, 1.0)
    for _ in range(3):
        limiter.acquire()
    assert limiter.acquire() == 1.0
    fake.now += 10.0  # long idle: the whole burst is back, not more
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() == 1.0


def test_partial_refill() -> None:
    fake = FakeTime()
    limiter = fake.limiter(4, 1.0)
    for _ in range(6):
        limiter.acquire()  # burst used up, then paced
    fake.now += 2.0  # two intervals idle: two messages free again
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 1.0]


def test_burst_of_one_spaces_every_message() -> None:
    fake = FakeTime()
    limiter = fake.limiter(1, 0.25)
    assert [limiter.acquire() for _ in range(4)] == [0.0, 0.25, 0.25, 0.25]


def test_disabled_never_waits() -> None:
    fake = FakeTime()
    limiter = fake.limiter(4, 0)
    assert not limiter.enabled
    assert all(limiter.acquire() == 0 for _ in range(100))
    assert fake.sleeps == []
    assert limiter.min_delay == 0
    assert limiter.burst == 4


@pytest.mark.parametrize(
    ("burst", "min_delay"),
    [(0, 1.0), (-1, 1.0), (True, 1.0), (2.0, 1.0), (4, -0.1), (4, float("nan")), (4, "1")],
)
def test_bad_arguments(burst: object, min_delay: object) -> None:
    with pytest.raises(KrytenValidationError):
        RateLimiter(burst, min_delay)  # type: ignore[arg-type]


def test_eight_threads_get_distinct_ordered_slots_on_a_fake_clock() -> None:
    fake = FakeTime(advance_on_sleep=False)  # every thread calls at the same instant
    limiter = fake.limiter(4, 1.0)
    barrier = threading.Barrier(8)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        wait = limiter.acquire()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
    assert sorted(waits) == [0, 0, 0, 0, 1, 2, 3, 4]
    assert Counter(fake.sleeps) == Counter([1.0, 2.0, 3.0, 4.0])
    # the next caller queues behind all eight
    assert limiter.reserve() == 5.0


def test_sleep_happens_outside_the_lock() -> None:
    fake = FakeTime(advance_on_sleep=False)
    release = threading.Event()
    first_sleep_started = threading.Event()
    sleeps: list[float] = []

    def blocking_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            first_sleep_started.set()
            assert release.wait(timeout=5)

    limiter = RateLimiter(1, 1.0, clock=fake.clock, sleep=blocking_sleep)
    assert limiter.acquire() == 0.0
    sleeper = threading.Thread(target=limiter.acquire)
    sleeper.start()
    assert first_sleep_started.wait(timeout=5)
    # While the first caller sleeps, another one gets its own, later slot at once.
    result: list[float] = []
    other = threading.Thread(target=lambda: result.append(limiter.acquire()))
    other.start()
    other.join(timeout=5)
    assert result == [2.0]
    assert sleeper.is_alive()
    release.set()
    sleeper.join(timeout=5)
    assert sleeps == [1.0, 2.0]


def test_real_clock_eight_threads() -> None:
    interval = 0.03
    limiter = RateLimiter(2, interval)
    barrier = threading.Barrier(8)
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        limiter.acquire()
        stamp = time.monotonic()
        with lock:
            sent.append(stamp)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    elapsed = time.monotonic() - start
    assert len(sent) == 8
    # burst of 2, then 6 more at 30 ms: the last goes out ~180 ms after the first
    assert 6 * interval - 0.01 <= elapsed < 0.6
    sent.sort()
    assert sent[-1] - sent[0] >= 6 * interval - 0.01


def test_jitter_is_added_to_each_spacing_not_to_the_burst() -> None:
    t = FakeTime()
    draws = iter([0.0, 1.0, 0.5, 0.25, 0.0])
    limiter = RateLimiter(
        2, 1.0, jitter=0.5, clock=t.clock, sleep=t.sleep, uniform=lambda: next(draws)
    )
    waits = [limiter.acquire() for _ in range(5)]
    # Burst of 2 at once; then each message waits 1.0 s plus jitter * (the draw of the
    # reservation before it): draws 1.0, 0.5, 0.25 after the second message.
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([1.5, 1.25, 1.125])
    assert limiter.jitter == 0.5


def test_jitter_alone_paces_and_both_zero_turn_the_limiter_off() -> None:
    t = FakeTime()
    limiter = RateLimiter(1, 0, jitter=0.4, clock=t.clock, sleep=t.sleep, uniform=lambda: 1.0)
    assert limiter.enabled
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0.0, 0.4, 0.4])
    assert not RateLimiter(1, 0, jitter=0).enabled
    with pytest.raises(KrytenValidationError, match="jitter"):
        RateLimiter(1, 1.0, jitter=-0.1)


def test_real_uniform_jitter_stays_within_bounds() -> None:
    t = FakeTime()
    limiter = RateLimiter(1, 0.1, jitter=0.2, clock=t.clock, sleep=t.sleep)
    waits = [limiter.acquire() for _ in range(200)][1:]
    assert all(0.1 <= w <= 0.3 + 1e-9 for w in waits)
    assert max(waits) - min(waits) > 0.1  # it really varies
