"""One or more sample calls of every command method, with the exact ``data`` on the wire.

``SAMPLES[method]`` is a **list** (always, even with one entry) of
``(args, kwargs, expected_data)``: call ``client.<method>(SAMPLE_CHANNEL, *args, **kwargs)``
and the command body's ``data`` must equal ``expected_data`` exactly, value types included
(``jump_to``'s uid is a ``str``, ``temp`` a ``bool``, ``seek``'s time stays as given, ...).
Keys are listed in protocol order. ``iter_samples()`` flattens the lists for parametrising.

Every expected dict survives a JSON round trip unchanged, so it can be compared with what
a real NATS subscriber decodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Sample = tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]

#: The channel every sample is sent to (normalises to ``test-channel``: case folds).
SAMPLE_CHANNEL = "Test-Channel"

_CSS = "body { background: #000; }"
_JS = "console.log('kryten');"
_FILTER = ("badword", r"\bbad\b", "gi", "###")
_FILTER_DATA = {
    "name": "badword",
    "source": r"\bbad\b",
    "flags": "gi",
    "replace": "###",
}

SAMPLES: dict[str, list[Sample]] = {
    "send_chat": [
        (("Hello, world!",), {}, {"message": "Hello, world!"}),
        ((), {"message": "héllo ✓"}, {"message": "héllo ✓"}),
    ],
    "send_pm": [
        (("alice", "psst"), {}, {"to": "alice", "message": "psst"}),
    ],
    "queue_media": [
        (
            ("yt", "dQw4w9WgXcQ"),
            {},
            {"type": "yt", "id": "dQw4w9WgXcQ", "pos": "end", "temp": True},
        ),
        (
            ("cm", "https://example.com/manifest.json", "next", True),
            {},
            {"type": "cm", "id": "https://example.com/manifest.json", "pos": "next", "temp": True},
        ),
        (
            ("yt", "abc"),
            {"position": "next", "temp": False},
            {"type": "yt", "id": "abc", "pos": "next", "temp": False},
        ),
    ],
    "delete_media": [
        ((42,), {}, {"uid": 42}),
        ((0,), {}, {"uid": 0}),
    ],
    "move_media": [
        ((7, 3), {}, {"uid": 7, "after": 3}),
        ((7, "prepend"), {}, {"uid": 7, "after": "prepend"}),
        ((7,), {"position": "append"}, {"uid": 7, "after": "append"}),
    ],
    "jump_to": [
        ((12,), {}, {"uid": "12"}),
        (("12",), {}, {"uid": "12"}),
        (("007",), {}, {"uid": "7"}),
    ],
    "clear_playlist": [((), {}, {})],
    "shuffle_playlist": [((), {}, {})],
    "set_temp": [
        ((5,), {}, {"uid": 5, "temp": True}),
        ((5, False), {}, {"uid": 5, "temp": False}),
    ],
    "play_next": [((), {}, {})],
    "pause": [((), {}, {})],
    "play": [((), {}, {})],
    "seek": [
        ((90,), {}, {"time": 90}),
        ((12.5,), {}, {"time": 12.5}),
    ],
    "kick_user": [
        (("spammer",), {}, {"username": "spammer"}),
        (("spammer", "flooding"), {}, {"username": "spammer", "reason": "flooding"}),
        (("spammer",), {"reason": ""}, {"username": "spammer"}),
    ],
    "ban_user": [
        (("troll",), {}, {"username": "troll"}),
        (("troll",), {"reason": "harassment"}, {"username": "troll", "reason": "harassment"}),
    ],
    "voteskip": [((), {}, {})],
    "assign_leader": [
        (("alice",), {}, {"username": "alice"}),
        (("",), {}, {"username": ""}),
    ],
    "mute_user": [(("bob",), {}, {"username": "bob"})],
    "shadow_mute_user": [(("bob",), {}, {"username": "bob"})],
    "unmute_user": [(("bob",), {}, {"username": "bob"})],
    "set_motd": [
        (("<h1>Welcome!</h1>",), {}, {"motd": "<h1>Welcome!</h1>"}),
        (("",), {}, {"motd": ""}),
    ],
    "set_channel_css": [
        ((_CSS,), {}, {"css": _CSS}),
        (("a" * (20 * 1024),), {}, {"css": "a" * (20 * 1024)}),
    ],
    "set_channel_js": [
        ((_JS,), {}, {"js": _JS}),
        (("",), {}, {"js": ""}),
    ],
    "set_options": [
        (
            ({"allow_voteskip": True, "voteskip_ratio": 0.5, "pagetitle": "Lounge"},),
            {},
            {"options": {"allow_voteskip": True, "voteskip_ratio": 0.5, "pagetitle": "Lounge"}},
        ),
        (
            ({"chat_antiflood_params": {"burst": 4, "sustained": 1}},),
            {},
            {"options": {"chat_antiflood_params": {"burst": 4, "sustained": 1}}},
        ),
    ],
    "set_permissions": [
        (
            ({"playlistadd": 1.5, "ban": 2},),
            {},
            {"permissions": {"playlistadd": 1.5, "ban": 2}},
        ),
    ],
    "update_emote": [
        (
            ("Kappa", "https://i.imgur.com/kappa.png"),
            {},
            {"name": "Kappa", "image": "https://i.imgur.com/kappa.png"},
        ),
        (
            (":wave:", "https://example.com/wave.gif", "url"),
            {},
            {"name": ":wave:", "image": "https://example.com/wave.gif"},
        ),
    ],
    "remove_emote": [(("Kappa",), {}, {"name": "Kappa"})],
    "add_filter": [
        (_FILTER, {}, {**_FILTER_DATA, "filterlinks": False, "active": True}),
        (
            _FILTER,
            {"filterlinks": True, "active": False},
            {**_FILTER_DATA, "filterlinks": True, "active": False},
        ),
        (
            ("strip", "x+", "", ""),
            {},
            {
                "name": "strip",
                "source": "x+",
                "flags": "",
                "replace": "",
                "filterlinks": False,
                "active": True,
            },
        ),
    ],
    "update_filter": [
        ((*_FILTER, True, True), {}, {**_FILTER_DATA, "filterlinks": True, "active": True}),
    ],
    "remove_filter": [(("badword",), {}, {"name": "badword"})],
    "new_poll": [
        (
            ("Favourite colour?", ["Red", "Blue"]),
            {},
            {
                "title": "Favourite colour?",
                "options": ["Red", "Blue"],
                "obscured": False,
                "timeout": 0,
            },
        ),
        (
            ("Next?", ("A", "B", "C"), True, 30),
            {},
            {"title": "Next?", "options": ["A", "B", "C"], "obscured": True, "timeout": 30},
        ),
        (
            ("Quick", ["yes"]),
            {"timeout": 12.5},
            {"title": "Quick", "options": ["yes"], "obscured": False, "timeout": 12.5},
        ),
    ],
    "vote": [((0,), {}, {"option": 0}), ((2,), {}, {"option": 2})],
    "close_poll": [((), {}, {})],
    "set_channel_rank": [
        (("alice", 2), {}, {"username": "alice", "rank": 2}),
        (("bob", 1), {}, {"username": "bob", "rank": 1}),
    ],
    "request_channel_ranks": [((), {}, {})],
    "request_banlist": [((), {}, {})],
    "unban": [((12345, "troll"), {}, {"ban_id": 12345, "name": "troll"})],
    "read_chan_log": [((), {}, {"count": 100}), ((50,), {}, {"count": 50})],
    "search_library": [
        (("funny video",), {}, {"query": "funny video", "source": "library"}),
        (("cats",), {"source": "yt"}, {"query": "cats", "source": "yt"}),
    ],
    "delete_from_library": [(("yt:abc123",), {}, {"media_id": "yt:abc123"})],
}


def iter_samples() -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]]:
    """Every sample as ``(method, args, kwargs, expected_data)``."""
    for method, samples in SAMPLES.items():
        for args, kwargs, expected in samples:
            yield method, args, kwargs, expected
