"""CyTube's event names as the bridge forwards them, and the check of a handler's name.

The bridge publishes every Socket.IO event CyTube sends its user, under CyTube's own
name (docs/protocol.md section 1). :data:`EVENT_NAMES` lists them (the names CyTube's
web client handles), each with its model, or None for the events delivered as
:class:`~kryten_sync.events.RawEvent`. A name outside the list is not refused (a custom
producer may publish it); :func:`unknown_event_hint` says why it is probably a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType

from .events import TYPED_EVENTS, TypedEvent

_CYTUBE_EVENTS = (
    # chat and users
    "chatMsg",
    "pm",
    "clearchat",
    "addUser",
    "userLeave",
    "userlist",
    "usercount",
    "setUserMeta",
    "setUserProfile",
    "setUserIcon",
    "setAFK",
    "setLeader",
    "setUserRank",
    "login",
    "rank",
    "kick",
    "errorMsg",
    "noflood",
    "cooldown",
    "spamFiltered",
    "costanza",
    "announcement",
    "needPassword",
    "cancelNeedPassword",
    "channelNotRegistered",
    "drinkCount",
    # media and playlist
    "changeMedia",
    "mediaUpdate",
    "setCurrent",
    "playlist",
    "setPlaylistMeta",
    "setPlaylistLocked",
    "queue",
    "queueWarn",
    "queueFail",
    "delete",
    "moveVideo",
    "setTemp",
    "voteskip",
    "clearVoteskipVote",
    "searchResults",
    "listPlaylists",
    # polls
    "newPoll",
    "updatePoll",
    "closePoll",
    # emotes
    "emoteList",
    "updateEmote",
    "renameEmote",
    "removeEmote",
    # channel settings and moderation
    "setMotd",
    "channelOpts",
    "setPermissions",
    "channelCSSJS",
    "chatFilters",
    "updateChatFilter",
    "deleteChatFilter",
    "channelRanks",
    "channelRankFail",
    "banlist",
    "banlistRemove",
    "readChanLog",
    "warnLargeChandump",
    "partitionChange",
    "validationError",
    "validationPassed",
)

EVENT_NAMES: Mapping[str, type[TypedEvent] | None] = MappingProxyType(
    {name: TYPED_EVENTS.get(name) for name in sorted(_CYTUBE_EVENTS, key=str.lower)}
)
"""CyTube's event names (CyTube's casing) -> the model of the event, or None for the
events delivered as RawEvent."""

_BY_LOWER = {name.lower(): name for name in EVENT_NAMES}

# Names people guess from what the event means (or from the model's name) -> CyTube's.
_GUESSES = {
    "chat": "chatMsg",
    "message": "chatMsg",
    "chatmessage": "chatMsg",
    "privatemessage": "pm",
    "join": "addUser",
    "userjoin": "addUser",
    "leave": "userLeave",
    "mediachange": "changeMedia",
    "motd": "setMotd",
    "poll": "newPoll",
    "afk": "setAFK",
    "leader": "setLeader",
    "userrank": "setUserRank",
}


def cytube_name(name: str) -> str | None:
    """CyTube's spelling of ``name`` (compared without regard to case), or None."""
    return _BY_LOWER.get(name.strip().lower())


def unknown_event_hint(name: str) -> str | None:
    """None for ``"*"`` and CyTube's event names; otherwise why ``name`` will probably
    never match, with the closest CyTube name if there is one."""
    if name.strip() == "*" or cytube_name(name) is not None:
        return None
    lower = name.strip().lower()
    guess = _GUESSES.get(lower.removesuffix("event").replace("_", ""))
    if guess is None:
        close = difflib.get_close_matches(lower, _BY_LOWER, n=1, cutoff=0.6)
        guess = _BY_LOWER[close[0]] if close else None
    hint = f"{name!r} is not an event CyTube sends through the bridge"
    if guess is not None:
        hint += f"; did you mean {guess!r}?"
    return hint


__all__ = ["EVENT_NAMES", "cytube_name", "unknown_event_hint"]
