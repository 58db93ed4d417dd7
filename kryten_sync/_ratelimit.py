"""The client-side chat limiter: a burst, then one message per ``min_delay`` seconds.

CyTube's chat antiflood (``chat_antiflood`` option, default burst 4 then 1/s; without it
20 then 10/s) silently drops what exceeds it, so the client paces its own chat and PMs.
``jitter`` (kryten-py's ``chat_jitter``) adds a random 0..jitter seconds to each spacing.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from typing import Final

from ._validate import require_int, require_seconds

#: CyTube's default channel antiflood: 4 messages at once, then one per second.
DEFAULT_CHAT_BURST: Final = 4
DEFAULT_CHAT_MIN_DELAY: Final = 1.0


class RateLimiter:
    """A thread-safe GCRA ("virtual scheduling") limiter with reservation.

    Up to ``burst`` messages go out at once; after that one per ``min_delay`` seconds, and
    idle time earns the burst back at the same rate. :meth:`acquire` reserves the caller's
    slot under a lock and sleeps outside it, so concurrent callers get distinct slots in
    the order they reached the lock and nobody waits behind another's sleep.
    Each spacing is ``min_delay`` plus ``jitter * uniform(0, 1)`` (the burst tolerance
    is not jittered). ``min_delay == jitter == 0`` disables the limiter.
    """

    def __init__(
        self,
        burst: int,
        min_delay: float,
        *,
        jitter: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        require_int("RateLimiter", "burst", burst, minimum=1)
        require_seconds("RateLimiter", "min_delay", min_delay)
        require_seconds("RateLimiter", "jitter", jitter)
        self._burst = burst
        self._interval = float(min_delay)
        self._jitter = float(jitter)
        self._uniform = uniform
        # A slot is free when the theoretical arrival time is at most this far ahead.
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = -math.inf  # theoretical arrival time of the next message

    @property
    def enabled(self) -> bool:
        """False when ``min_delay`` and ``jitter`` are 0: :meth:`acquire` then never waits."""
        return self._interval > 0 or self._jitter > 0

    @property
    def burst(self) -> int:
        """How many messages may go out at once."""
        return self._burst

    @property
    def min_delay(self) -> float:
        """Seconds between messages once the burst is used up."""
        return self._interval

    @property
    def jitter(self) -> float:
        """Most random seconds added to each spacing."""
        return self._jitter

    def reserve(self) -> float:
        """Take the next slot without waiting; return how many seconds from now it is."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            send_at = max(now, tat - self._tolerance)
            self._tat = tat + self._interval + self._jitter * self._uniform()
        return send_at - now

    def acquire(self) -> float:
        """Block the calling thread until one message may be sent; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


__all__ = ["DEFAULT_CHAT_BURST", "DEFAULT_CHAT_MIN_DELAY", "RateLimiter"]
