"""Event messages exactly as the bridge (kryten-robot 1.12) publishes them, for tests.

The bridge builds ``{"event_name", "payload", "channel", "domain", "timestamp",
"correlation_id"}`` in that order and sends ``json.dumps(...).encode("utf-8")``
(default separators, ASCII escapes, ``datetime.now(timezone.utc).isoformat()`` so the
timestamp ends in ``+00:00``). Other producers (pydantic ``model_dump_json``) write
compact UTF-8 JSON with a ``Z`` timestamp: ``timestamp_style="z"`` gives that form.

The sample payloads are shaped as CyTube sends them. They are shared: deep-copy one
before changing it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from kryten_sync.subjects import EVENTS_PREFIX, normalize_token

__all__ = [
    "ADD_USER",
    "CHANGE_MEDIA",
    "CHAT_MSG",
    "CHAT_TIME_MS",
    "DELETE",
    "MEDIA_UPDATE",
    "PLAYLIST",
    "PM",
    "QUEUE",
    "SET_MOTD",
    "USERCOUNT",
    "USER_LEAVE",
    "envelope",
    "numbered",
    "subject",
]


def envelope(
    event_name: str,
    payload: Any,
    *,
    channel: str = "lounge",
    domain: str = "cytu.be",
    timestamp_style: Literal["offset", "z"] = "offset",
    correlation_id: str | None = None,
    at: datetime | None = None,
    **extra: Any,
) -> bytes:
    """The message body the bridge publishes for one CyTube event.

    ``at`` is the envelope time (default now; must be aware). ``correlation_id``
    defaults to a fresh uuid4. ``extra`` keys are added after the standard ones and
    replace a standard key of the same name (e.g. ``timestamp="garbage"``).
    """
    when = (at or datetime.now(UTC)).astimezone(UTC)
    body: dict[str, Any] = {
        "event_name": event_name,
        "payload": payload,
        "channel": channel,
        "domain": domain,
        "timestamp": when.isoformat(),
        "correlation_id": correlation_id if correlation_id is not None else str(uuid.uuid4()),
    }
    if timestamp_style == "offset":
        body.update(extra)
        return json.dumps(body).encode("utf-8")
    if timestamp_style == "z":
        body["timestamp"] = body["timestamp"].replace("+00:00", "Z")
        body.update(extra)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raise ValueError(f"timestamp_style must be 'offset' or 'z', not {timestamp_style!r}")


def subject(channel: str, event_name: str) -> str:
    """The subject the bridge publishes ``event_name`` of ``channel`` on (the bridge
    normalises whatever it is given)."""
    return f"{EVENTS_PREFIX}.{normalize_token(channel)}.{normalize_token(event_name)}"


def numbered(
    event_name: str, numbers: Iterable[int], *, channel: str = "lounge"
) -> Iterator[tuple[str, bytes]]:
    """``(subject, body)`` of one ``event_name`` event per number, payload ``{"n": n}``."""
    for n in numbers:
        yield subject(channel, event_name), envelope(event_name, {"n": n}, channel=channel)


CHAT_TIME_MS = 1_700_000_000_123
"""The ``time`` of :data:`CHAT_MSG` and :data:`PM` (2023-11-14T22:13:20.123Z)."""

CHAT_MSG: dict[str, Any] = {
    "username": "alice",
    "msg": "hello &lt;everyone&gt; \u2014 caf\u00e9",
    "meta": {},
    "time": CHAT_TIME_MS,
}

PM: dict[str, Any] = {
    "username": "alice",
    "msg": "psst",
    "meta": {},
    "time": CHAT_TIME_MS,
    "to": "kryten",
}

ADD_USER: dict[str, Any] = {
    "name": "bob",
    "rank": 1.5,
    "profile": {"image": "https://i.imgur.com/abc123.png", "text": "hi there"},
    "meta": {"afk": False, "muted": False, "smuted": False, "aliases": ["bob", "bobby"]},
}

USER_LEAVE: dict[str, Any] = {"name": "bob"}

CHANGE_MEDIA: dict[str, Any] = {
    "id": "dQw4w9WgXcQ",
    "title": "Rick Astley - Never Gonna Give You Up",
    "seconds": 213,
    "duration": "03:33",
    "type": "yt",
    "meta": {},
    "currentTime": 0,
    "paused": False,
}

PLAYLIST: list[dict[str, Any]] = [
    {
        "media": {
            "id": "dQw4w9WgXcQ",
            "title": "Rick Astley - Never Gonna Give You Up",
            "seconds": 213,
            "duration": "03:33",
            "type": "yt",
            "meta": {},
        },
        "uid": 41,
        "temp": False,
        "queueby": "alice",
    },
    {
        "media": {
            "id": "76979871",
            "title": "The Mountain",
            "seconds": 186.5,
            "duration": "03:06",
            "type": "vi",
            "meta": {"thumbnail": "https://i.vimeocdn.com/video/1.jpg"},
        },
        "uid": 42,
        "temp": True,
        "queueby": "",
    },
]

QUEUE: dict[str, Any] = {
    "item": {
        "media": {
            "id": "jNQXAC9IVRw",
            "title": "Me at the zoo",
            "seconds": 19,
            "duration": "00:19",
            "type": "yt",
            "meta": {},
        },
        "uid": 43,
        "temp": True,
        "queueby": "bob",
    },
    "after": 42,
}

DELETE: dict[str, Any] = {"uid": 42}

MEDIA_UPDATE: dict[str, Any] = {"currentTime": 42.137, "paused": False}

USERCOUNT: int = 12

SET_MOTD: str = '<h2>Welcome to the lounge</h2><p>Be nice. <a href="/rules">Rules</a></p>'
