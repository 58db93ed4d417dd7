"""The one seam through which features plug into a connection.

A :class:`Feature` (event dispatch, health/metrics, service lifecycle, key-value) is
handed to the :class:`~kryten_sync._core.connection.Connection` in one ordered tuple and
sees the connection only through :class:`Link`: what it may use, declared in one place.
Every hook runs on the loop thread, in tuple order (``before_close`` too), and must not
run user code there: user code goes to a worker (:meth:`Link.start_worker`,
:meth:`Link.run_job`).

Lifetimes: a feature object lives as long as its client and sees one connection after
another; per-connection state is made in ``on_open`` and dropped in ``after_close``. A
feature never holds the client (the loop would keep an abandoned client alive).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kryten_sync.errors import NotConnectedError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

    from kryten_sync._core.publish import Publisher
    from kryten_sync._core.workers import Worker
    from kryten_sync.config import KrytenConfig
    from kryten_sync.raw import Message
    from kryten_sync.stats import HandlerStats, RateLimitedLog, SourceStats

T = TypeVar("T")
Item = TypeVar("Item")


class Source(Protocol):
    """One subscription feeding one worker thread."""

    name: str
    stats: SourceStats
    handler_stats: HandlerStats

    @property
    def worker(self) -> Worker[Any]: ...


class Link(Protocol):
    """What a feature may use of the connection it is plugged into."""

    config: KrytenConfig
    logger: logging.Logger
    log: RateLimitedLog  # rate-limited warnings for what can repeat per message
    publisher: Publisher
    reconnects: int
    connected_at: float
    last_gap_seconds: float

    @property
    def nc(self) -> NATS:
        """The nats-py client (loop thread only)."""
        ...

    @property
    def loop_thread(self) -> threading.Thread: ...

    @property
    def closing(self) -> bool: ...

    @property
    def disconnected_seconds(self) -> float: ...

    @property
    def state(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    async def asubscribe(
        self,
        subject: str,
        name: str,
        process: Callable[[Source, Item], None],
        item: Callable[[Msg], Item],
        *,
        queue: str = "",
        confirm: bool = True,
    ) -> Source:
        """Subscribe ``subject`` with a worker thread of its own that runs
        ``process(source, item(msg))`` for each message, in order (loop thread)."""
        ...

    def start_worker(self, name: str, process: Callable[[Item], None]) -> Worker[Item]:
        """A worker thread the connection finishes at close (loop thread)."""
        ...

    def start_source(self, name: str, process: Callable[[Source, Item], None]) -> Source:
        """A source without a subscription: a worker thread running ``process(source,
        item)`` for each item put to it, counted in health, finished at close (loop
        thread)."""
        ...

    async def astop_worker(self, worker: Worker[Any], caller: threading.Thread | None) -> None:
        """Let ``worker`` finish its queue, then forget it (loop thread)."""
        ...

    def run_job(self, job: Callable[[], None]) -> bool:
        """Run ``job()`` (user code) on the control worker; False when its queue is full."""
        ...

    def invoke(self, fn: Callable[[Any], None], arg: Any, stats: HandlerStats) -> bool:
        """Call user code on the current worker thread: counted, timed, errors logged
        and passed to the ``on_error`` hook; whether it returned normally."""
        ...

    def handler_stats(self) -> HandlerStats:
        """Handler counters of every subscription's worker."""
        ...

    def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> Message:
        """Send a request from a user thread and wait for the reply."""
        ...

    def call(self, coro: Coroutine[Any, Any, T], what: str, timeout: float | None = None) -> T:
        """Run ``coro`` on the loop from a user thread and wait for it."""
        ...


class Feature:
    """A part of the client that hooks into each connection; every hook is optional."""

    async def on_open(self, link: Link) -> None:
        """Connected: subscribe, start tasks (before ``connect()`` returns)."""

    def on_disconnect(self, link: Link) -> None:
        """The connection dropped; nats-py is reconnecting."""

    def on_reconnect(self, link: Link) -> None:
        """nats-py reconnected (subscriptions are restored by nats-py itself)."""

    async def before_close(self, link: Link, reason: str) -> None:
        """Closing, before the drain: the last chance to publish."""

    def after_close(self, link: Link) -> None:
        """Closed: drop what belongs to this connection (on the closing thread when the
        loop thread is already gone)."""


class AttachedFeature(Feature):
    """A feature that user threads call into: it keeps the current connection."""

    _link: Link | None = None

    async def on_open(self, link: Link) -> None:
        self._link = link

    def after_close(self, link: Link) -> None:
        self._link = None

    def require(self) -> Link:
        """The current connection; NotConnectedError when there is none."""
        link = self._link
        if link is None:
            raise NotConnectedError("the client is not connected: call connect() first")
        return link
