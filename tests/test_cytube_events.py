"""The typed events beyond chat, users and playlist (polls, ranks, leader, AFK,
voteskip, emotes, kicks, errors, userlist, setCurrent, moveVideo), the chat text
helper, and the list of CyTube's event names. No NATS needed.

The payloads are shaped as CyTube's server emits them (src/channel/*.js, src/user.js,
src/poll.js); the comment on each says where it comes from.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from kryten_sync import events as events_module
from kryten_sync.eventnames import EVENT_NAMES, cytube_name, unknown_event_hint
from kryten_sync.events import (
    TYPED_EVENTS,
    AfkEvent,
    ChannelUser,
    ChatMessageEvent,
    Emote,
    EmoteListEvent,
    EmoteRemoveEvent,
    EmoteRenameEvent,
    EmoteUpdateEvent,
    ErrorMessageEvent,
    KickEvent,
    LeaderEvent,
    MediaMovedEvent,
    PlaylistCurrentEvent,
    PollClosedEvent,
    PollEvent,
    PollOpenedEvent,
    PollUpdateEvent,
    PrivateMessageEvent,
    RawEvent,
    TypedEvent,
    UserListEvent,
    UserRankEvent,
    VoteskipEvent,
    decode_event,
)
from tests import bridge_format as bf

AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
OPENED_MS = 1_700_000_000_123
OPENED = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)

# poll.js toUpdateFrame(): {title, options, counts, initiator, timestamp}; title and
# options are sanitised (escaped) with links made <a> tags.
POLL = {
    "title": "Best &lt;film&gt;?",
    "options": ["Alien", "Heat"],
    "counts": [2, 0],
    "initiator": "alice",
    "timestamp": OPENED_MS,
}
# A hidden-results poll: "?" for ordinary users, "2?" for those who may see them.
HIDDEN_POLL = {**POLL, "counts": ["?", "?"]}
HIDDEN_POLL_MOD = {**POLL, "counts": ["2?", "0?"]}
# user.js packUserData() for each user (ranks.js re-sends it when a rank changes).
USERLIST = [
    {
        "name": "alice",
        "rank": 3,
        "profile": {"image": "", "text": ""},
        "meta": {"afk": False, "muted": False, "smuted": False, "aliases": ["alice"]},
    },
    {"name": "bob", "rank": 1.5, "profile": {"image": "b.png", "text": "hi"}, "meta": {}},
]
# emotes.js: validateEmote() adds source, escapes image; broadcast as is.
EMOTE = {"name": "Kappa", "image": "https://x/k.png?a=1&amp;b=2", "source": "(^|\\s)Kappa(?!\\S)"}

SAMPLES: list[tuple[str, Any, type[TypedEvent], dict[str, Any]]] = [
    ("newPoll", POLL, PollOpenedEvent, {"title": "Best &lt;film&gt;?", "counts": [2, 0]}),
    ("updatePoll", HIDDEN_POLL, PollUpdateEvent, {"counts": ["?", "?"], "opened_at": OPENED}),
    ("updatePoll", HIDDEN_POLL_MOD, PollUpdateEvent, {"counts": ["2?", "0?"]}),
    # poll.js broadcastAll("closePoll") and socket.emit("closePoll"): no data at all.
    ("closePoll", None, PollClosedEvent, {}),
    # ranks.js broadcastAll("setUserRank", data): {name, rank} as the moderator sent it.
    ("setUserRank", {"name": "Bob", "rank": 2}, UserRankEvent, {"username": "Bob", "rank": 2.0}),
    # playlist.js: the leader gets rank 1.5 while leading.
    ("setUserRank", {"name": "bob", "rank": 1.5}, UserRankEvent, {"rank": 1.5}),
    # playlist.js broadcastAll("setLeader", name), and "" when the leader is removed.
    ("setLeader", "bob", LeaderEvent, {"username": "bob"}),
    ("setLeader", "", LeaderEvent, {"username": ""}),
    # channel.js broadcastAll("setAFK", {name, afk}).
    ("setAFK", {"name": "carol", "afk": True}, AfkEvent, {"username": "carol", "afk": True}),
    # voteskip.js sendVoteskipData(): {count, need}.
    ("voteskip", {"count": 1, "need": 3}, VoteskipEvent, {"count": 1, "need": 3}),
    # user.js kick(reason): socket.emit("kick", {reason}); without a reason the key is gone.
    ("kick", {"reason": "You're banned!"}, KickEvent, {"reason": "You're banned!"}),
    ("kick", {}, KickEvent, {"reason": ""}),
    # errorMsg: {msg} or {msg, alert: true}.
    (
        "errorMsg",
        {"msg": "PM failed: x isn't connected to this channel."},
        ErrorMessageEvent,
        {"message": "PM failed: x isn't connected to this channel.", "alert": False},
    ),
    (
        "errorMsg",
        {"msg": "Emote already exists.", "alert": True},
        ErrorMessageEvent,
        {"alert": True},
    ),
    ("userlist", USERLIST, UserListEvent, {}),
    ("emoteList", [EMOTE], EmoteListEvent, {"emotes": [Emote(**EMOTE)]}),
    ("updateEmote", EMOTE, EmoteUpdateEvent, {"emote": Emote(**EMOTE)}),
    ("renameEmote", {**EMOTE, "old": "Kapa"}, EmoteRenameEvent, {"old_name": "Kapa"}),
    ("removeEmote", {"name": "Kappa"}, EmoteRemoveEvent, {"name": "Kappa"}),
    # playlist.js: socket.emit("setCurrent", uid).
    ("setCurrent", 41, PlaylistCurrentEvent, {"uid": 41}),
    # playlist.js broadcastAll("moveVideo", data): {from, after} with after a uid or a word.
    ("moveVideo", {"from": 7, "after": 3}, MediaMovedEvent, {"from_uid": 7, "after": 3}),
    ("moveVideo", {"from": 7, "after": "prepend"}, MediaMovedEvent, {"after": "prepend"}),
]


def decode(name: str, payload: Any) -> Any:
    return decode_event(bf.envelope(name, copy.deepcopy(payload), at=AT, correlation_id="cid-1"))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kryten_sync.events" and r.levelno >= 30]


@pytest.mark.parametrize(("name", "payload", "model", "expected"), SAMPLES)
def test_cytube_payload_arrives_as_its_model(
    name: str, payload: Any, model: type[TypedEvent], expected: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    event = decode(name, payload)
    assert type(event) is model
    assert (event.event_name, event.channel, event.domain) == (name, "lounge", "cytu.be")
    assert event.correlation_id == "cid-1"
    assert event.timestamp == AT  # none of these payloads has a `time`
    assert event.raw == payload
    assert event.payload == payload  # like a RawEvent's
    for field, value in expected.items():
        assert getattr(event, field) == value, field
    assert warnings_of(caplog) == []


def test_poll_fields() -> None:
    event = decode("newPoll", POLL)
    assert isinstance(event, PollEvent)
    assert event.options == ["Alien", "Heat"]
    assert event.initiator == "alice"
    assert event.opened_at == OPENED
    old = {key: value for key, value in POLL.items() if key != "timestamp"}
    assert decode("updatePoll", old).opened_at is None  # very old polls have no timestamp


def test_userlist_users_are_channel_users() -> None:
    event = decode("userlist", USERLIST)
    alice, bob = event.users
    assert isinstance(alice, ChannelUser)
    assert (alice.name, alice.rank, alice.meta.aliases) == ("alice", 3.0, ["alice"])
    assert (bob.name, bob.rank, bob.profile.text, bob.meta.afk) == ("bob", 1.5, "hi", False)
    assert isinstance(alice.rank, float)


def test_ranks_are_floats() -> None:
    event = decode("setUserRank", {"name": "bob", "rank": 2})
    assert isinstance(event.rank, float)


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("newPoll", {**POLL, "options": "Alien"}, "options must be an array, got string"),
        ("newPoll", {**POLL, "counts": [1, None]}, "counts[1] has the wrong type (null)"),
        ("newPoll", {**POLL, "counts": [True]}, "counts[0] has the wrong type (boolean)"),
        ("updatePoll", {**POLL, "title": None}, "missing title"),
        ("newPoll", {**POLL, "timestamp": "yesterday"}, "timestamp must be a number"),
        ("setUserRank", {"name": "bob", "rank": "2"}, "rank must be a number, got string"),
        ("setUserRank", {"rank": 2}, "missing name"),
        ("setLeader", None, "payload must be a string, got null"),
        ("setAFK", {"name": "carol", "afk": "yes"}, "afk must be a boolean, got string"),
        ("voteskip", {"count": 1.5, "need": 3}, "count must be an integer, got number"),
        ("kick", "bye", "payload must be an object, got string"),
        ("kick", {"reason": 5}, "reason must be a string, got number"),
        ("errorMsg", {"message": "x"}, "missing msg"),
        ("errorMsg", {"msg": "x", "alert": 1}, "alert must be a boolean, got number"),
        ("userlist", {"name": "bob"}, "payload must be an array, got object"),
        ("userlist", [{"rank": 1}], "[0].name: Field required"),
        ("emoteList", [{"name": "Kappa"}], "[0].image: Field required"),
        ("updateEmote", {"name": "Kappa", "image": 3}, "image: Input should be a valid string"),
        ("renameEmote", EMOTE, "missing old"),
        ("removeEmote", {}, "missing name"),
        ("setCurrent", "41", "payload must be an integer, got string"),
        ("moveVideo", {"from": 7}, "missing after"),
        ("moveVideo", {"from": 7, "after": True}, "after must be an integer or a string"),
    ],
)
def test_payload_that_does_not_fit_arrives_raw_with_one_warning(
    name: str, payload: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = decode(name, payload)
    assert type(event) is RawEvent
    assert event.payload == payload
    (record,) = warnings_of(caplog)
    message = record.getMessage()
    assert f"does not fit {TYPED_EVENTS[name].__name__}" in message
    assert reason in message, message
    assert message.endswith("delivered as RawEvent")


# --------------------------------------------------------------------------- chat text


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("hello &lt;everyone&gt;", "hello <everyone>"),
        # sanitizeText() escapes & < > " ' ( ) the way CyTube does.
        ("&quot;a&quot; &amp; &#39;b&#39; &#40;c&#41;", "\"a\" & 'b' (c)"),
        # Links become tags (filters may add markup too); the text keeps what was typed.
        (
            'see <a href="https://x.io/a?b=1&amp;c=2" target="_blank">'
            "https://x.io/a?b=1&amp;c=2</a>",
            "see https://x.io/a?b=1&c=2",
        ),
        ("typed &lt;b&gt;bold&lt;/b&gt;", "typed <b>bold</b>"),
        ("caf\u00e9 \u2014 ok", "caf\u00e9 \u2014 ok"),
    ],
)
def test_chat_text_is_the_message_as_typed(message: str, text: str) -> None:
    chat = decode("chatMsg", {**bf.CHAT_MSG, "msg": message})
    assert isinstance(chat, ChatMessageEvent)
    assert chat.message == message
    assert chat.text == text
    pm = decode("pm", {**bf.PM, "msg": message})
    assert isinstance(pm, PrivateMessageEvent)
    assert pm.text == text


# --------------------------------------------------------------------------- names


def test_every_typed_event_is_a_cytube_event_and_marked() -> None:
    assert set(TYPED_EVENTS) <= set(EVENT_NAMES)
    for name, model in EVENT_NAMES.items():
        assert model is TYPED_EVENTS.get(name), name
    assert EVENT_NAMES["chatMsg"] is ChatMessageEvent
    assert EVENT_NAMES["setUserMeta"] is None


def test_typed_events_cover_the_event_union() -> None:
    union = set(events_module.Event.__args__)  # type: ignore[attr-defined]
    assert union == {RawEvent, *TYPED_EVENTS.values()}


def test_names_compare_without_case() -> None:
    assert cytube_name("chatmsg") == "chatMsg"
    assert cytube_name(" SETAFK ") == "setAFK"
    assert cytube_name("chatmsgg") is None


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("chatmsgg", "chatMsg"),
        ("chatMessage", "chatMsg"),
        ("adduser_", "addUser"),
        ("userJoin", "addUser"),
        ("UserJoinEvent", "addUser"),
        ("chat", "chatMsg"),
        ("setafk", "no hint"),
        ("*", "no hint"),
        ("newpoll", "no hint"),
        ("my.custom.event", None),
    ],
)
def test_unknown_event_hint(name: str, suggestion: str | None) -> None:
    hint = unknown_event_hint(name)
    if suggestion == "no hint":
        assert hint is None
        return
    assert hint is not None
    assert hint.startswith(f"{name!r} is not an event CyTube sends through the bridge")
    if suggestion is None:
        assert "did you mean" not in hint
    else:
        assert hint.endswith(f"did you mean {suggestion!r}?")
