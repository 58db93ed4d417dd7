"""Unit tests of kryten_sync.events: envelopes and typed events, no NATS needed."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import pytest
from pydantic import ValidationError

import kryten_sync.events as events_module
from kryten_sync.errors import KrytenValidationError
from kryten_sync.events import (
    ChangeMediaEvent,
    ChatMessageEvent,
    MalformedEventError,
    MediaDeletedEvent,
    MediaInfo,
    MediaQueuedEvent,
    MediaUpdateEvent,
    MotdEvent,
    PlaylistItem,
    PlaylistUpdateEvent,
    PrivateMessageEvent,
    RawEvent,
    TypedEvent,
    UserCountEvent,
    UserJoinEvent,
    UserLeaveEvent,
    decode_event,
    parse_envelope,
    to_typed_event,
)
from tests import bridge_format as bf

Style = Literal["offset", "z"]
STYLES: list[Style] = ["offset", "z"]
AT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
CID = "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b"
CHAT_TIME = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
LOGGER = "kryten_sync.events"


def sample(value: Any) -> Any:
    """A private copy of a shared sample payload."""
    return copy.deepcopy(value)


def decode(event_name: str, payload: Any, style: Style = "offset", **kwargs: Any) -> Any:
    kwargs.setdefault("at", AT)
    kwargs.setdefault("correlation_id", CID)
    return decode_event(bf.envelope(event_name, payload, timestamp_style=style, **kwargs))


def assert_envelope_fields(event: TypedEvent | RawEvent, event_name: str) -> None:
    assert event.event_name == event_name
    assert event.channel == "lounge"
    assert event.domain == "cytu.be"
    assert event.correlation_id == CID


def assert_aware_utc(value: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- bridge_format


def test_bridge_format_offset_is_what_the_bridge_writes() -> None:
    data = bf.envelope("chatMsg", sample(bf.CHAT_MSG), at=AT, correlation_id=CID)
    text = data.decode("ascii")  # json.dumps escapes non-ASCII, like the bridge
    assert text.startswith('{"event_name": "chatMsg", "payload": {"username": "alice"')
    body = json.loads(text)
    assert list(body) == [
        "event_name",
        "payload",
        "channel",
        "domain",
        "timestamp",
        "correlation_id",
    ]
    assert body["timestamp"] == "2024-05-06T07:08:09.123456+00:00"
    assert body["correlation_id"] == CID


def test_bridge_format_z_style() -> None:
    data = bf.envelope("chatMsg", sample(bf.CHAT_MSG), timestamp_style="z", at=AT)
    body = json.loads(data)
    assert body["timestamp"] == "2024-05-06T07:08:09.123456Z"
    assert b'", "' not in data  # compact
    assert "café".encode() in data  # UTF-8, not escaped


def test_bridge_format_defaults_and_extra() -> None:
    body = json.loads(bf.envelope("usercount", 3, source="test", timestamp="x"))
    assert body["channel"] == "lounge" and body["domain"] == "cytu.be"
    assert body["source"] == "test" and body["timestamp"] == "x"
    assert len(body["correlation_id"]) == 36
    with pytest.raises(ValueError):
        bf.envelope("usercount", 3, timestamp_style="bogus")  # type: ignore[arg-type]


def test_bridge_format_subject() -> None:
    assert bf.subject("Lounge", "chatMsg") == "kryten.events.cytube.lounge.chatmsg"
    assert bf.subject("My Channel!", "addUser") == "kryten.events.cytube.my-channel.adduser"


# --------------------------------------------------------------------------- envelope


@pytest.mark.parametrize("style", STYLES)
def test_parse_envelope_fields(style: Style) -> None:
    payload = sample(bf.CHAT_MSG)
    raw = parse_envelope(
        bf.envelope("chatMsg", payload, timestamp_style=style, at=AT, correlation_id=CID)
    )
    assert type(raw) is RawEvent
    assert_envelope_fields(raw, "chatMsg")
    assert raw.payload == payload
    assert raw.timestamp == AT
    assert raw.timestamp.tzinfo is UTC


def test_both_timestamp_styles_give_the_same_instant() -> None:
    a = parse_envelope(bf.envelope("x", None, at=AT, timestamp_style="offset"))
    b = parse_envelope(bf.envelope("x", None, at=AT, timestamp_style="z"))
    assert a.timestamp == b.timestamp == AT


def test_timestamp_without_fraction() -> None:
    at = AT.replace(microsecond=0)
    for style in STYLES:
        raw = parse_envelope(bf.envelope("x", None, at=at, timestamp_style=style))
        assert raw.timestamp == at


def test_naive_timestamp_is_utc() -> None:
    raw = parse_envelope(bf.envelope("x", None, timestamp="2024-05-06T07:08:09.5"))
    assert raw.timestamp == datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)
    assert raw.timestamp.tzinfo is UTC


def test_other_offset_is_converted_to_utc() -> None:
    raw = parse_envelope(bf.envelope("x", None, timestamp="2024-05-06T09:08:09+02:00"))
    assert raw.timestamp == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert raw.timestamp.tzinfo is UTC


@pytest.mark.parametrize("how", ["missing", "null"])
def test_missing_timestamp_is_now(how: str) -> None:
    body = json.loads(bf.envelope("x", None))
    if how == "missing":
        del body["timestamp"]
    else:
        body["timestamp"] = None
    before = datetime.now(UTC)
    raw = parse_envelope(json.dumps(body))
    after = datetime.now(UTC)
    assert before <= raw.timestamp <= after
    assert_aware_utc(raw.timestamp)


@pytest.mark.parametrize("how", ["missing", "null"])
def test_missing_correlation_id_is_empty(how: str) -> None:
    body = json.loads(bf.envelope("x", None))
    if how == "missing":
        del body["correlation_id"]
    else:
        body["correlation_id"] = None
    assert parse_envelope(json.dumps(body)).correlation_id == ""


def test_extra_keys_are_ignored() -> None:
    data = bf.envelope("chatMsg", sample(bf.CHAT_MSG), at=AT, correlation_id=CID, v=2, src="x")
    raw = parse_envelope(data)
    assert raw == RawEvent(
        event_name="chatMsg",
        payload=bf.CHAT_MSG,
        channel="lounge",
        domain="cytu.be",
        timestamp=AT,
        correlation_id=CID,
    )
    assert isinstance(decode_event(data), ChatMessageEvent)


def test_input_types() -> None:
    data = bf.envelope("usercount", 5, at=AT, correlation_id=CID)
    expected = parse_envelope(data)
    assert parse_envelope(data.decode()) == expected
    assert parse_envelope(bytearray(data)) == expected  # type: ignore[arg-type]
    assert parse_envelope(memoryview(data)) == expected  # type: ignore[arg-type]


def test_domain_with_port_and_channel_case_are_kept() -> None:
    raw = parse_envelope(bf.envelope("x", None, channel="Lounge", domain="localhost:8080"))
    assert raw.channel == "Lounge"
    assert raw.domain == "localhost:8080"


@pytest.mark.parametrize(
    "payload", [None, [], [1, "a"], "text", 3, 2.5, True, {}, {"nested": {"a": [1]}}]
)
def test_any_json_payload_is_kept(payload: Any) -> None:
    raw = parse_envelope(bf.envelope("someEvent", payload))
    assert raw.payload == payload
    assert type(raw.payload) is type(payload)


def test_raw_event_is_frozen() -> None:
    raw = parse_envelope(bf.envelope("x", None))
    with pytest.raises(ValidationError):
        raw.channel = "other"  # type: ignore[misc]


def test_raw_event_constructor_defaults_and_utc() -> None:
    raw = RawEvent(event_name="x", payload=None, channel="c", domain="d")
    assert_aware_utc(raw.timestamp)
    assert len(raw.correlation_id) == 36
    naive = RawEvent(
        event_name="x", payload=None, channel="c", domain="d", timestamp=datetime(2024, 1, 1)
    )
    assert naive.timestamp == datetime(2024, 1, 1, tzinfo=UTC)
    shifted = RawEvent(
        event_name="x",
        payload=None,
        channel="c",
        domain="d",
        timestamp=datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    )
    assert shifted.timestamp.tzinfo is UTC and shifted.timestamp.hour == 0


# --------------------------------------------------------------------------- malformed


def good_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(bf.envelope("chatMsg", sample(bf.CHAT_MSG)))
    return body


def malformed_reason(data: Any) -> str:
    with pytest.raises(MalformedEventError) as info:
        parse_envelope(data)
    with pytest.raises(MalformedEventError):
        decode_event(data)
    return info.value.reason


@pytest.mark.parametrize("data", [b"", b"{", b"hello", b'{"event_name": }', "{'a': 1}", b"\x00"])
def test_not_json(data: bytes | str) -> None:
    assert malformed_reason(data).startswith("not valid JSON: ")


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"[]", "array"), (b'[{"event_name": "x"}]', "array"), (b'"x"', "string"),
     (b"3", "number"), (b"null", "null"), (b"true", "boolean")],
)  # fmt: skip
def test_not_an_object(data: bytes, kind: str) -> None:
    assert malformed_reason(data) == f"not a JSON object (got {kind})"


@pytest.mark.parametrize("key", ["event_name", "payload", "channel", "domain"])
def test_missing_each_required_key(key: str) -> None:
    body = good_body()
    del body[key]
    assert malformed_reason(json.dumps(body)) == f"missing keys: {key}"


def test_missing_several_keys() -> None:
    body = good_body()
    del body["payload"], body["domain"]
    assert malformed_reason(json.dumps(body)) == "missing keys: domain, payload"
    assert malformed_reason(b"{}") == "missing keys: channel, domain, event_name, payload"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("event_name", 3, "event_name must be a string, got number"),
        ("event_name", None, "event_name must be a string, got null"),
        ("event_name", ["chatMsg"], "event_name must be a string, got array"),
        ("event_name", "", "event_name is empty"),
        ("channel", 7, "channel must be a string, got number"),
        ("channel", None, "channel must be a string, got null"),
        ("domain", {"host": "x"}, "domain must be a string, got object"),
        ("domain", False, "domain must be a string, got boolean"),
        ("correlation_id", 12, "correlation_id must be a string, got number"),
        ("timestamp", 1714979289, "bad timestamp: expected an ISO-8601 string, got number"),
    ],
)
def test_wrong_types(key: str, value: Any, reason: str) -> None:
    body = good_body()
    body[key] = value
    assert malformed_reason(json.dumps(body)) == reason


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "",
        "2024-13-01T00:00:00Z",
        "2024-05-06T25:00:00+00:00",
        "9999-12-31T23:59:59-05:00",
    ],
)
def test_bad_timestamp(timestamp: str) -> None:
    reason = malformed_reason(bf.envelope("x", None, timestamp=timestamp))
    assert reason.startswith(f"bad timestamp {timestamp!r}: ")


def test_bad_timestamp_reason_is_short() -> None:
    reason = malformed_reason(bf.envelope("x", None, timestamp="x" * 500))
    assert reason.startswith("bad timestamp 'xxx") and len(reason) < 100
    assert reason.endswith(": not ISO-8601")


@pytest.mark.parametrize(
    "data",
    [
        b'{"event_name": "chatMsg", "payload": "\xff\xfe", "channel": "a", "domain": "b"}',
        b"\xc3\x28",
        json.dumps({"event_name": "x", "payload": 1, "channel": "a", "domain": "b"}).encode(
            "utf-16"
        ),
        b'{"event_name": "caf\xe9", "payload": 1, "channel": "a", "domain": "b"}',  # latin-1
    ],
)
def test_non_utf8(data: bytes) -> None:
    assert malformed_reason(data).startswith("not valid UTF-8: ")


def test_deeply_nested_json() -> None:
    assert malformed_reason(b"[" * 100_000 + b"]" * 100_000).startswith("not valid JSON")


@pytest.mark.parametrize("data", [None, 42, {"event_name": "x"}])
def test_not_bytes_or_str(data: Any) -> None:
    assert malformed_reason(data).startswith("expected bytes or str, got ")


def test_malformed_error_shape() -> None:
    with pytest.raises(MalformedEventError) as info:
        parse_envelope(b"[]")
    err = info.value
    assert isinstance(err, KrytenValidationError)
    assert isinstance(err, ValueError)
    assert err.reason in str(err)
    assert err.problems == [err.reason]
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is MalformedEventError and again.reason == err.reason


# --------------------------------------------------------------------------- chatMsg / pm


@pytest.mark.parametrize("style", STYLES)
def test_chat_message(style: Style) -> None:
    event = decode("chatMsg", sample(bf.CHAT_MSG), style)
    assert type(event) is ChatMessageEvent
    assert_envelope_fields(event, "chatMsg")
    assert event.username == "alice"
    assert event.message == bf.CHAT_MSG["msg"]
    assert event.rank == 0.0 and isinstance(event.rank, float)
    assert event.shadow is False
    assert event.timestamp == CHAT_TIME
    assert event.timestamp.tzinfo is UTC
    assert event.raw == bf.CHAT_MSG


@pytest.mark.parametrize("style", STYLES)
def test_chat_without_time_uses_envelope_timestamp(style: Style) -> None:
    payload = sample(bf.CHAT_MSG)
    del payload["time"]
    event = decode("chatMsg", payload, style)
    assert isinstance(event, ChatMessageEvent)
    assert event.timestamp == AT
    assert_aware_utc(event.timestamp)


def test_chat_time_null_uses_envelope_timestamp() -> None:
    payload = sample(bf.CHAT_MSG) | {"time": None}
    assert decode("chatMsg", payload).timestamp == AT


def test_chat_fractional_time() -> None:
    payload = sample(bf.CHAT_MSG) | {"time": 1_700_000_000_123.5}
    ts = decode("chatMsg", payload).timestamp
    assert abs(ts - CHAT_TIME) <= timedelta(microseconds=501)


def test_chat_rank_from_payload() -> None:
    event = decode("chatMsg", sample(bf.CHAT_MSG) | {"rank": 3})
    assert event.rank == 3.0 and isinstance(event.rank, float)


def test_chat_fractional_rank() -> None:
    assert decode("chatMsg", sample(bf.CHAT_MSG) | {"rank": 1.5}).rank == 1.5


def test_chat_user_name_and_rank_fallback() -> None:
    payload = {"user": {"name": "carol", "rank": 2}, "msg": "hi", "time": bf.CHAT_TIME_MS}
    event = decode("chatMsg", payload)
    assert isinstance(event, ChatMessageEvent)
    assert event.username == "carol"
    assert event.rank == 2.0


def test_chat_user_rank_fallback_only() -> None:
    payload = sample(bf.CHAT_MSG) | {"user": {"name": "ignored", "rank": 1.5}}
    event = decode("chatMsg", payload)
    assert event.username == "alice"  # username wins over user.name
    assert event.rank == 1.5


def test_chat_rank_wins_over_user_rank() -> None:
    payload = sample(bf.CHAT_MSG) | {"rank": 4, "user": {"name": "x", "rank": 1}}
    assert decode("chatMsg", payload).rank == 4.0


def test_chat_message_fallback() -> None:
    payload = sample(bf.CHAT_MSG)
    payload["message"] = payload.pop("msg")
    event = decode("chatMsg", payload)
    assert event.message == bf.CHAT_MSG["msg"]


def test_chat_msg_wins_over_message() -> None:
    payload = sample(bf.CHAT_MSG) | {"message": "other"}
    assert decode("chatMsg", payload).message == bf.CHAT_MSG["msg"]


def test_chat_missing_rank_defaults_to_zero() -> None:
    payload = {"user": {"name": "dave"}, "message": "yo"}
    event = decode("chatMsg", payload)
    assert isinstance(event, ChatMessageEvent)
    assert event.rank == 0.0
    assert event.timestamp == AT


@pytest.mark.parametrize(
    ("meta", "shadow"),
    [({"shadow": True}, True), ({"shadow": False}, False), ({}, False),
     ({"addClass": "action", "modflair": 2}, False), (None, False), ("odd", False)],
)  # fmt: skip
def test_chat_shadow(meta: Any, shadow: bool) -> None:
    payload = sample(bf.CHAT_MSG) | {"meta": meta}
    assert decode("chatMsg", payload).shadow is shadow


def test_chat_without_meta() -> None:
    payload = sample(bf.CHAT_MSG)
    del payload["meta"]
    assert decode("chatMsg", payload).shadow is False


@pytest.mark.parametrize("style", STYLES)
def test_private_message(style: Style) -> None:
    event = decode("pm", sample(bf.PM), style)
    assert type(event) is PrivateMessageEvent
    assert isinstance(event, ChatMessageEvent)
    assert_envelope_fields(event, "pm")
    assert (event.username, event.message, event.to) == ("alice", "psst", "kryten")
    assert event.timestamp == CHAT_TIME
    assert event.raw == bf.PM


def test_private_message_fallbacks_and_shadow() -> None:
    payload = {"user": {"name": "eve", "rank": 1.5}, "message": "s", "to": "bot",
               "meta": {"shadow": True}}  # fmt: skip
    event = decode("pm", payload)
    assert isinstance(event, PrivateMessageEvent)
    assert (event.username, event.rank, event.message, event.shadow) == ("eve", 1.5, "s", True)
    assert event.timestamp == AT


# --------------------------------------------------------------------------- users


@pytest.mark.parametrize("style", STYLES)
def test_user_join(style: Style) -> None:
    event = decode("addUser", sample(bf.ADD_USER), style)
    assert type(event) is UserJoinEvent
    assert_envelope_fields(event, "addUser")
    assert event.username == "bob"
    assert event.rank == 1.5
    assert event.timestamp == AT
    assert event.raw == bf.ADD_USER


def test_user_join_integer_rank_is_float() -> None:
    event = decode("addUser", sample(bf.ADD_USER) | {"rank": 0})
    assert event.rank == 0.0 and isinstance(event.rank, float)


def test_user_join_time_is_used_when_present() -> None:
    event = decode("addUser", sample(bf.ADD_USER) | {"time": bf.CHAT_TIME_MS})
    assert event.timestamp == CHAT_TIME


@pytest.mark.parametrize("style", STYLES)
def test_user_leave(style: Style) -> None:
    event = decode("userLeave", sample(bf.USER_LEAVE), style)
    assert type(event) is UserLeaveEvent
    assert_envelope_fields(event, "userLeave")
    assert event.username == "bob"
    assert event.timestamp == AT


# --------------------------------------------------------------------------- media


@pytest.mark.parametrize("style", STYLES)
def test_change_media(style: Style) -> None:
    event = decode("changeMedia", sample(bf.CHANGE_MEDIA), style)
    assert type(event) is ChangeMediaEvent
    assert_envelope_fields(event, "changeMedia")
    assert event.media_type == "yt"
    assert event.media_id == "dQw4w9WgXcQ"
    assert event.title == "Rick Astley - Never Gonna Give You Up"
    assert event.duration == 213.0 and isinstance(event.duration, float)
    assert event.uid is None
    assert event.timestamp == AT
    assert event.raw == bf.CHANGE_MEDIA


def test_change_media_with_uid() -> None:
    event = decode("changeMedia", sample(bf.CHANGE_MEDIA) | {"uid": 41})
    assert event.uid == 41


def test_change_media_live_stream_zero_seconds() -> None:
    event = decode("changeMedia", sample(bf.CHANGE_MEDIA) | {"seconds": 0, "type": "tw"})
    assert event.duration == 0.0 and event.media_type == "tw"


@pytest.mark.parametrize("style", STYLES)
def test_playlist(style: Style) -> None:
    event = decode("playlist", sample(bf.PLAYLIST), style)
    assert type(event) is PlaylistUpdateEvent
    assert_envelope_fields(event, "playlist")
    assert event.timestamp == AT
    assert event.raw == bf.PLAYLIST
    first, second = event.items
    assert first == PlaylistItem(
        uid=41,
        temp=False,
        queueby="alice",
        media=MediaInfo(
            id="dQw4w9WgXcQ", type="yt", title="Rick Astley - Never Gonna Give You Up", seconds=213
        ),
    )
    assert second.uid == 42 and second.temp is True and second.queueby == ""
    assert second.media.seconds == 186.5 and second.media.type == "vi"
    assert not hasattr(second.media, "duration")  # extra keys are dropped


def test_empty_playlist() -> None:
    event = decode("playlist", [])
    assert isinstance(event, PlaylistUpdateEvent) and event.items == []


def test_playlist_repr_omits_raw() -> None:
    event = decode("playlist", sample(bf.PLAYLIST))
    assert "raw=" not in repr(event)


@pytest.mark.parametrize("style", STYLES)
def test_queue(style: Style) -> None:
    event = decode("queue", sample(bf.QUEUE), style)
    assert type(event) is MediaQueuedEvent
    assert_envelope_fields(event, "queue")
    assert event.item.uid == 43
    assert event.item.media.id == "jNQXAC9IVRw"
    assert event.item.media.seconds == 19.0
    assert event.item.temp is True and event.item.queueby == "bob"
    assert event.after == 42
    assert event.timestamp == AT


def test_queue_after_prepend_and_missing() -> None:
    assert decode("queue", sample(bf.QUEUE) | {"after": "prepend"}).after == "prepend"
    payload = sample(bf.QUEUE)
    del payload["after"]
    assert decode("queue", payload).after is None


@pytest.mark.parametrize("style", STYLES)
def test_delete(style: Style) -> None:
    event = decode("delete", sample(bf.DELETE), style)
    assert type(event) is MediaDeletedEvent
    assert_envelope_fields(event, "delete")
    assert event.uid == 42


@pytest.mark.parametrize("style", STYLES)
def test_media_update(style: Style) -> None:
    event = decode("mediaUpdate", sample(bf.MEDIA_UPDATE), style)
    assert type(event) is MediaUpdateEvent
    assert_envelope_fields(event, "mediaUpdate")
    assert event.current_time == 42.137
    assert event.paused is False
    assert event.timestamp == AT


def test_media_update_integer_and_negative_time() -> None:
    event = decode("mediaUpdate", {"currentTime": -3, "paused": True})
    assert event.current_time == -3.0 and isinstance(event.current_time, float)
    assert event.paused is True


# --------------------------------------------------------------------------- non-object payloads


@pytest.mark.parametrize("style", STYLES)
def test_usercount(style: Style) -> None:
    event = decode("usercount", bf.USERCOUNT, style)
    assert type(event) is UserCountEvent
    assert_envelope_fields(event, "usercount")
    assert event.count == 12
    assert event.raw == 12
    assert event.timestamp == AT


@pytest.mark.parametrize("style", STYLES)
def test_motd(style: Style) -> None:
    event = decode("setMotd", bf.SET_MOTD, style)
    assert type(event) is MotdEvent
    assert_envelope_fields(event, "setMotd")
    assert event.motd == bf.SET_MOTD
    assert event.timestamp == AT


def test_empty_motd() -> None:
    assert decode("setMotd", "").motd == ""


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "payload", "model"),
    [
        ("chatmsg", bf.CHAT_MSG, ChatMessageEvent),
        ("CHATMSG", bf.CHAT_MSG, ChatMessageEvent),
        ("ChatMsg", bf.CHAT_MSG, ChatMessageEvent),
        ("PM", bf.PM, PrivateMessageEvent),
        ("adduser", bf.ADD_USER, UserJoinEvent),
        ("USERLEAVE", bf.USER_LEAVE, UserLeaveEvent),
        ("changemedia", bf.CHANGE_MEDIA, ChangeMediaEvent),
        ("Playlist", bf.PLAYLIST, PlaylistUpdateEvent),
        ("QUEUE", bf.QUEUE, MediaQueuedEvent),
        ("Delete", bf.DELETE, MediaDeletedEvent),
        ("mediaupdate", bf.MEDIA_UPDATE, MediaUpdateEvent),
        ("userCount", bf.USERCOUNT, UserCountEvent),
        ("setmotd", bf.SET_MOTD, MotdEvent),
    ],
)
def test_names_match_case_insensitively(name: str, payload: Any, model: type[TypedEvent]) -> None:
    event = decode(name, sample(payload))
    assert type(event) is model
    assert event.event_name == name  # kept as received


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("setUserMeta", {"name": "bob", "meta": {"afk": True, "muted": False}}),
        ("rank", 2),
        ("clearchat", None),
        ("login", {"success": True, "name": "kryten"}),
        ("setPlaylistLocked", True),
        ("chatMsgX", bf.CHAT_MSG),
        ("someUnknownEvent", None),
    ],
)
def test_unknown_events_stay_raw(name: str, payload: Any, caplog: pytest.LogCaptureFixture) -> None:
    data = bf.envelope(name, sample(payload), at=AT, correlation_id=CID)
    event = decode_event(data)
    assert type(event) is RawEvent
    assert event == parse_envelope(data)
    assert event.payload == payload
    assert warnings_of(caplog) == []


# --------------------------------------------------------------------------- misfits


MISFITS: list[tuple[str, Any, str]] = [
    ("chatMsg", None, "payload must be an object, got null"),
    ("chatMsg", [bf.CHAT_MSG], "payload must be an object, got array"),
    ("chatMsg", "hello", "payload must be an object, got string"),
    ("chatMsg", {"msg": "hi"}, "missing username (or user.name)"),
    ("chatMsg", {"user": {"rank": 1}, "msg": "hi"}, "missing username (or user.name)"),
    ("chatMsg", {"user": {"name": 5}, "msg": "hi"}, "user.name must be a string, got number"),
    ("chatMsg", {"username": 5, "msg": "hi"}, "username must be a string, got number"),
    ("chatMsg", {"username": "a"}, "missing msg (or message)"),
    ("chatMsg", {"username": "a", "msg": 5}, "msg must be a string, got number"),
    ("chatMsg", {"username": "a", "message": {}}, "message must be a string, got object"),
    ("chatMsg", {"username": "a", "msg": "m", "rank": "2"}, "rank must be a number, got string"),
    ("chatMsg", {"username": "a", "msg": "m", "rank": True}, "rank must be a number, got boolean"),
    ("chatMsg", {"username": "a", "msg": "m", "user": {"rank": []}},
     "user.rank must be a number, got array"),
    ("chatMsg", {"username": "a", "msg": "m", "meta": {"shadow": 1}},
     "meta.shadow must be a boolean, got number"),
    ("chatMsg", {"username": "a", "msg": "m", "time": "1700000000000"},
     "time must be a number, got string"),
    ("chatMsg", {"username": "a", "msg": "m", "time": 10**20}, "time 100000000000000000000 is out"),
    ("chatMsg", {"username": "a", "msg": "m", "time": 1e400}, "time must be a finite number"),
    ("pm", {"username": "a", "msg": "m"}, "missing to"),
    ("pm", {"username": "a", "msg": "m", "to": 3}, "to must be a string, got number"),
    ("addUser", {"name": "bob"}, "missing rank"),
    ("addUser", {"rank": 1}, "missing name"),
    ("addUser", {"name": "bob", "rank": "1"}, "rank must be a number, got string"),
    ("addUser", ["bob"], "payload must be an object, got array"),
    ("userLeave", {}, "missing name"),
    ("userLeave", "bob", "payload must be an object, got string"),
    ("changeMedia", {"type": "yt", "id": "x", "title": "t"}, "missing seconds"),
    ("changeMedia", {"type": "yt", "id": 5, "title": "t", "seconds": 1},
     "id must be a string, got number"),
    ("changeMedia", {"type": "yt", "id": "x", "title": "t", "seconds": 1, "uid": "7"},
     "uid must be an integer, got string"),
    ("playlist", {"items": []}, "payload must be an array, got object"),
    ("playlist", None, "payload must be an array, got null"),
    ("playlist", [{"media": bf.PLAYLIST[0]["media"], "temp": False, "queueby": "a"}],
     "[0].uid: Field required"),
    ("playlist", [bf.PLAYLIST[0], {**bf.PLAYLIST[1], "media": {**bf.PLAYLIST[1]["media"],
                                                                 "seconds": "186"}}],
     "[1].media.seconds: Input should be a valid number, got string"),
    ("playlist", [bf.PLAYLIST[0], "x"], "[1]: Input should be a valid dictionary"),
    ("queue", {"after": 1}, "missing item"),
    ("queue", {"item": {**bf.QUEUE["item"], "uid": "43"}, "after": 1},
     "item.uid: Input should be a valid integer, got string"),
    ("queue", {"item": bf.QUEUE["item"], "after": True},
     "after must be an integer or a string, got boolean"),
    ("queue", {"item": bf.QUEUE["item"], "after": 1.5},
     "after must be an integer or a string, got number"),
    ("delete", {}, "missing uid"),
    ("delete", {"uid": "42"}, "uid must be an integer, got string"),
    ("delete", {"uid": 4.2}, "uid must be an integer, got number"),
    ("delete", 42, "payload must be an object, got number"),
    ("mediaUpdate", {"currentTime": 1}, "missing paused"),
    ("mediaUpdate", {"currentTime": "1", "paused": False}, "currentTime must be a number"),
    ("mediaUpdate", {"currentTime": 1, "paused": "no"}, "paused must be a boolean, got string"),
    ("usercount", "12", "payload must be an integer, got string"),
    ("usercount", 12.5, "payload must be an integer, got number"),
    ("usercount", True, "payload must be an integer, got boolean"),
    ("usercount", None, "payload must be an integer, got null"),
    ("usercount", {"count": 12}, "payload must be an integer, got object"),
    ("setMotd", None, "payload must be a string, got null"),
    ("setMotd", {"motd": "hi", "html": "hi"}, "payload must be a string, got object"),
    ("setMotd", ["hi"], "payload must be a string, got array"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "payload", "reason"), MISFITS)
def test_misfit_payload_becomes_raw_with_one_warning(
    name: str, payload: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    data = bf.envelope(name, sample(payload), at=AT, correlation_id=CID)
    event = decode_event(data)
    assert type(event) is RawEvent
    assert event == parse_envelope(data)
    assert event.payload == payload
    records = warnings_of(caplog)
    assert len(records) == 1
    message = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert name in message
    assert reason in message
    assert "RawEvent" in message


def test_to_typed_event_misfit_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    raw = parse_envelope(bf.envelope("delete", {"uid": "x"}, channel="Lounge"))
    assert to_typed_event(raw) is raw
    records = warnings_of(caplog)
    assert len(records) == 1
    assert "delete event on cytu.be/Lounge does not fit MediaDeletedEvent" in (
        records[0].getMessage()
    )


def test_to_typed_event_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(payload: object) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setitem(events_module._CONVERTERS, "delete", (MediaDeletedEvent, broken))
    data = bf.envelope("delete", {"uid": 1})
    raw = parse_envelope(data)
    assert to_typed_event(raw) is raw
    assert decode_event(data) == raw
    records = warnings_of(caplog)
    assert len(records) == 2
    assert all("RuntimeError: boom" in r.getMessage() for r in records)


# --------------------------------------------------------------------------- consistency


ALL_SAMPLES = [
    ("chatMsg", bf.CHAT_MSG),
    ("pm", bf.PM),
    ("addUser", bf.ADD_USER),
    ("userLeave", bf.USER_LEAVE),
    ("changeMedia", bf.CHANGE_MEDIA),
    ("playlist", bf.PLAYLIST),
    ("queue", bf.QUEUE),
    ("delete", bf.DELETE),
    ("mediaUpdate", bf.MEDIA_UPDATE),
    ("usercount", bf.USERCOUNT),
    ("setMotd", bf.SET_MOTD),
]


@pytest.mark.parametrize(("name", "payload"), ALL_SAMPLES)
def test_decode_event_equals_both_steps(name: str, payload: Any) -> None:
    data = bf.envelope(name, sample(payload), at=AT, correlation_id=CID)
    typed = decode_event(data)
    assert isinstance(typed, TypedEvent)
    assert typed == to_typed_event(parse_envelope(data))
    assert typed.raw == payload
    assert_envelope_fields(typed, name)
    assert_aware_utc(typed.timestamp)


def test_typed_events_are_frozen() -> None:
    event = decode("chatMsg", sample(bf.CHAT_MSG))
    with pytest.raises(ValidationError):
        event.message = "changed"


def test_public_names() -> None:
    for name in events_module.__all__:
        assert hasattr(events_module, name), name
    assert set(events_module.__all__) >= {
        "RawEvent", "TypedEvent", "ChatMessageEvent", "PrivateMessageEvent", "UserJoinEvent",
        "UserLeaveEvent", "ChangeMediaEvent", "PlaylistItem", "MediaInfo",
        "PlaylistUpdateEvent", "MediaQueuedEvent", "MediaDeletedEvent", "MediaUpdateEvent",
        "UserCountEvent", "MotdEvent", "Event", "MalformedEventError", "parse_envelope",
        "to_typed_event", "decode_event",
    }  # fmt: skip
