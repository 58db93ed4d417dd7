"""Decoding of the bridge's event envelopes into typed event models.

The bridge publishes every CyTube event as a JSON envelope (``event_name``,
``payload``, ``channel``, ``domain``, ``timestamp``, ``correlation_id``).
:func:`parse_envelope` turns one message body into a :class:`RawEvent`,
:func:`to_typed_event` turns a :class:`RawEvent` into the typed model of its event
(or returns it unchanged), and :func:`decode_event` does both.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ._mapping import MappingAccess
from .errors import MalformedEventError
from .subjects import EVENT_NAME_RULE, is_event_name

_log = logging.getLogger(__name__)

_REQUIRED_KEYS = ("channel", "domain", "event_name", "payload")


def _as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive value is taken to be UTC)."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_correlation_id() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- models


class RawEvent(BaseModel):
    """One event envelope as the bridge publishes it; also every untyped event."""

    model_config = ConfigDict(frozen=True)

    event_name: str
    """CyTube's event name in CyTube's casing, e.g. ``chatMsg``."""
    payload: Any
    """The event's payload: any JSON value."""
    channel: str
    """The channel as the bridge was configured (case kept)."""
    domain: str
    """The CyTube domain as the bridge was configured (may carry ``:port``)."""
    timestamp: datetime = Field(default_factory=_utc_now)
    """When the bridge published the event (aware, UTC)."""
    correlation_id: str = Field(default_factory=_new_correlation_id)
    """The bridge's uuid4 for this event (``""`` if the producer sent none)."""

    @field_validator("timestamp")
    @classmethod
    def _timestamp_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)


class TypedEvent(BaseModel):
    """Common base of the typed events."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    event_name: str
    """CyTube's event name as received, e.g. ``chatMsg``."""
    channel: str
    """The channel from the envelope."""
    domain: str
    """The domain from the envelope."""
    correlation_id: str
    """The envelope's correlation id."""
    timestamp: datetime
    """The payload's ``time`` (epoch ms) if present, else the envelope timestamp (aware, UTC)."""
    raw: Any = Field(default=None, repr=False)
    """The untouched payload."""

    @field_validator("timestamp")
    @classmethod
    def _timestamp_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    @property
    def payload(self) -> Any:
        """The untouched payload (the same as ``raw``), so code written for
        :class:`RawEvent` keeps working when an event gains a model."""
        return self.raw


# CyTube's chat HTML: text it escaped, plus the tags it added itself (links, filters).
_TAG = re.compile(r"<[^>]*>")


class ChatMessageEvent(TypedEvent):
    """A chat message (``chatMsg``)."""

    username: str
    """The sender."""
    message: str
    """The text as CyTube sends it: HTML, escaped (``hello &lt;everyone&gt;``)."""
    rank: float = 0.0
    """The sender's rank; fractional ranks exist (1.5 = leader)."""
    shadow: bool = False
    """True if the sender is shadow-muted (only moderators and the bot see the message)."""

    @property
    def text(self) -> str:
        """The message as typed: CyTube's tags (links, filters) removed, entities decoded
        (``hello <everyone>``)."""
        return html.unescape(_TAG.sub("", self.message))


class PrivateMessageEvent(ChatMessageEvent):
    """A private message (``pm``); ``username`` is the sender, ``to`` the recipient."""

    to: str
    """The recipient."""


class UserJoinEvent(TypedEvent):
    """A user joined the channel (``addUser``)."""

    username: str
    """Who joined."""
    rank: float
    """CyTube rank (0 guest, 1 registered, 2 moderator, 3 admin, 4 owner)."""


class UserLeaveEvent(TypedEvent):
    """A user left the channel (``userLeave``)."""

    username: str
    """Who left."""


class ChangeMediaEvent(TypedEvent):
    """The playing media changed (``changeMedia``)."""

    media_type: str
    """CyTube's media type, e.g. ``yt``."""
    media_id: str
    """The id within the media type (for ``yt``, the video id)."""
    title: str
    duration: float
    """Length in seconds (0 for live streams)."""
    uid: int | None = None
    """The playlist uid, when the payload carries one (CyTube's does not)."""


class MediaInfo(MappingAccess):
    """The media of a playlist item (unknown keys are ignored; readable like a dict)."""

    model_config = ConfigDict(frozen=True, strict=True, use_attribute_docstrings=True)

    id: str
    """The id within the media type."""
    type: str
    """CyTube's media type, e.g. ``yt``."""
    title: str
    seconds: float
    """Length in seconds (0 for live streams)."""


class PlaylistItem(MappingAccess):
    """One playlist entry (unknown keys are ignored; readable like a dict:
    ``item["uid"]``, ``item["media"]["title"]``)."""

    model_config = ConfigDict(frozen=True, strict=True, use_attribute_docstrings=True)

    uid: int
    """The item's id in the playlist."""
    temp: bool
    """True if the item leaves the playlist after playing."""
    queueby: str
    """Who added it."""
    media: MediaInfo


class PlaylistUpdateEvent(TypedEvent):
    """The whole playlist (``playlist``)."""

    items: list[PlaylistItem]
    """In playing order."""


class MediaQueuedEvent(TypedEvent):
    """An item was added to the playlist (``queue``)."""

    item: PlaylistItem
    """The new item."""
    after: int | str | None = None
    """The uid the item was placed after, or ``"prepend"``."""


class MediaDeletedEvent(TypedEvent):
    """An item was removed from the playlist (``delete``)."""

    uid: int
    """The uid of the removed item."""


class MediaUpdateEvent(TypedEvent):
    """Playback position of the current media (``mediaUpdate``)."""

    current_time: float
    """Seconds into the media (negative during a start delay)."""
    paused: bool
    """True while playback is paused."""


class UserCountEvent(TypedEvent):
    """The number of users in the channel (``usercount``)."""

    count: int
    """Connections in the channel, anonymous ones included."""


class MotdEvent(TypedEvent):
    """The channel's message of the day changed (``setMotd``)."""

    motd: str
    """HTML (may be empty)."""


class _CyTubeModel(MappingAccess):
    # Unknown keys are kept (``model.model_extra``, or as attributes), never an error; the
    # model reads like the dict it came from (``user["name"]``), as kryten-py's dicts do.
    model_config = ConfigDict(
        frozen=True, extra="allow", populate_by_name=True, use_attribute_docstrings=True
    )


class UserProfile(_CyTubeModel):
    """A user's CyTube profile."""

    image: str = ""
    """The avatar URL."""
    text: str = ""
    """The profile text."""


class UserMeta(_CyTubeModel):
    """A user's CyTube flags (more keys, e.g. ``ip`` for moderators, are kept as extras)."""

    afk: bool = False
    """Away from keyboard."""
    muted: bool = False
    """Muted in the channel."""
    smuted: bool = False
    """Shadow-muted (shown to moderators only)."""
    aliases: list[str] = Field(default_factory=list)
    """Other names seen from the same address (shown to moderators only)."""


class ChannelUser(_CyTubeModel):
    """One user in the channel's userlist."""

    name: str
    """The user's name (CyTube's casing)."""
    rank: float = 0.0
    """CyTube rank; fractional ranks exist (1.5 = leader)."""
    profile: UserProfile = Field(default_factory=UserProfile)
    meta: UserMeta = Field(default_factory=UserMeta)

    @field_validator("profile", "meta", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class Emote(_CyTubeModel):
    """One channel emote."""

    name: str
    """What users type, e.g. ``Kappa``."""
    image: str
    """The image URL, HTML-escaped by CyTube (``&amp;`` for ``&``)."""
    source: str | None = None
    """CyTube's match pattern for the emote (a regular expression source), if stored."""


class UserListEvent(TypedEvent):
    """Everyone in the channel (``userlist``), sent on joining and when ranks change."""

    users: list[ChannelUser]
    """Named users only (anonymous viewers are counted in ``usercount``)."""


class UserRankEvent(TypedEvent):
    """A user's rank changed (``setUserRank``)."""

    username: str
    """The name as the moderator typed it (the case may differ from the userlist)."""
    rank: float
    """The new rank; 1.5 while the user is leader."""


class LeaderEvent(TypedEvent):
    """The leader changed (``setLeader``)."""

    username: str
    """The new leader, or ``""`` when the leader was removed."""


class AfkEvent(TypedEvent):
    """A user's AFK flag changed (``setAFK``)."""

    username: str
    """Whose flag changed."""
    afk: bool
    """True when the user went AFK, False when back."""


class KickEvent(TypedEvent):
    """The bridge's own CyTube user was kicked (``kick``; CyTube then disconnects it)."""

    reason: str = ""
    """CyTube's reason (``""`` when none was given)."""


class ErrorMessageEvent(TypedEvent):
    """CyTube refused something the bridge's user did (``errorMsg``), e.g. a command."""

    message: str
    """CyTube's explanation."""
    alert: bool = False
    """CyTube asks its web client to show the message in a dialog."""


class PollEvent(TypedEvent):
    """Common base of :class:`PollOpenedEvent` and :class:`PollUpdateEvent`."""

    title: str
    """HTML, like chat text (escaped, links as ``<a>`` tags)."""
    options: list[str]
    """HTML, like the title."""
    counts: list[int | str]
    """Votes per option; in a hidden-results poll a string: ``"?"``, or ``"3?"`` for
    users (such as moderators) who may see them."""
    initiator: str
    """Who opened the poll."""
    opened_at: datetime | None = None
    """When the poll was opened (the payload's ``timestamp``; aware, UTC)."""


class PollOpenedEvent(PollEvent):
    """A poll was opened (``newPoll``; also sent on joining a channel with an open poll)."""


class PollUpdateEvent(PollEvent):
    """The votes of the open poll changed (``updatePoll``)."""


class PollClosedEvent(TypedEvent):
    """The open poll was closed (``closePoll``; also sent before each ``newPoll``)."""


class VoteskipEvent(TypedEvent):
    """The voteskip tally (``voteskip``; sent to users allowed to see it)."""

    count: int
    """Votes to skip so far."""
    need: int
    """Votes needed to skip (0 after a media change)."""


class EmoteListEvent(TypedEvent):
    """All channel emotes (``emoteList``), sent on joining and after an import."""

    emotes: list[Emote]
    """Every emote of the channel."""


class EmoteUpdateEvent(TypedEvent):
    """An emote was added or changed (``updateEmote``)."""

    emote: Emote
    """The emote as it is now."""


class EmoteRenameEvent(TypedEvent):
    """An emote was renamed (``renameEmote``)."""

    old_name: str
    """The emote's previous name."""
    emote: Emote
    """The emote under its new name."""


class EmoteRemoveEvent(TypedEvent):
    """An emote was removed (``removeEmote``)."""

    name: str
    """The removed emote's name."""


class PlaylistCurrentEvent(TypedEvent):
    """The playlist's current item changed (``setCurrent``)."""

    uid: int
    """The uid of the item now playing."""


class MediaMovedEvent(TypedEvent):
    """A playlist item was moved (``moveVideo``)."""

    from_uid: int
    """The uid of the item that moved."""
    after: int | str
    """The uid it now follows, or ``"prepend"``/``"append"``."""


Event: TypeAlias = (
    RawEvent
    | ChatMessageEvent
    | PrivateMessageEvent
    | UserJoinEvent
    | UserLeaveEvent
    | ChangeMediaEvent
    | PlaylistUpdateEvent
    | MediaQueuedEvent
    | MediaDeletedEvent
    | MediaUpdateEvent
    | UserCountEvent
    | MotdEvent
    | UserListEvent
    | UserRankEvent
    | LeaderEvent
    | AfkEvent
    | KickEvent
    | ErrorMessageEvent
    | PollOpenedEvent
    | PollUpdateEvent
    | PollClosedEvent
    | VoteskipEvent
    | EmoteListEvent
    | EmoteUpdateEvent
    | EmoteRenameEvent
    | EmoteRemoveEvent
    | PlaylistCurrentEvent
    | MediaMovedEvent
)
"""Anything :func:`decode_event` returns."""


# --------------------------------------------------------------------------- envelope

_validate_raw = RawEvent.__pydantic_validator__.validate_python


def _json_type(value: object) -> str:
    """The JSON name of ``value``'s type (``object``, ``array``, ``string``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_timestamp(value: object) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise MalformedEventError(
            f"bad timestamp: expected an ISO-8601 string, got {_json_type(value)}"
        )
    try:
        return _as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError) as exc:
        why = str(exc)
        if why.startswith("Invalid isoformat string"):  # it repeats the whole value
            why = "not ISO-8601"
        raise MalformedEventError(f"bad timestamp {_short(value)}: {why}") from None


def _envelope_fields(data: bytes | str) -> dict[str, Any]:
    """The :class:`RawEvent` fields of one message body, checked and normalised."""
    if isinstance(data, str):
        text = data
    elif isinstance(data, bytes | bytearray | memoryview):
        try:
            text = (data if isinstance(data, bytes) else bytes(data)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedEventError(f"not valid UTF-8: {exc}") from None
    else:
        raise MalformedEventError(f"expected bytes or str, got {type(data).__name__}")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise MalformedEventError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedEventError("not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise MalformedEventError(f"not a JSON object (got {_json_type(obj)})")
    try:
        event_name = obj["event_name"]
        payload = obj["payload"]
        channel = obj["channel"]
        domain = obj["domain"]
    except KeyError:
        missing = ", ".join(key for key in _REQUIRED_KEYS if key not in obj)
        raise MalformedEventError(f"missing keys: {missing}") from None
    if not isinstance(event_name, str):
        raise MalformedEventError(f"event_name must be a string, got {_json_type(event_name)}")
    if not is_event_name(event_name):
        # Bounded, so a flood of made-up names cannot grow per-name bookkeeping.
        raise MalformedEventError(
            "event_name is empty" if not event_name else f"event_name is not {EVENT_NAME_RULE}"
        )
    if not isinstance(channel, str):
        raise MalformedEventError(f"channel must be a string, got {_json_type(channel)}")
    if not isinstance(domain, str):
        raise MalformedEventError(f"domain must be a string, got {_json_type(domain)}")
    correlation_id = obj.get("correlation_id")
    if correlation_id is None:
        correlation_id = ""
    elif not isinstance(correlation_id, str):
        raise MalformedEventError(
            f"correlation_id must be a string, got {_json_type(correlation_id)}"
        )
    return {
        "event_name": event_name,
        "payload": payload,
        "channel": channel,
        "domain": domain,
        "timestamp": _parse_timestamp(obj.get("timestamp")),
        "correlation_id": correlation_id,
    }


def parse_envelope(data: bytes | str) -> RawEvent:
    """Parse one message body into a :class:`RawEvent`.

    Raises :class:`MalformedEventError` if ``data`` is not UTF-8 JSON, not an object,
    lacks ``event_name``/``payload``/``channel``/``domain``, or has a key of the wrong
    type. A missing ``timestamp`` becomes now (UTC), a missing ``correlation_id`` ``""``;
    naive timestamps are taken as UTC; unknown keys are ignored.
    """
    result: RawEvent = _validate_raw(_envelope_fields(data))
    return result


# --------------------------------------------------------------------------- typed events


class _Misfit(Exception):
    """The payload does not fit its model; the message says how."""


def _number(value: object, path: str) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise _Misfit(f"{path} must be a finite number, got {value!r}")
        return value
    raise _Misfit(f"{path} must be a number, got {_json_type(value)}")


def _need(payload: dict[str, Any], key: str) -> Any:
    value = payload.get(key)
    if value is None:
        raise _Misfit(f"missing {key}")
    return value


def _need_str(payload: dict[str, Any], key: str) -> str:
    value = _need(payload, key)
    if not isinstance(value, str):
        raise _Misfit(f"{key} must be a string, got {_json_type(value)}")
    return value


def _need_number(payload: dict[str, Any], key: str) -> float | int:
    return _number(_need(payload, key), key)


def _need_bool(payload: dict[str, Any], key: str) -> bool:
    value = _need(payload, key)
    if not isinstance(value, bool):
        raise _Misfit(f"{key} must be a boolean, got {_json_type(value)}")
    return value


def _need_int(payload: dict[str, Any], key: str) -> int:
    value = _need(payload, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Misfit(f"{key} must be an integer, got {_json_type(value)}")
    return value


def _object(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _Misfit(f"payload must be an object, got {_json_type(payload)}")
    return payload


def _validation_reason(exc: ValidationError, prefix: str) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = prefix
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    path = path.lstrip(".") or "payload"
    reason = f"{path}: {first['msg']}"
    if "input" in first and first["type"] != "missing":
        reason += f", got {_json_type(first['input'])}"
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more)"
    return reason


def _chat_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    user = p.get("user")
    if not isinstance(user, dict):
        user = None

    username = p.get("username")
    if username is None and user is not None:
        username = user.get("name")
        if username is not None and not isinstance(username, str):
            raise _Misfit(f"user.name must be a string, got {_json_type(username)}")
    if username is None:
        raise _Misfit("missing username (or user.name)")
    if not isinstance(username, str):
        raise _Misfit(f"username must be a string, got {_json_type(username)}")

    message = p.get("msg")
    key = "msg"
    if message is None:
        message = p.get("message")
        key = "message"
    if message is None:
        raise _Misfit("missing msg (or message)")
    if not isinstance(message, str):
        raise _Misfit(f"{key} must be a string, got {_json_type(message)}")

    rank: float | int = 0
    raw_rank = p.get("rank")
    if raw_rank is not None:
        rank = _number(raw_rank, "rank")
    elif user is not None and user.get("rank") is not None:
        rank = _number(user["rank"], "user.rank")

    shadow = False
    meta = p.get("meta")
    if isinstance(meta, dict):
        raw_shadow = meta.get("shadow")
        if raw_shadow is not None:
            if not isinstance(raw_shadow, bool):
                raise _Misfit(f"meta.shadow must be a boolean, got {_json_type(raw_shadow)}")
            shadow = raw_shadow

    return {"username": username, "message": message, "rank": rank, "shadow": shadow}


def _pm_fields(payload: object) -> dict[str, Any]:
    fields = _chat_fields(payload)
    fields["to"] = _need_str(_object(payload), "to")
    return fields


def _add_user_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    return {"username": _need_str(p, "name"), "rank": _need_number(p, "rank")}


def _user_leave_fields(payload: object) -> dict[str, Any]:
    return {"username": _need_str(_object(payload), "name")}


def _change_media_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    uid = p.get("uid")
    if uid is not None and (not isinstance(uid, int) or isinstance(uid, bool)):
        raise _Misfit(f"uid must be an integer, got {_json_type(uid)}")
    return {
        "media_type": _need_str(p, "type"),
        "media_id": _need_str(p, "id"),
        "title": _need_str(p, "title"),
        "duration": _need_number(p, "seconds"),
        "uid": uid,
    }


_validate_items = TypeAdapter(list[PlaylistItem]).validate_python
_validate_item = PlaylistItem.__pydantic_validator__.validate_python


def _playlist_fields(payload: object) -> dict[str, Any]:
    if not isinstance(payload, list):
        raise _Misfit(f"payload must be an array, got {_json_type(payload)}")
    try:
        items = _validate_items(payload)
    except ValidationError as exc:
        raise _Misfit(_validation_reason(exc, "")) from None
    return {"items": items}


def _queue_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    raw_item = _need(p, "item")
    try:
        item = _validate_item(raw_item)
    except ValidationError as exc:
        raise _Misfit(_validation_reason(exc, "item")) from None
    after = p.get("after")
    if after is not None and (not isinstance(after, int | str) or isinstance(after, bool)):
        raise _Misfit(f"after must be an integer or a string, got {_json_type(after)}")
    return {"item": item, "after": after}


def _delete_fields(payload: object) -> dict[str, Any]:
    return {"uid": _need_int(_object(payload), "uid")}


def _media_update_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    return {"current_time": _need_number(p, "currentTime"), "paused": _need_bool(p, "paused")}


def _usercount_fields(payload: object) -> dict[str, Any]:
    if not isinstance(payload, int) or isinstance(payload, bool):
        raise _Misfit(f"payload must be an integer, got {_json_type(payload)}")
    return {"count": payload}


def _motd_fields(payload: object) -> dict[str, Any]:
    return {"motd": _string(payload)}


def _from_millis(millis: object, key: str) -> datetime:
    """Epoch milliseconds (``key`` of the payload) as an aware UTC datetime."""
    if type(millis) is not int:
        millis = _number(millis, key)
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise _Misfit(f"{key} {millis!r} is out of range") from None


def _string(payload: object) -> str:
    if not isinstance(payload, str):
        raise _Misfit(f"payload must be a string, got {_json_type(payload)}")
    return payload


def _validated(validate: Callable[[Any], Any], value: object, path: str) -> Any:
    try:
        return validate(value)
    except ValidationError as exc:
        raise _Misfit(_validation_reason(exc, path)) from None


_validate_users = TypeAdapter(list[ChannelUser]).validate_python
_validate_emotes = TypeAdapter(list[Emote]).validate_python
_validate_emote = Emote.__pydantic_validator__.validate_python


def _userlist_fields(payload: object) -> dict[str, Any]:
    if not isinstance(payload, list):
        raise _Misfit(f"payload must be an array, got {_json_type(payload)}")
    return {"users": _validated(_validate_users, payload, "")}


def _user_rank_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    return {"username": _need_str(p, "name"), "rank": _need_number(p, "rank")}


def _leader_fields(payload: object) -> dict[str, Any]:
    return {"username": _string(payload)}


def _afk_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    return {"username": _need_str(p, "name"), "afk": _need_bool(p, "afk")}


def _kick_fields(payload: object) -> dict[str, Any]:
    reason = _object(payload).get("reason")  # CyTube may kick without a reason
    if reason is not None and not isinstance(reason, str):
        raise _Misfit(f"reason must be a string, got {_json_type(reason)}")
    return {"reason": reason or ""}


def _error_msg_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    alert = p.get("alert")
    if alert is not None and not isinstance(alert, bool):
        raise _Misfit(f"alert must be a boolean, got {_json_type(alert)}")
    return {"message": _need_str(p, "msg"), "alert": bool(alert)}


def _need_list(payload: dict[str, Any], key: str, check: Callable[[object], bool]) -> list[Any]:
    value = _need(payload, key)
    if not isinstance(value, list):
        raise _Misfit(f"{key} must be an array, got {_json_type(value)}")
    for i, item in enumerate(value):
        if not check(item):
            raise _Misfit(f"{key}[{i}] has the wrong type ({_json_type(item)})")
    return value


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_count(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _poll_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    opened = p.get("timestamp")  # very old CyTube polls have none
    return {
        "title": _need_str(p, "title"),
        "options": _need_list(p, "options", _is_str),
        "counts": _need_list(p, "counts", _is_count),
        "initiator": _need_str(p, "initiator"),
        "opened_at": None if opened is None else _from_millis(opened, "timestamp"),
    }


def _no_fields(payload: object) -> dict[str, Any]:
    return {}  # CyTube sends the event without data: the payload is null


def _voteskip_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    return {"count": _need_int(p, "count"), "need": _need_int(p, "need")}


def _emote_list_fields(payload: object) -> dict[str, Any]:
    if not isinstance(payload, list):
        raise _Misfit(f"payload must be an array, got {_json_type(payload)}")
    return {"emotes": _validated(_validate_emotes, payload, "")}


def _emote_update_fields(payload: object) -> dict[str, Any]:
    return {"emote": _validated(_validate_emote, _object(payload), "")}


def _emote_rename_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    return {"old_name": _need_str(p, "old"), "emote": _validated(_validate_emote, p, "")}


def _emote_remove_fields(payload: object) -> dict[str, Any]:
    return {"name": _need_str(_object(payload), "name")}


def _set_current_fields(payload: object) -> dict[str, Any]:
    if not isinstance(payload, int) or isinstance(payload, bool):
        raise _Misfit(f"payload must be an integer, got {_json_type(payload)}")
    return {"uid": payload}


def _move_video_fields(payload: object) -> dict[str, Any]:
    p = _object(payload)
    after = _need(p, "after")
    if not isinstance(after, int | str) or isinstance(after, bool):
        raise _Misfit(f"after must be an integer or a string, got {_json_type(after)}")
    return {"from_uid": _need_int(p, "from"), "after": after}


_FieldsOf = Callable[[object], dict[str, Any]]

# CyTube event name (CyTube's casing) -> (model, payload -> model fields)
_TYPED: tuple[tuple[str, type[TypedEvent], _FieldsOf], ...] = (
    ("chatMsg", ChatMessageEvent, _chat_fields),
    ("pm", PrivateMessageEvent, _pm_fields),
    ("addUser", UserJoinEvent, _add_user_fields),
    ("userLeave", UserLeaveEvent, _user_leave_fields),
    ("changeMedia", ChangeMediaEvent, _change_media_fields),
    ("playlist", PlaylistUpdateEvent, _playlist_fields),
    ("queue", MediaQueuedEvent, _queue_fields),
    ("delete", MediaDeletedEvent, _delete_fields),
    ("mediaUpdate", MediaUpdateEvent, _media_update_fields),
    ("usercount", UserCountEvent, _usercount_fields),
    ("setMotd", MotdEvent, _motd_fields),
    ("userlist", UserListEvent, _userlist_fields),
    ("setUserRank", UserRankEvent, _user_rank_fields),
    ("setLeader", LeaderEvent, _leader_fields),
    ("setAFK", AfkEvent, _afk_fields),
    ("kick", KickEvent, _kick_fields),
    ("errorMsg", ErrorMessageEvent, _error_msg_fields),
    ("newPoll", PollOpenedEvent, _poll_fields),
    ("updatePoll", PollUpdateEvent, _poll_fields),
    ("closePoll", PollClosedEvent, _no_fields),
    ("voteskip", VoteskipEvent, _voteskip_fields),
    ("emoteList", EmoteListEvent, _emote_list_fields),
    ("updateEmote", EmoteUpdateEvent, _emote_update_fields),
    ("renameEmote", EmoteRenameEvent, _emote_rename_fields),
    ("removeEmote", EmoteRemoveEvent, _emote_remove_fields),
    ("setCurrent", PlaylistCurrentEvent, _set_current_fields),
    ("moveVideo", MediaMovedEvent, _move_video_fields),
)

# lowercased CyTube event name -> (model, payload -> model fields)
_CONVERTERS: dict[str, tuple[type[TypedEvent], _FieldsOf]] = {
    name.lower(): (model, fields_of) for name, model, fields_of in _TYPED
}

TYPED_EVENTS: Mapping[str, type[TypedEvent]] = MappingProxyType(
    {name: model for name, model, _ in _TYPED}
)
"""The events that have a model: CyTube's event name (CyTube's casing) -> model."""


def _event_time(payload: object, default: datetime) -> datetime:
    """The payload's ``time`` (epoch milliseconds) if present, else ``default``."""
    if not isinstance(payload, dict):
        return default
    millis = payload.get("time")
    if millis is None:
        return default
    return _from_millis(millis, "time")


_Converter: TypeAlias = tuple[type[TypedEvent], _FieldsOf]


def _converter(event_name: str) -> _Converter | None:
    return _CONVERTERS.get(event_name) or _CONVERTERS.get(event_name.lower())


def _typed(
    converter: _Converter,
    *,
    event_name: str,
    payload: Any,
    channel: str,
    domain: str,
    timestamp: datetime,
    correlation_id: str,
) -> Event | str:
    """The typed event, or why the payload does not fit its model."""
    model, fields_of = converter
    try:
        fields = fields_of(payload)
        fields["timestamp"] = _event_time(payload, timestamp)
        fields["event_name"] = event_name
        fields["channel"] = channel
        fields["domain"] = domain
        fields["correlation_id"] = correlation_id
        fields["raw"] = payload
        event: Event = model.__pydantic_validator__.validate_python(fields)
    except _Misfit as exc:
        return str(exc)
    except ValidationError as exc:
        return _validation_reason(exc, "")
    except Exception as exc:  # a bug here must not lose the event
        return f"{type(exc).__name__}: {exc}"
    return event


def _warn_misfit(raw: RawEvent, model: type[TypedEvent], reason: str) -> None:
    _log.warning(
        "%s event on %s/%s does not fit %s (%s); delivered as RawEvent",
        raw.event_name,
        raw.domain,
        raw.channel,
        model.__name__,
        reason,
    )


def to_typed_event(raw: RawEvent) -> Event:
    """The typed model of ``raw``'s event, or ``raw`` itself.

    Event names match case-insensitively. An event without a typed model is returned
    as is; so is one whose payload does not fit its model, after one warning on the
    ``kryten_sync.events`` logger. Never raises.
    """
    try:
        converter = _converter(raw.event_name)
        if converter is None:
            return raw
        result = _typed(
            converter,
            event_name=raw.event_name,
            payload=raw.payload,
            channel=raw.channel,
            domain=raw.domain,
            timestamp=raw.timestamp,
            correlation_id=raw.correlation_id,
        )
        if isinstance(result, str):
            _warn_misfit(raw, converter[0], result)
            return raw
    except Exception:  # never raise; a bug here must not lose the event
        _log.warning("cannot convert event %r; delivered as is", raw.event_name, exc_info=True)
        return raw
    return result


def decode_event(data: bytes | str) -> Event:
    """:func:`parse_envelope` then :func:`to_typed_event`; raises :class:`MalformedEventError`."""
    fields = _envelope_fields(data)
    converter = _converter(fields["event_name"])
    if converter is None:
        raw: RawEvent = _validate_raw(fields)
        return raw
    result = _typed(converter, **fields)
    if not isinstance(result, str):
        return result
    raw = _validate_raw(fields)
    _warn_misfit(raw, converter[0], result)
    return raw


__all__ = [
    "TYPED_EVENTS",
    "AfkEvent",
    "ChangeMediaEvent",
    "ChannelUser",
    "ChatMessageEvent",
    "Emote",
    "EmoteListEvent",
    "EmoteRemoveEvent",
    "EmoteRenameEvent",
    "EmoteUpdateEvent",
    "ErrorMessageEvent",
    "Event",
    "KickEvent",
    "LeaderEvent",
    "MalformedEventError",
    "MediaDeletedEvent",
    "MediaInfo",
    "MediaMovedEvent",
    "MediaQueuedEvent",
    "MediaUpdateEvent",
    "MotdEvent",
    "PlaylistCurrentEvent",
    "PlaylistItem",
    "PlaylistUpdateEvent",
    "PollClosedEvent",
    "PollEvent",
    "PollOpenedEvent",
    "PollUpdateEvent",
    "PrivateMessageEvent",
    "RawEvent",
    "TypedEvent",
    "UserCountEvent",
    "UserJoinEvent",
    "UserLeaveEvent",
    "UserListEvent",
    "UserMeta",
    "UserProfile",
    "UserRankEvent",
    "VoteskipEvent",
    "decode_event",
    "parse_envelope",
    "to_typed_event",
]
