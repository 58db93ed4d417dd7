"""Closing every live client when the interpreter exits.

``threading._register_atexit`` hooks run before ``concurrent.futures`` shuts its
executors down (asyncio's name resolution needs them) and before non-daemon threads are
joined, so a user thread blocked in a request is woken with ClientClosedError instead of
holding exit. Plain ``atexit`` is the fallback where that private hook is missing.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Protocol


class _Closable(Protocol):
    def _close_at_exit(self) -> None: ...


_live: weakref.WeakSet[_Closable] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def _close_all() -> None:
    for client in list(_live):
        client._close_at_exit()


def track(client: _Closable) -> None:
    """Close ``client`` at interpreter exit unless it was closed before."""
    global _registered
    with _lock:
        if not _registered:
            register = getattr(threading, "_register_atexit", None)
            try:
                if register is not None:
                    register(_close_all)
            except RuntimeError:  # already shutting down
                pass
            atexit.register(_close_all)
            _registered = True
        _live.add(client)


def untrack(client: _Closable) -> None:
    _live.discard(client)
