"""Small helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

PREFIX = "kryten-sync"


def make_config(url: str, channels: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """A client config for ``url``: channels on cytu.be (default lounge), chat limiter
    off; ``nats={...}`` merges into the nats section, other keys go to the top level."""
    nats = {"servers": [url], **overrides.pop("nats", {})}
    return {
        "nats": nats,
        "channels": [{"domain": "cytu.be", "channel": c} for c in channels or ["lounge"]],
        "chat_min_delay": 0,
        **overrides,
    }


def wait_until(pred: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``pred`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def run_in_thread(fn: Callable[[], Any], timeout: float) -> tuple[Any, BaseException | None]:
    """Run ``fn`` in a helper thread; fail the test (instead of hanging) if it blocks."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="test-helper")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"call still blocked after {timeout} s (hang)"
    return box.get("value"), box.get("error")


def kryten_threads() -> set[threading.Thread]:
    """The client's live threads (all are named kryten-sync-...)."""
    return {t for t in threading.enumerate() if t.name.startswith(PREFIX) and t.is_alive()}
