"""Pipelined publishing from any thread into the connection's loop, with every accepted
message accounted for.

A publish appends to a deque and wakes the loop at most once per batch (one
``call_soon_threadsafe`` costs a pipe write; a round trip 25-120 µs), which keeps each
thread's order because one task drains the deque in FIFO order into nats-py.

While nats-py is reconnecting nothing is handed to it: messages wait in the deque, up to
``buffer_limit`` payload bytes (past that a publish raises a retryable PublishError in
the caller), and go out in order once reconnected. So the messages lost when the client
gives up or closes while disconnected are exactly the ones still in the deque: they are
counted and returned by :meth:`Publisher.close`, never counted as sent.

Core NATS has no acknowledgement, but the server answers a PING only after everything
written before it: one confirming flush at a time follows the traffic, and what was
written to a connection that drops before its confirmation is counted "unconfirmed"
(:meth:`Publisher.connection_lost`): it may or may not have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import nats.errors

from kryten_sync.errors import ClientClosedError, KrytenError, NotConnectedError, PublishError
from kryten_sync.raw import LostMessage, LostReason
from kryten_sync.stats import RateLimitedLog

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from .loop import LoopThread

_Item = tuple[str, bytes, dict[str, str] | None, str | None]
_CONFIRM_INTERVAL = 0.005  # seconds between the background confirmations
#: The name of the task that follows the traffic with confirmations (it comes and goes).
CONFIRM_TASK = "kryten-sync-confirm"


async def confirmed_flush(nc: NATS, timeout: float) -> None:
    """``nc.flush()`` that really follows everything sent before it.

    nats-py 2.16's ``flush()`` writes its PING straight to the socket, ahead of commands
    still in its pending buffer (SUBs, PUBs), so the PONG can come back before the server
    has seen them (measured: 17 of 300 messages published right after a subscribe were
    missed). Push the pending buffer out first.
    """
    await nc._flush_pending(force_flush=True)
    await nc.flush(max(1, math.ceil(timeout)))


def lost_messages(items: list[_Item], reason: LostReason) -> list[LostMessage]:
    """``items`` as the ``on_lost`` hook receives them (commands carry their action and
    correlation id, read back from the body)."""
    result = []
    for subject, payload, headers, tag in items:
        correlation_id = None
        if tag is not None:
            with contextlib.suppress(ValueError, AttributeError):
                correlation_id = json.loads(payload).get("correlation_id")
        result.append(LostMessage(subject, payload, headers, tag, correlation_id, reason))
    return result


class Publisher:
    """The publish path of one connection. ``tag`` names a command action for metrics."""

    def __init__(
        self, loop: LoopThread, log: RateLimitedLog, call_timeout: float, buffer_limit: int
    ) -> None:
        self._loop = loop
        self._log = log
        self._call_timeout = call_timeout
        self._buffer_limit = buffer_limit
        self._items: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._scheduled = False  # a drain is scheduled, running, or parked while disconnected
        self._queued_bytes = 0  # payload bytes in _items
        self._closed = False
        self._drain_lock: asyncio.Lock | None = None
        self.nc: NATS | None = None
        # Handed to nats-py but not yet confirmed by a PONG, in batches (loop thread).
        self._unconfirmed: deque[list[_Item]] = deque()
        self._confirming: asyncio.Task[None] | None = None
        self._epoch = 0  # bumped at each disconnect: a confirmation from before is void
        self._appended = 0  # batches ever appended to _unconfirmed
        self._head = 0  # batches ever removed from it
        # Written on the loop thread only (sent*), under _lock (errors), or by whoever
        # holds the items being written off (lost*, unconfirmed*).
        self.sent = 0
        self.sent_by_tag: dict[str, int] = {}
        self.errors = 0  # calls that raised: one per call, whatever its retries
        self.lost = 0  # accepted, never sent
        self.commands_lost = 0
        self.unconfirmed = 0  # written to a connection that dropped before confirming
        self.commands_unconfirmed = 0
        # Told about messages nats-py refused on the loop (they are written off).
        self.on_refused: Callable[[list[_Item]], None] | None = None

    @property
    def buffered(self) -> int:
        """Messages accepted and not yet handed to nats-py (waiting for a connection)."""
        return len(self._items)

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
        size = len(payload)
        if size > nc.max_payload:
            raise PublishError(
                f"publish to {subject!r}: payload of {size} bytes exceeds the "
                f"server's max_payload of {nc.max_payload} bytes"
            )
        connected = nc.is_connected
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client is closed")
            if not connected and self._queued_bytes + size > self._buffer_limit:
                raise PublishError(
                    f"publish to {subject!r}: disconnected, and the reconnect buffer is "
                    f"full ({len(self._items)} messages, {self._queued_bytes} bytes wait "
                    f"for the connection; nats.reconnect_buffer_size is "
                    f"{self._buffer_limit}); the message was not sent",
                    retryable=True,
                )
            self._items.append((subject, payload, headers, tag))
            self._queued_bytes += size
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon(self._start_drain)

    def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, tag: str | None
    ) -> None:
        """:meth:`put`, counting a refusal as one publish error."""
        try:
            self.put(subject, payload, headers, tag)
        except KrytenError:
            self.count_error()
            raise

    def count_error(self) -> None:
        """Count one publish call that raised to its caller (any thread)."""
        with self._lock:
            self.errors += 1

    def _start_drain(self) -> None:
        self._loop.loop.create_task(self.drain())

    def resume(self) -> None:
        """Reconnected: send what waited (loop thread)."""
        if self._items:
            with self._lock:
                self._scheduled = True
            self._start_drain()

    async def drain(self) -> None:
        """Hand everything queued to nats-py, in order, while connected (loop thread)."""
        if self._drain_lock is None:
            self._drain_lock = asyncio.Lock()
        nc = self.nc
        assert nc is not None
        async with self._drain_lock:
            while True:
                with self._lock:
                    if not self._items or not nc.is_connected:
                        # Disconnected: stay "scheduled", so puts do not wake the loop;
                        # resume() restarts the drain.
                        self._scheduled = bool(self._items)
                        return
                    batch = list(self._items)
                    self._items.clear()
                    self._queued_bytes = 0
                await self._send(nc, batch)

    async def _send(self, nc: NATS, batch: list[_Item]) -> None:
        sent_by_tag = self.sent_by_tag
        failed: list[int] = []
        for index, (subject, payload, headers, tag) in enumerate(batch):
            try:
                await nc.publish(subject, payload, headers=headers)
            except Exception as exc:
                if isinstance(exc, nats.errors.OutboundBufferLimitError) and not nc.is_closed:
                    # Disconnected within the batch: the rest waits for the reconnect.
                    self._requeue(batch[index:])
                    del batch[index:]
                    break
                failed.append(index)
                self._log.limited("publish-error", "publish to %r failed: %r", subject, exc)
                continue
            self.sent += 1
            if tag is not None:
                sent_by_tag[tag] = sent_by_tag.get(tag, 0) + 1
        if failed:
            dead = set(failed)
            refused = [batch[i] for i in failed]
            self._write_off(refused, "not sent")
            if self.on_refused is not None:
                self.on_refused(refused)
            batch = [item for i, item in enumerate(batch) if i not in dead]
        if batch:
            self._unconfirmed.append(batch)
            self._appended += 1
            if self._confirming is None:
                loop = asyncio.get_running_loop()
                self._confirming = loop.create_task(self._confirm(), name=CONFIRM_TASK)

    def _requeue(self, items: list[_Item]) -> None:
        with self._lock:
            self._items.extendleft(reversed(items))
            self._queued_bytes += sum(len(item[1]) for item in items)

    async def _confirm(self) -> None:
        """Follow the traffic with one PING at a time; its PONG confirms every batch
        written before it (loop thread)."""
        epoch = self._epoch
        try:
            while self._unconfirmed and self._epoch == epoch and await self.confirm():
                # At most one PING per interval: under steady traffic each covers many
                # messages, at the price of a few ms more in doubt if the link drops.
                await asyncio.sleep(_CONFIRM_INTERVAL)
        except Exception:  # a timeout or a drop: the next batch or connection_lost() decides
            pass
        finally:
            if self._epoch == epoch:
                self._confirming = None

    async def confirm(self) -> bool:
        """Wait for the server to confirm everything handed to nats-py so far; False if
        the connection is down or dropped meanwhile (loop thread)."""
        nc = self.nc
        assert nc is not None
        if not nc.is_connected:
            # Also keeps _confirm from spinning: nats-py's flush returns at once, without
            # a PONG and without suspending, while its reader is gone.
            return False
        epoch, mark = self._epoch, self._appended
        await confirmed_flush(nc, self._call_timeout)
        # Only a connection that stayed up confirms. Batches are counted absolutely
        # because two confirmations may overlap (a flush() call and the background one).
        if self._epoch != epoch or not nc.is_connected:
            return False
        unconfirmed = self._unconfirmed
        while self._head < mark and unconfirmed:
            unconfirmed.popleft()
            self._head += 1
        return True

    def connection_lost(self) -> list[_Item]:
        """The connection dropped: what it had not confirmed is written off as
        "unconfirmed" and returned (loop thread)."""
        self._epoch += 1
        task, self._confirming = self._confirming, None
        if task is not None:
            task.cancel()
        return self._take_unconfirmed()

    def _take_unconfirmed(self) -> list[_Item]:
        items = [item for batch in self._unconfirmed for item in batch]
        self._unconfirmed.clear()
        self._head = self._appended
        if items:
            self._write_off(items, "unconfirmed")
        return items

    def close(self) -> tuple[list[_Item], list[_Item]]:
        """Refuse further puts; write off and return ``(not_sent, unconfirmed)``: what
        is still queued, and what was never confirmed. Idempotent; call it on the loop
        thread, or once the loop has stopped."""
        with self._lock:
            self._closed = True
            items = list(self._items)
            self._items.clear()
            self._queued_bytes = 0
        if items:
            self._write_off(items, "not sent")
        return items, self._take_unconfirmed()

    def _write_off(self, items: list[_Item], reason: LostReason) -> None:
        commands = sum(1 for item in items if item[3] is not None)
        if reason == "not sent":
            self.lost += len(items)
            self.commands_lost += commands
        else:
            self.unconfirmed += len(items)
            self.commands_unconfirmed += commands
