"""How the tools print: transcript lines and JSON lines of events, the channel's state,
colour on a terminal, and a stdout gone away.

Shared by the ``kryten-sync`` commands and ``kryten-sync demo``. Colour is used only
when writing to a terminal, and never when ``NO_COLOR`` is set (https://no-color.org).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import sys
import zlib
from collections.abc import Sequence
from datetime import UTC
from typing import TextIO

from kryten_sync.events import (
    ChangeMediaEvent,
    ChatMessageEvent,
    Event,
    MediaDeletedEvent,
    MediaQueuedEvent,
    MediaUpdateEvent,
    MotdEvent,
    PlaylistItem,
    PlaylistUpdateEvent,
    PrivateMessageEvent,
    RawEvent,
    UserCountEvent,
    UserJoinEvent,
    UserLeaveEvent,
)
from kryten_sync.state import ChannelUser, CurrentMedia

_NAME_COLOURS = ("31", "32", "33", "34", "35", "36")


def colour_wanted(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal and ``NO_COLOR`` is not set (or empty)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class Style:
    """ANSI colours when ``on``, plain text otherwise."""

    def __init__(self, on: bool = False) -> None:
        self.on = on

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def name(self, name: str) -> str:
        """A user name, bold, in a colour of its own (the same one every time)."""
        colour = _NAME_COLOURS[zlib.crc32(name.encode()) % len(_NAME_COLOURS)]
        return self.paint(name, f"1;{colour}")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def error(self, text: str) -> str:
        return self.paint(text, "1;31")


PLAIN = Style(False)


def _clock(event: Event) -> str:
    return event.timestamp.astimezone().strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_event(event: Event, style: Style = PLAIN) -> str:
    """What happened, in words (no time): ``<alice> hi``, ``bob joined``, ..."""
    if isinstance(event, PrivateMessageEvent):
        sender = style.name(event.username)
        return f"[pm] <{sender}> to {event.to}: {html.unescape(event.message)}"
    if isinstance(event, ChatMessageEvent):
        shadow = " (shadow-muted)" if event.shadow else ""
        return f"<{style.name(event.username)}> {html.unescape(event.message)}{shadow}"
    if isinstance(event, UserJoinEvent):
        return f"{style.name(event.username)} joined"
    if isinstance(event, UserLeaveEvent):
        return f"{style.name(event.username)} left"
    if isinstance(event, ChangeMediaEvent):
        where = f"{event.media_type}:{event.media_id}, {_duration(event.duration)}"
        return f"now playing: {event.title} ({where})"
    if isinstance(event, MediaQueuedEvent):
        media = event.item.media
        who = style.name(event.item.queueby)
        return f"{who} queued {media.title} ({media.type}:{media.id})"
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
    return style.dim(f"{event.event_name} {_shorten(payload)}")


def format_event(event: Event, style: Style = PLAIN) -> str:
    """One transcript line: ``12:00:01  <alice> hi`` (local time)."""
    return f"{style.dim(_clock(event))}  {describe_event(event, style)}"


def format_users(users: Sequence[ChannelUser], style: Style = PLAIN) -> list[str]:
    """One line per user, highest rank first: ``  alice  rank 2  (afk)``."""
    ordered = sorted(users, key=lambda u: (-u.rank, u.name.lower()))
    width = max((len(u.name) for u in ordered), default=0)
    lines = []
    for user in ordered:
        flags = [f for f, on in (("afk", user.meta.afk), ("muted", user.meta.muted)) if on]
        extra = f"  ({', '.join(flags)})" if flags else ""
        padding = " " * (width - len(user.name))
        lines.append(f"  {style.name(user.name)}{padding}  rank {user.rank:g}{extra}")
    return lines


def format_media(media: CurrentMedia) -> str:
    """``Title (yt:id, 3:33)``."""
    return f"{media.title or media.id} ({media.type}:{media.id}, {_duration(media.seconds)})"


def format_playlist(
    items: Sequence[PlaylistItem], current_uid: int | str | None, style: Style = PLAIN
) -> list[str]:
    """One line per item; the playing one (uid ``current_uid``) is marked with ``>``."""
    lines = []
    playing = None if current_uid is None else str(current_uid)
    for number, item in enumerate(items, 1):
        media = item.media
        mark = style.paint(">", "1;32") if str(item.uid) == playing else " "
        temp = style.dim(" (temporary)") if item.temp else ""
        where = f"{media.type}:{media.id}, {_duration(media.seconds)}"
        by = style.name(item.queueby) if item.queueby else "?"
        lines.append(f"{mark} {number:>3}. {media.title or media.id} ({where}) by {by}{temp}")
    return lines


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


__all__ = [
    "PLAIN",
    "Style",
    "colour_wanted",
    "describe_event",
    "event_json",
    "format_event",
    "format_media",
    "format_playlist",
    "format_users",
    "silence_stdout",
]
