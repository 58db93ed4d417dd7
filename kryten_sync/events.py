"""Decoding of the bridge's event envelopes into typed event models.

The bridge publishes every CyTube event as a JSON envelope (``event_name``,
``payload``, ``channel``, ``domain``, ``timestamp``, ``correlation_id``).
:func:`parse_envelope` turns one message body into a :class:`RawEvent`,
:func:`to_typed_event` turns a :class:`RawEvent` into the typed model of its event
(or returns it unchanged), and :func:`decode_event` does both.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from .errors import MalformedEventError

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

    model_config = ConfigDict(frozen=True)

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


class ChatMessageEvent(TypedEvent):
    """A chat message (``chatMsg``)."""

    username: str
    message: str
    rank: float = 0.0
    """The sender's rank; fractional ranks exist (1.5 = leader)."""
    shadow: bool = False
    """True if the sender is shadow-muted (only moderators and the bot see the message)."""


class PrivateMessageEvent(ChatMessageEvent):
    """A private message (``pm``); ``username`` is the sender, ``to`` the recipient."""

    to: str


class UserJoinEvent(TypedEvent):
    """A user joined the channel (``addUser``)."""

    username: str
    rank: float


class UserLeaveEvent(TypedEvent):
    """A user left the channel (``userLeave``)."""

    username: str


class ChangeMediaEvent(TypedEvent):
    """The playing media changed (``changeMedia``)."""

    media_type: str
    """CyTube's media type, e.g. ``yt``."""
    media_id: str
    title: str
    duration: float
    """Length in seconds (0 for live streams)."""
    uid: int | None = None
    """The playlist uid, when the payload carries one (CyTube's does not)."""


class MediaInfo(BaseModel):
    """The media of a playlist item (unknown keys are ignored)."""

    model_config = ConfigDict(frozen=True, strict=True)

    id: str
    type: str
    title: str
    seconds: float


class PlaylistItem(BaseModel):
    """One playlist entry (unknown keys are ignored)."""

    model_config = ConfigDict(frozen=True, strict=True)

    uid: int
    temp: bool
    queueby: str
    media: MediaInfo


class PlaylistUpdateEvent(TypedEvent):
    """The whole playlist (``playlist``)."""

    items: list[PlaylistItem]


class MediaQueuedEvent(TypedEvent):
    """An item was added to the playlist (``queue``)."""

    item: PlaylistItem
    after: int | str | None = None
    """The uid the item was placed after, or ``"prepend"``."""


class MediaDeletedEvent(TypedEvent):
    """An item was removed from the playlist (``delete``)."""

    uid: int


class MediaUpdateEvent(TypedEvent):
    """Playback position of the current media (``mediaUpdate``)."""

    current_time: float
    """Seconds into the media (negative during a start delay)."""
    paused: bool


class UserCountEvent(TypedEvent):
    """The number of users in the channel (``usercount``)."""

    count: int


class MotdEvent(TypedEvent):
    """The channel's message of the day changed (``setMotd``)."""

    motd: str


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
    if not event_name:
        raise MalformedEventError("event_name is empty")
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
    if not isinstance(payload, str):
        raise _Misfit(f"payload must be a string, got {_json_type(payload)}")
    return {"motd": payload}


_FieldsOf = Callable[[object], dict[str, Any]]

# lowercased CyTube event name -> (model, payload -> model fields)
_CONVERTERS: dict[str, tuple[type[TypedEvent], _FieldsOf]] = {
    "chatmsg": (ChatMessageEvent, _chat_fields),
    "pm": (PrivateMessageEvent, _pm_fields),
    "adduser": (UserJoinEvent, _add_user_fields),
    "userleave": (UserLeaveEvent, _user_leave_fields),
    "changemedia": (ChangeMediaEvent, _change_media_fields),
    "playlist": (PlaylistUpdateEvent, _playlist_fields),
    "queue": (MediaQueuedEvent, _queue_fields),
    "delete": (MediaDeletedEvent, _delete_fields),
    "mediaupdate": (MediaUpdateEvent, _media_update_fields),
    "usercount": (UserCountEvent, _usercount_fields),
    "setmotd": (MotdEvent, _motd_fields),
}


def _event_time(payload: object, default: datetime) -> datetime:
    """The payload's ``time`` (epoch milliseconds) if present, else ``default``."""
    if not isinstance(payload, dict):
        return default
    millis = payload.get("time")
    if millis is None:
        return default
    if type(millis) is not int:
        millis = _number(millis, "time")
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise _Misfit(f"time {millis!r} is out of range") from None


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
    "ChangeMediaEvent",
    "ChatMessageEvent",
    "Event",
    "MalformedEventError",
    "MediaDeletedEvent",
    "MediaInfo",
    "MediaQueuedEvent",
    "MediaUpdateEvent",
    "MotdEvent",
    "PlaylistItem",
    "PlaylistUpdateEvent",
    "PrivateMessageEvent",
    "RawEvent",
    "TypedEvent",
    "UserCountEvent",
    "UserJoinEvent",
    "UserLeaveEvent",
    "decode_event",
    "parse_envelope",
    "to_typed_event",
]
