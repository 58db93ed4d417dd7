"""Request/reply with the bridge (PROTOCOL.md section 3) against FakeBridge on a real
nats-server: every query, the bridge's quirks, the bot rank and the safe_ methods."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from kryten_sync import (
    COMMANDS,
    KrytenClient,
    KrytenTimeoutError,
    KrytenValidationError,
    Message,
    NoRespondersError,
    RawEvent,
)
from kryten_sync.bridge import BridgeError
from kryten_sync.testing import FakeBridge
from tests._nats import NatsServer
from tests.command_samples import SAMPLES

SHORT = 0.3  # seconds to wait where no answer is expected
USERS = [
    {"name": "alice", "rank": 3, "profile": {"image": "a.png", "text": "hi"}, "meta": {}},
    {"name": "Bob", "rank": 1, "meta": {}},
]


def make_client(url: str, *channels: str, **settings: Any) -> KrytenClient:
    config: dict[str, Any] = {
        "nats": {"servers": [url]},
        "channels": [{"domain": "cytu.be", "channel": c} for c in channels or ("lounge",)],
        "chat_min_delay": 0,
    }
    config.update(settings)
    return KrytenClient(config)


@pytest.fixture
def fake(shared_server: NatsServer) -> Iterator[FakeBridge]:
    with FakeBridge(shared_server.url, domain="cytu.be", channel="lounge") as bridge:
        yield bridge


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with make_client(shared_server.url) as c:
        yield c


def no_command_sent(client: KrytenClient, fake: FakeBridge) -> bool:
    client.flush()
    time.sleep(0.1)
    return fake.commands == []


# --- system queries ---------------------------------------------------------------------


def test_system_queries(client: KrytenClient, fake: FakeBridge) -> None:
    fake.version = "1.12.9"
    fake.services = {"services": [{"name": "llm"}], "count": 1, "active_count": 1}
    fake.stats = {"uptime_seconds": 12.5, "events": {"published": 3}}
    assert client.get_version() == "1.12.9"
    assert client.get_channels() == [{"domain": "cytu.be", "channel": "lounge", "connected": True}]
    assert client.get_services() == fake.services
    assert client.get_stats() == fake.stats  # answered twice: the first is taken
    assert client.get_config()["cytube"]["channel"] == "lounge"
    pong = client.ping()
    assert pong["pong"] is True and pong["version"] == "1.12.9"
    assert "cytube_connected" not in pong  # the second answer's shape


def test_request_body_and_meta(shared_server: NatsServer, fake: FakeBridge) -> None:
    with make_client(shared_server.url, service={"name": "my-bot"}) as client:
        before = datetime.now().astimezone()
        client.get_version()
    request = fake.requests[-1]
    assert set(request) == {"service", "command", "args", "meta"}
    assert request["service"] == "robot" and request["command"] == "system.version"
    assert request["args"] == {}
    meta = request["meta"]
    assert set(meta) == {"source", "timestamp", "domain", "channel", "request_id"}
    assert (meta["source"], meta["domain"], meta["channel"]) == ("my-bot", "cytu.be", "lounge")
    assert uuid.UUID(meta["request_id"]).version == 4
    stamp = datetime.fromisoformat(meta["timestamp"])
    assert stamp.utcoffset() == timedelta(0) and stamp >= before - timedelta(seconds=1)


def test_meta_names_the_configured_channel_exactly(
    shared_server: NatsServer, fake: FakeBridge
) -> None:
    with make_client(shared_server.url, "other", "LOUNGE") as client:
        # A configured channel is sent as configured, even when the caller spells it
        # differently; the fake (like the bridge) compares meta exactly: "LOUNGE" != "lounge".
        with pytest.raises(KrytenTimeoutError):
            client.get_userlist("lounge", timeout=SHORT)
        assert fake.requests[-1]["meta"]["channel"] == "LOUNGE"
        # System queries name the first configured channel: no bridge for cytu.be/other.
        with pytest.raises(KrytenTimeoutError, match=r"cytu\.be/other"):
            client.get_version(timeout=SHORT)


def test_channel_picks_the_bridge(shared_server: NatsServer, fake: FakeBridge) -> None:
    with make_client(shared_server.url, "other") as client:
        with pytest.raises(KrytenTimeoutError):
            client.get_version(timeout=SHORT)
        assert client.get_version(channel="lounge") == fake.version  # unconfigured: as given
        with pytest.raises(KrytenTimeoutError, match=r"example\.com/lounge"):
            client.get_version(channel="lounge", domain="example.com", timeout=SHORT)


def test_other_channel_is_ignored(shared_server: NatsServer, fake: FakeBridge) -> None:
    with make_client(shared_server.url, "other") as client:
        t0 = time.monotonic()
        with pytest.raises(KrytenTimeoutError) as caught:
            client.get_userlist("other", timeout=SHORT)
        assert time.monotonic() - t0 >= SHORT
    assert str(caught.value) == (
        "bridge command 'state.userlist' got no reply within 0.3 s "
        "(unknown command, or no bridge for cytu.be/other)"
    )


def test_unknown_command_times_out_naming_it(client: KrytenClient, fake: FakeBridge) -> None:
    fake.ignore.add("state.motd")  # an older bridge without state.motd
    with pytest.raises(KrytenTimeoutError, match=r"'state\.motd' got no reply within 0\.3 s"):
        client.get_motd("lounge", timeout=SHORT)


def test_no_bridge_at_all(client: KrytenClient, fake: FakeBridge) -> None:
    fake.stop()
    with pytest.raises(NoRespondersError, match=r"'system\.ping'.*kryten\.robot\.command"):
        client.ping()
    with pytest.raises(NoRespondersError, match=r"kryten\.user_level\.cytu\.be\.lounge"):
        client.get_bot_rank("lounge")


def test_outer_failure_raises(client: KrytenClient, fake: FakeBridge) -> None:
    fake.errors["system.version"] = "ApplicationState not available"
    with pytest.raises(BridgeError, match="ApplicationState not available") as caught:
        client.get_version()
    assert caught.value.command == "system.version"
    assert caught.value.reply["success"] is False


def test_failure_inside_data_raises(client: KrytenClient, fake: FakeBridge) -> None:
    fake.data_errors["state.userlist"] = "state not ready"
    with pytest.raises(BridgeError, match="state not ready"):
        client.get_userlist("lounge")


def test_double_reply_takes_the_first(client: KrytenClient, fake: FakeBridge) -> None:
    fake.double_reply = True  # the second reply is a failure
    fake.userlist = USERS
    assert client.get_version() == fake.version
    assert client.get_userlist("lounge") == USERS
    assert client.ping()["pong"] is True


def test_bad_timeout_is_refused(client: KrytenClient) -> None:
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(KrytenValidationError, match="timeout"):
            client.get_version(timeout=bad)


# --- channel state -----------------------------------------------------------------------


def test_state_queries(client: KrytenClient, fake: FakeBridge) -> None:
    fake.userlist = USERS
    fake.playlist = [{"uid": 41, "temp": False, "queueby": "alice", "media": {"id": "x"}}]
    fake.emotes = [{"name": "Kappa", "image": "k.png", "source": "x"}]
    fake.motd = "<h1>hi</h1>"
    assert client.get_userlist("lounge") == USERS
    assert client.get_playlist("Lounge") == fake.playlist
    assert client.get_emotes("lounge") == fake.emotes
    assert client.get_motd("lounge") == "<h1>hi</h1>"
    assert client.get_all_profiles("lounge") == {
        "alice": {"image": "a.png", "text": "hi"},
        "Bob": {},
    }


def test_get_user_sends_username_at_top_level(client: KrytenClient, fake: FakeBridge) -> None:
    fake.userlist = USERS
    fake.profiles = {"Bob": {"image": "b.png", "text": "bob"}}
    assert client.get_user("lounge", "alice") == USERS[0]
    request = fake.requests[-1]
    assert request["command"] == "state.user"
    assert request["username"] == "alice" and request["args"] == {}
    # data.profile fills in a user object without one
    assert client.get_user("lounge", "Bob") == {**USERS[1], "profile": fake.profiles["Bob"]}
    assert client.get_user("lounge", "nobody") is None
    with pytest.raises(KrytenValidationError):
        client.get_user("lounge", "")


# --- actions the bridge confirms ---------------------------------------------------------


def test_add_media_and_wait(client: KrytenClient, fake: FakeBridge) -> None:
    first = client.add_media_and_wait("lounge", "yt", "dQw4w9WgXcQ")
    second = client.add_media_and_wait("lounge", "yt", "abc", "next", True)
    assert isinstance(first, int) and second == first + 1
    assert fake.requests[-1]["args"] == {"type": "yt", "id": "abc", "pos": "next", "temp": True}
    fake.data_errors["addvideo"] = "This item is already on the playlist"
    with pytest.raises(BridgeError, match="already on the playlist"):
        client.add_media_and_wait("lounge", "yt", "abc")
    count = len(fake.requests)
    with pytest.raises(KrytenValidationError):
        client.add_media_and_wait("lounge", "yt", "abc", "middle")  # type: ignore[arg-type]
    assert len(fake.requests) == count  # refused before sending


def test_cytube_round_trips_return_the_envelope(client: KrytenClient, fake: FakeBridge) -> None:
    # kryten-py's shape: the reply's data, ``{key: envelope}``; the answer is the payload.
    fake.banlist = [{"id": 7, "name": "troll", "reason": "spam", "bannedby": "alice"}]
    fake.channel_ranks = [{"name": "alice", "rank": 3}]
    fake.chan_log = {"success": True, "data": "log text"}
    fake.search_results = {"source": "yt", "results": [{"id": "abc", "type": "yt"}]}
    with client.events("banlist") as banlist_events:
        banlist = client.get_banlist("lounge")
        assert list(banlist) == ["banlist"]
        assert banlist["banlist"]["payload"] == fake.banlist
        assert banlist["banlist"]["event_name"] == "banlist"
        event = banlist_events.get(5)  # also published as an event
        assert isinstance(event, RawEvent) and event.payload == fake.banlist
    assert client.get_channel_ranks("lounge")["ranks"]["payload"] == fake.channel_ranks
    assert client.get_chan_log("lounge", 20)["log"]["payload"] == fake.chan_log
    assert fake.requests[-1]["args"] == {"count": 20}
    results = client.get_library_search("lounge", "cats", "yt")
    assert results["results"]["payload"] == fake.search_results
    assert fake.requests[-1]["args"] == {"query": "cats", "source": "yt"}
    with pytest.raises(KrytenValidationError):
        client.get_chan_log("lounge", 0)


# --- other services and the bot rank ---------------------------------------------------------


def test_service_request_to_another_service(client: KrytenClient) -> None:
    seen: list[Any] = []

    def economy(msg: Message) -> None:
        seen.append(msg.json())
        msg.respond({"service": "economy", "success": True, "data": {"balance": 42}})

    client.subscribe("kryten.economy.command", economy)
    reply = client.service_request("economy", "balance.get", {"username": "alice"})
    assert reply == {"service": "economy", "success": True, "data": {"balance": 42}}
    assert seen == [{"service": "economy", "command": "balance.get", "args": {"username": "alice"}}]
    with pytest.raises(NoRespondersError, match=r"kryten\.nobody\.command"):
        client.service_request("nobody", "x")
    client.subscribe("kryten.mute.command", lambda msg: None)
    with pytest.raises(KrytenTimeoutError, match=r"kryten\.mute\.command within 0\.3 s"):
        client.service_request("mute", "x", timeout=SHORT)


def test_bot_rank(shared_server: NatsServer, client: KrytenClient, fake: FakeBridge) -> None:
    fake.rank = 1.5
    assert client.get_bot_rank("lounge") == 1.5
    assert client.get_bot_rank("LOUNGE") == 1.5  # the configured string is sent
    fake.rank = 2
    rank = client.get_bot_rank("lounge")
    assert rank == 2.0 and isinstance(rank, float)
    fake.rank = None
    with pytest.raises(KrytenTimeoutError, match=r"kryten\.user_level\.cytu\.be\.lounge"):
        client.get_bot_rank("lounge", timeout=SHORT)
    # An unconfigured channel: the first configured domain, the channel as given.
    with FakeBridge(shared_server.url, domain="cytu.be", channel="elsewhere") as other:
        other.rank = 4
        assert client.get_bot_rank("elsewhere") == 4.0


def test_bot_rank_refused(client: KrytenClient) -> None:
    client.subscribe(
        "kryten.user_level.cytu.be.odd",
        lambda msg: msg.respond({"success": False, "error": "not logged in"}),
    )
    with pytest.raises(BridgeError, match="not logged in"):
        client.get_bot_rank("odd")
    result = client.safe_clear_playlist("odd")
    assert result == {
        "success": False,
        "error": "Rank check failed: kryten.user_level.cytu.be.odd answered without a rank: "
        "not logged in",
        "rank": 0,
    }


# --- safe_ methods ----------------------------------------------------------------------

SAFE = sorted(f"safe_{m}" for m, spec in COMMANDS.items() if spec.min_rank >= 2)


def test_safe_methods_are_those_of_rank_two_or_more() -> None:
    present = sorted(name for name in dir(KrytenClient) if name.startswith("safe_"))
    assert present == SAFE
    for name in (
        "safe_assign_leader",
        "safe_set_motd",
        "safe_set_channel_rank",
        "safe_update_emote",
        "safe_add_filter",
        "safe_set_options",
    ):
        assert name in SAFE


@pytest.mark.parametrize("name", SAFE)
def test_safe_signature_mirrors_the_command(name: str) -> None:
    command = inspect.signature(getattr(KrytenClient, name.removeprefix("safe_")))
    safe = inspect.signature(getattr(KrytenClient, name))
    params = list(command.parameters.values())
    if name == "safe_unban":  # the name is looked up when not given, as for unban
        assert params[3].name == "name" and params[3].default is None
    expected = [
        *params,
        inspect.Parameter(
            "check_rank", inspect.Parameter.KEYWORD_ONLY, default=True, annotation="bool"
        ),
        inspect.Parameter(
            "timeout", inspect.Parameter.KEYWORD_ONLY, default=2.0, annotation="float"
        ),
    ]
    assert list(safe.parameters.values()) == expected


@pytest.mark.parametrize("name", SAFE)
def test_safe_with_enough_rank_sends_the_command(
    client: KrytenClient, fake: FakeBridge, name: str
) -> None:
    method = name.removeprefix("safe_")
    spec = COMMANDS[method]
    fake.rank = spec.min_rank
    args, kwargs, expected = SAMPLES[method][-1]
    result = getattr(client, name)("lounge", *args, **kwargs)
    assert result == {"success": True, "message_id": result["message_id"]}
    cmd = fake.wait_for_command(spec.action)
    assert cmd.correlation_id == result["message_id"]
    assert cmd.data == expected and cmd.problems == []


@pytest.mark.parametrize(
    ("rank", "call", "error"),
    [
        (1, lambda c: c.safe_set_motd("lounge", "x"), "Insufficient rank: need 3+, have 1"),
        (
            1.5,
            lambda c: c.safe_assign_leader("lounge", "bob"),
            "Insufficient rank: need 2+, have 1.5",
        ),
        (
            2,
            lambda c: c.safe_set_channel_rank("lounge", "bob", 2),
            "Insufficient rank: need 3+, have 2",
        ),
    ],
)
def test_safe_with_too_low_a_rank(
    client: KrytenClient, fake: FakeBridge, rank: float, call: Any, error: str
) -> None:
    fake.rank = rank
    result = call(client)
    assert result == {"success": False, "error": error, "rank": rank}
    assert type(result["rank"]) is type(rank)  # as the bridge sent it
    assert no_command_sent(client, fake)


def test_safe_when_the_rank_is_unknown(client: KrytenClient, fake: FakeBridge) -> None:
    fake.rank = None
    assert client.safe_set_motd("lounge", "x", timeout=SHORT) == {
        "success": False,
        "error": "Rank check failed: no bridge answered kryten.user_level.cytu.be.lounge "
        "within 0.3 s",
        "rank": 0,
    }
    fake.stop()
    result = client.safe_update_emote("lounge", "Kappa", "https://i.imgur.com/k.png")
    assert result["error"] == (
        "Rank check failed: no bridge is subscribed to kryten.user_level.cytu.be.lounge"
    )


def test_safe_still_raises_for_bad_arguments(client: KrytenClient, fake: FakeBridge) -> None:
    fake.rank = None  # would take `timeout` to find out: the arguments are checked first
    t0 = time.monotonic()
    with pytest.raises(KrytenValidationError, match="rank"):
        client.safe_set_channel_rank("lounge", "bob", 9)
    with pytest.raises(KrytenValidationError, match="channel"):
        client.safe_set_motd("...", "x")
    with pytest.raises(KrytenValidationError, match="options"):
        client.safe_set_options("lounge", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 0.2
    assert no_command_sent(client, fake)
