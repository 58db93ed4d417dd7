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
from collections.abc import Callable

# Weak: tracking a client must not keep it alive (an abandoned client is closed when
# collected). Keyed by the id of the method's owner, so untrack() needs only the owner.
_live: dict[int, weakref.WeakMethod[Callable[[], None]]] = {}
_lock = threading.Lock()
_registered = False


def _close_all() -> None:
    for ref in list(_live.values()):
        close = ref()
        if close is not None:
            close()


def track(close_at_exit: Callable[[], None]) -> None:
    """Call the bound method ``close_at_exit`` at interpreter exit unless its owner was
    untracked before."""
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
        for key in [k for k, ref in _live.items() if ref() is None]:
            del _live[key]
        _live[id(close_at_exit.__self__)] = weakref.WeakMethod(close_at_exit)  # type: ignore[attr-defined]


def untrack(owner: object) -> None:
    with _lock:
        _live.pop(id(owner), None)
