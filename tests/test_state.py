"""The state helpers against buckets written exactly as the bridge (kryten-robot 1.12)
writes them: ``kryten_{channel}_{kind}`` with the configured channel's case kept,
``json.dumps(value).encode()`` for items/current/users/list and raw UTF-8 for
motd/css/js (PROTOCOL.md section 5)."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from nats.js.api import KeyValueConfig

from kryten_sync import KrytenClient, KrytenValidationError, PlaylistItem
from kryten_sync.state import ChannelUser, CurrentMedia, Emote
from tests import bridge_format as bf
from tests._nats import NatsServer

_ids = itertools.count(1)

# The bridge's bucket settings (kind -> max_value_size).
_BRIDGE_BUCKETS = {
    "playlist": 10 * 1024 * 1024,
    "userlist": 1024 * 1024,
    "emotes": 1024 * 1024,
    "state": 1024 * 1024,
}

USERS: list[dict[str, Any]] = [
    {
        "name": "alice",
        "rank": 3,
        "profile": {"image": "", "text": ""},
        "meta": {"afk": False, "muted": False, "smuted": False, "aliases": [], "ip": "1.2.x.x"},
    },
    copy.deepcopy(bf.ADD_USER),
    {"name": "ghost", "rank": 0, "profile": None, "meta": {"afk": True}, "extra": [1]},
]
EMOTES: list[dict[str, Any]] = [
    {"name": "Kappa", "image": "https://i.imgur.com/kappa.png", "source": "(^|\\s)Kappa(?!\\S)"},
    {"name": "#wave", "image": "https://i.imgur.com/wave.gif"},
]
CSS = "body { background: #111; } /* café ☕ */"
JS = 'console.log("hi — there");'


def bridge_write(
    url: str, channel: str, *, create: tuple[str, ...] = tuple(_BRIDGE_BUCKETS), **values: Any
) -> None:
    """Create the channel's buckets and write ``values`` the way the bridge does.

    Keyword names: items, current, users, list (JSON), motd, css, js (raw strings).
    """
    where = {
        "items": "playlist",
        "current": "playlist",
        "users": "userlist",
        "list": "emotes",
        "motd": "state",
        "css": "state",
        "js": "state",
    }

    async def main() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            kvs = {}
            for kind in create:
                bucket = f"kryten_{channel}_{kind}"
                try:
                    kvs[kind] = await js.key_value(bucket)
                except Exception:
                    kvs[kind] = await js.create_key_value(
                        config=KeyValueConfig(
                            bucket=bucket,
                            description=f"Kryten {channel} {kind}",
                            max_value_size=_BRIDGE_BUCKETS[kind],
                        )
                    )
            for key, value in values.items():
                kind = where[key]
                data = value.encode() if kind == "state" else json.dumps(value).encode()
                await kvs[kind].put(key, data)
        finally:
            await nc.close()

    asyncio.run(main())


def new_channel(prefix: str = "chan") -> str:
    return f"{prefix}{next(_ids)}"


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    c = KrytenClient(
        {
            "nats": {"servers": [shared_server.url]},
            "channels": [
                {"domain": "cytu.be", "channel": "420Grindhouse"},
                {"domain": "cytu.be", "channel": "lounge"},
            ],
        }
    )
    c.connect()
    try:
        yield c
    finally:
        c.disconnect()


def assert_empty(client: KrytenClient, channel: str) -> None:
    assert client.get_state_playlist_items(channel) == []
    assert client.get_state_current_media(channel) is None
    assert client.get_state_current_uid(channel) is None
    assert client.get_state_userlist(channel) == []
    assert client.get_state_emotes(channel) == []
    assert client.get_state_motd(channel) == ""
    assert client.get_state_css(channel) == ""
    assert client.get_state_js(channel) == ""


def test_nothing_written_yet_reads_empty(client: KrytenClient, shared_server: NatsServer) -> None:
    channel = new_channel()
    assert_empty(client, channel)  # no buckets at all
    bridge_write(shared_server.url, channel)  # buckets, no keys
    assert_empty(client, channel)


def test_state_as_the_bridge_writes_it(client: KrytenClient, shared_server: NatsServer) -> None:
    channel = new_channel()
    current = {**bf.CHANGE_MEDIA, "uid": 41}
    bridge_write(
        shared_server.url,
        channel,
        items=bf.PLAYLIST,
        current=current,
        users=USERS,
        list=EMOTES,
        motd=bf.SET_MOTD,
        css=CSS,
        js=JS,
    )

    items = client.get_state_playlist_items(channel)
    assert all(isinstance(item, PlaylistItem) for item in items)
    assert [(i.uid, i.temp, i.queueby, i.media.id, i.media.type) for i in items] == [
        (41, False, "alice", "dQw4w9WgXcQ", "yt"),
        (42, True, "", "76979871", "vi"),
    ]
    assert items[1].media.seconds == 186.5

    media = client.get_state_current_media(channel)
    assert isinstance(media, CurrentMedia)
    assert (media.id, media.type, media.title, media.seconds, media.uid) == (
        "dQw4w9WgXcQ",
        "yt",
        "Rick Astley - Never Gonna Give You Up",
        213.0,
        41,
    )
    assert (media.current_time, media.paused) == (0.0, False)
    assert media.model_extra == {"duration": "03:33"}  # extra keys kept, not an error
    assert client.get_state_current_uid(channel) == "41"  # a str, as kryten-py

    users = client.get_state_userlist(channel)
    assert all(isinstance(u, ChannelUser) for u in users)
    assert [(u.name, u.rank) for u in users] == [("alice", 3.0), ("bob", 1.5), ("ghost", 0.0)]
    assert users[1].profile.image == "https://i.imgur.com/abc123.png"
    assert users[1].meta.aliases == ["bob", "bobby"]
    assert users[0].meta.model_extra == {"ip": "1.2.x.x"}
    assert users[2].profile.text == "" and users[2].meta.afk is True

    emotes = client.get_state_emotes(channel)
    assert emotes == [
        Emote(name="Kappa", image="https://i.imgur.com/kappa.png", source="(^|\\s)Kappa(?!\\S)"),
        Emote(name="#wave", image="https://i.imgur.com/wave.gif"),
    ]

    # Raw UTF-8 strings, returned verbatim (never JSON-decoded).
    assert client.get_state_motd(channel) == bf.SET_MOTD
    assert client.get_state_css(channel) == CSS
    assert client.get_state_js(channel) == JS
    assert client.get_state_channel_css(channel) == CSS
    bridge_write(shared_server.url, channel, motd='"quoted"')
    assert client.get_state_motd(channel) == '"quoted"'


def test_current_uid_works_around_a_stale_uid(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    channel = new_channel()
    # changeMedia switched to the Vimeo item (uid 42); the stored uid is still the last
    # setCurrent's (41), as the bridge leaves it.
    vimeo = bf.PLAYLIST[1]["media"]
    stale = {
        "id": vimeo["id"],
        "type": "vi",
        "title": vimeo["title"],
        "seconds": 186.5,
        "currentTime": 3.5,
        "paused": False,
        "uid": 41,
    }
    bridge_write(shared_server.url, channel, items=bf.PLAYLIST, current=stale)
    media = client.get_state_current_media(channel)
    assert media is not None and media.uid == 41  # as stored
    assert client.get_state_current_uid(channel) == "42"  # as it really is

    # The same media queued twice: the stored uid wins when it is one of them.
    twice = [*copy.deepcopy(bf.PLAYLIST), {**copy.deepcopy(bf.PLAYLIST[1]), "uid": 50}]
    bridge_write(shared_server.url, channel, items=twice, current={**stale, "uid": 50})
    assert client.get_state_current_uid(channel) == "50"
    bridge_write(shared_server.url, channel, current={**stale, "uid": 41})
    assert client.get_state_current_uid(channel) == "42"  # first match

    # Not in the playlist: unknown. No playlist at all: the stored uid is all there is.
    bridge_write(shared_server.url, channel, current={**stale, "id": "elsewhere"})
    assert client.get_state_current_uid(channel) is None
    other = new_channel()
    bridge_write(shared_server.url, other, current={**stale, "uid": 7})
    assert client.get_state_current_uid(other) == "7"
    bridge_write(shared_server.url, other, current={k: v for k, v in stale.items() if k != "uid"})
    assert client.get_state_current_uid(other) is None


def test_channel_with_uppercase_keeps_its_case(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bridge_write(shared_server.url, "420Grindhouse", motd="grindhouse motd", users=USERS[:1])
    # Configured as "420Grindhouse": any spelling that normalises the same finds it.
    for spelling in ("420Grindhouse", "420grindhouse", "420GRINDHOUSE"):
        assert client.get_state_motd(spelling) == "grindhouse motd"
        assert [u.name for u in client.get_state_userlist(spelling)] == ["alice"]
    assert client.get_state_motd() == "grindhouse motd"  # the first configured channel
    assert client.kv_get("kryten_420grindhouse_state", "motd") is None  # case kept

    # Not configured: used exactly as given.
    bridge_write(shared_server.url, "MixedCase", motd="mixed")
    assert client.get_state_motd("MixedCase") == "mixed"
    assert client.get_state_motd("mixedcase") == ""


def test_values_the_bridge_cannot_have_written_read_empty(
    client: KrytenClient, shared_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = new_channel()
    bad_item = {"uid": "not-a-number", "media": {}}
    bridge_write(
        shared_server.url,
        channel,
        items=[bad_item, bf.PLAYLIST[0]],
        current=["not", "dict"],
        users={"not": "a list"},
        list=[{"image": "no name"}, EMOTES[1]],
    )
    with caplog.at_level(logging.WARNING, logger="kryten_sync.state"):
        assert [i.uid for i in client.get_state_playlist_items(channel)] == [41]
        assert client.get_state_current_media(channel) is None
        assert client.get_state_userlist(channel) == []
        assert [e.name for e in client.get_state_emotes(channel)] == ["#wave"]
    assert len(caplog.records) == 4

    async def write_garbage() -> None:
        nc = await nats.connect(shared_server.url)
        kv = await nc.jetstream().key_value(f"kryten_{channel}_playlist")
        await kv.put("items", b"{not json")
        await kv.put("current", b"{}")
        await nc.close()

    asyncio.run(write_garbage())
    assert client.get_state_playlist_items(channel) == []
    assert client.get_state_current_media(channel) is None


def test_invalid_channel_is_refused(client: KrytenClient) -> None:
    for channel in ["", "   ", "my channel", "dot.ted"]:
        with pytest.raises(KrytenValidationError, match="channel"):
            client.get_state_playlist_items(channel)
