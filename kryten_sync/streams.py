"""Blocking ways to consume events: ``client.events()`` and ``client.wait_for()``."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from .errors import ClientClosedError, KrytenTimeoutError

if TYPE_CHECKING:
    from .events import Event

Predicate = Callable[[Any], bool]
E_co = TypeVar("E_co", covariant=True, default="Event")  # the model of the events streamed
_CLOSED: Any = object()
_SLICE = 0.2  # wait in slices so Ctrl-C is seen promptly


class EventStream(Generic[E_co]):
    """Events matching one filter, buffered for a consuming thread.

    Use as a context manager and iterate, or call :meth:`get`. The buffer holds
    ``maxsize`` events; past that, new events are dropped and counted in ``dropped``.
    """

    def __init__(
        self, is_open: Callable[[], bool], predicate: Predicate | None, maxsize: int
    ) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self.detach: Callable[[], None] = lambda: None  # set by the client
        self._is_open = is_open
        self._predicate = predicate
        self._closed = False
        self.dropped = 0

    def push(self, event: Any) -> None:
        """Handler side (worker thread): never blocks."""
        if self._predicate is not None and not self._predicate(event):
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def get(self, timeout: float | None = None) -> E_co:
        """The next event. Raises KrytenTimeoutError after ``timeout`` seconds (None: no
        limit), ClientClosedError once the stream or the client is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if self._closed or not self._is_open():
                    raise ClientClosedError("the event stream is closed") from None
                wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    raise KrytenTimeoutError(f"no matching event within {timeout:g} s") from None
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    continue
            if item is _CLOSED:
                raise ClientClosedError("the event stream is closed")
            return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[E_co]:
        while True:
            try:
                yield self.get()
            except ClientClosedError:
                return

    def close(self) -> None:
        """Stop receiving; a thread blocked in iteration ends its loop."""
        if not self._closed:
            self._closed = True
            self.detach()
            with contextlib.suppress(queue.Full):  # the reader then sees _closed
                self._queue.put_nowait(_CLOSED)

    def __enter__(self) -> EventStream[E_co]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
