"""Pipelined publishing from any thread into the connection's loop.

While connected, a publish appends to a deque and wakes the loop at most once per
batch (one ``call_soon_threadsafe`` costs a pipe write; a round trip 25-120 µs), which
keeps each thread's order because one task drains the deque in FIFO order. While
reconnecting, a publish takes the blocking path instead, so a message nats-py cannot
buffer raises in the caller rather than vanishing on the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING

from kryten_sync.errors import ClientClosedError, NotConnectedError, PublishError, raise_translated
from kryten_sync.stats import RateLimitedLog

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from .loop import LoopThread

_Item = tuple[str, bytes, dict[str, str] | None, str | None]


class Publisher:
    """The publish path of one connection. ``tag`` names a command action for metrics."""

    def __init__(self, loop: LoopThread, log: RateLimitedLog, call_timeout: float) -> None:
        self._loop = loop
        self._log = log
        self._call_timeout = call_timeout
        self._items: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._drain_lock: asyncio.Lock | None = None
        self.nc: NATS | None = None
        # Written on the loop thread only.
        self.sent = 0
        self.errors = 0
        self.sent_by_tag: dict[str, int] = {}

    def put(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, tag: str | None
    ) -> None:
        """Publish from any thread; raises what can be known now (see module doc)."""
        self._loop.check_usable()
        nc = self.nc
        if nc is None:
            raise NotConnectedError("not connected")
        if nc.is_closed:
            raise ClientClosedError("the NATS connection is closed")
        if len(payload) > nc.max_payload:
            raise PublishError(
                f"publish to {subject!r}: payload of {len(payload)} bytes exceeds the "
                f"server's max_payload of {nc.max_payload} bytes"
            )
        if not nc.is_connected:
            self._loop.call(
                self._publish_now(subject, payload, headers, tag),
                self._call_timeout,
                f"publish to {subject!r}",
            )
            return
        with self._lock:
            self._items.append((subject, payload, headers, tag))
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon(self._start_drain)

    def _start_drain(self) -> None:
        self._loop.loop.create_task(self.drain())

    async def drain(self) -> None:
        """Hand everything queued to nats-py, in order (loop thread)."""
        if self._drain_lock is None:
            self._drain_lock = asyncio.Lock()
        async with self._drain_lock:
            while True:
                with self._lock:
                    if not self._items:
                        self._scheduled = False
                        return
                    batch = list(self._items)
                    self._items.clear()
                for subject, payload, headers, tag in batch:
                    try:
                        await self._send(subject, payload, headers, tag)
                    except Exception as exc:
                        self.errors += 1
                        self._log.limited("publish-error", "publish to %r failed: %r", subject, exc)

    async def _publish_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, tag: str | None
    ) -> None:
        await self.drain()
        try:
            await self._send(subject, payload, headers, tag)
        except Exception as exc:
            self.errors += 1
            raise_translated(exc, f"publish to {subject!r}")

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, tag: str | None
    ) -> None:
        assert self.nc is not None
        await self.nc.publish(subject, payload, headers=headers)
        self.sent += 1
        if tag is not None:
            self.sent_by_tag[tag] = self.sent_by_tag.get(tag, 0) + 1
