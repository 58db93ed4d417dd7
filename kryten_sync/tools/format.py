"""How the tools print events: transcript lines and JSON lines, and a stdout gone away.

Shared by ``kryten-sync tail`` and ``kryten-sync demo``.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import sys
from datetime import UTC

from kryten_sync.events import (
    ChangeMediaEvent,
    ChatMessageEvent,
    Event,
    MediaDeletedEvent,
    MediaQueuedEvent,
    MediaUpdateEvent,
    MotdEvent,
    PlaylistUpdateEvent,
    PrivateMessageEvent,
    RawEvent,
    UserCountEvent,
    UserJoinEvent,
    UserLeaveEvent,
)


def _clock(event: Event) -> str:
    return event.timestamp.astimezone().strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_event(event: Event) -> str:
    """What happened, in words (no time): ``<alice> hi``, ``bob joined``, ..."""
    if isinstance(event, PrivateMessageEvent):
        return f"[pm] <{event.username}> to {event.to}: {html.unescape(event.message)}"
    if isinstance(event, ChatMessageEvent):
        shadow = " (shadow-muted)" if event.shadow else ""
        return f"<{event.username}> {html.unescape(event.message)}{shadow}"
    if isinstance(event, UserJoinEvent):
        return f"{event.username} joined"
    if isinstance(event, UserLeaveEvent):
        return f"{event.username} left"
    if isinstance(event, ChangeMediaEvent):
        where = f"{event.media_type}:{event.media_id}, {_duration(event.duration)}"
        return f"now playing: {event.title} ({where})"
    if isinstance(event, MediaQueuedEvent):
        media = event.item.media
        return f"{event.item.queueby} queued {media.title} ({media.type}:{media.id})"
    if isinstance(event, MediaDeletedEvent):
        return f"playlist item {event.uid} removed"
    if isinstance(event, PlaylistUpdateEvent):
        return f"playlist: {len(event.items)} items"
    if isinstance(event, MediaUpdateEvent):
        state = "paused" if event.paused else "playing"
        return f"{state} at {_duration(max(event.current_time, 0))}"
    if isinstance(event, UserCountEvent):
        return f"{event.count} users here"
    if isinstance(event, MotdEvent):
        return f"motd: {_shorten(event.motd)}"
    payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    return f"{event.event_name} {_shorten(payload)}"


def format_event(event: Event) -> str:
    """One transcript line: ``12:00:01  <alice> hi`` (local time)."""
    return f"{_clock(event)}  {describe_event(event)}"


def event_json(event: Event) -> str:
    """The event as one line of JSON, in the bridge's envelope shape."""
    payload = event.payload if isinstance(event, RawEvent) else event.raw
    envelope = {
        "event_name": event.event_name,
        "channel": event.channel,
        "domain": event.domain,
        "timestamp": event.timestamp.astimezone(UTC).isoformat(),
        "correlation_id": event.correlation_id,
        "payload": payload,
    }
    return json.dumps(envelope, ensure_ascii=False)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail.

    For when the reader went away (``kryten-sync tail ... | head``): BrokenPipeError.
    """
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


__all__ = ["describe_event", "event_json", "format_event", "silence_stdout"]
