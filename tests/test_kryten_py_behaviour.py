"""kryten-py's semantics in sync form, against a real nats-server and FakeBridge: the
methods kryten_sync adds for it, the results it shapes like kryten-py's, and the two
behaviour fixes (run() after stop(), safe_* when the send fails)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

import kryten_sync
from kryten_sync import KrytenClient
from kryten_sync.errors import (
    BridgeError,
    HandlerError,
    KrytenError,
    KrytenTimeoutError,
    KrytenValidationError,
    NoRespondersError,
)
from kryten_sync.raw import Message
from kryten_sync.stats import ChannelInfo, ChannelStatus
from kryten_sync.testing import FakeBridge
from tests._helpers import make_config, run_in_thread, wait_until
from tests._nats import NatsServer

SHORT = 0.3


@pytest.fixture
def fake(shared_server: NatsServer) -> Iterator[FakeBridge]:
    with FakeBridge(shared_server.url, domain="cytu.be", channel="lounge") as bridge:
        yield bridge


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with KrytenClient(make_config(shared_server.url)) as c:
        yield c


def raw_messages(client: KrytenClient, subject: str) -> list[Message]:
    seen: list[Message] = []
    client.subscribe(subject, seen.append)
    client.flush()
    return seen


# --- run() and stop() --------------------------------------------------------------------


def run_until_stopped(client: KrytenClient, main: Callable[[], None], why: str) -> None:
    """Run ``main`` (which calls run()) on a thread: it must block until stop()."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: (main(), done.set()), daemon=True)
    thread.start()
    assert not done.wait(0.5), why
    client.stop()
    assert done.wait(5)
    thread.join(5)


def test_run_after_stop_runs_until_the_next_stop(client: KrytenClient) -> None:
    for _ in range(2):  # the second run() used to return at once
        run_until_stopped(client, client.run, "run() returned without a stop()")
    assert client.is_connected  # stop() ends run(), not the connection


def test_stop_before_run_on_the_same_thread_is_not_carried_over(client: KrytenClient) -> None:
    def main() -> None:
        client.stop()  # nothing is running: a no-op, as in kryten-py
        client.run()

    run_until_stopped(client, main, "a stop() made before run() ended it")


def test_stop_from_a_handler_just_before_run_ends_it(
    client: KrytenClient, fake: FakeBridge
) -> None:
    # Handlers run concurrently with the thread that calls run(): a handler's stop()
    # that lands between connect() and run() is kept (kryten-py cannot see this case:
    # its handlers run on the loop, which handles no event between the two calls).
    stopped = threading.Event()

    @client.on("chatMsg")
    def on_chat(event: Any) -> None:
        client.stop()
        stopped.set()

    fake.emit("chatMsg", {"username": "alice", "msg": "bye", "meta": {}})
    assert stopped.wait(5)
    _, error = run_in_thread(client.run, 5)
    assert error is None


def test_run_returns_when_disconnected(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    threading.Timer(0.3, client.disconnect).start()
    _, error = run_in_thread(client.run, 10)
    assert error is None and not client.is_connected


# --- safe_* --------------------------------------------------------------------------------


def test_safe_send_failure_comes_back_as_a_result(client: KrytenClient, fake: FakeBridge) -> None:
    # Bigger than the server's max_payload: the publish itself fails, after the rank check.
    options = {"css": "x" * (2 * 1024 * 1024)}
    result = client.safe_set_options("lounge", options)
    assert result["success"] is False and "max_payload" in result["error"]
    assert set(result) == {"success", "error"}
    assert client.safe_set_options("lounge", options, check_rank=False)["success"] is False


def test_safe_without_rank_check_sends_at_once(client: KrytenClient, fake: FakeBridge) -> None:
    fake.rank = None  # no answer to the rank query: it is not asked
    t0 = time.monotonic()
    result = client.safe_set_motd("lounge", "<b>hi</b>", check_rank=False)
    assert time.monotonic() - t0 < 1.0
    assert result == {"success": True, "message_id": result["message_id"]}
    assert fake.wait_for_command("setMotd").correlation_id == result["message_id"]


def test_safe_when_not_connected_is_a_result(shared_server: NatsServer) -> None:
    client = KrytenClient(make_config(shared_server.url))
    result = client.safe_assign_leader("lounge", "bob")
    assert result["success"] is False and result["rank"] == 0
    assert result["error"].startswith("Rank check failed: ")


# --- add_media, unban ------------------------------------------------------------------------


def test_add_media_returns_the_reply_with_the_uid(client: KrytenClient, fake: FakeBridge) -> None:
    result = client.add_media("lounge", "yt", "dQw4w9WgXcQ")
    assert result["success"] is True and isinstance(result["uid"], int)
    assert result["data"]["uid"] == result["uid"]  # the bridge's own reply is kept
    request = fake.requests[-1]
    assert request["command"] == "addvideo"
    assert request["args"] == {"type": "yt", "id": "dQw4w9WgXcQ", "pos": "end", "temp": True}
    client.add_media("lounge", "yt", "abc", position="next", temp=False)
    assert fake.requests[-1]["args"]["pos"] == "next" and fake.requests[-1]["args"]["temp"] is False


def test_add_media_refused_or_unanswered(client: KrytenClient, fake: FakeBridge) -> None:
    fake.data_errors["addvideo"] = "playlist is locked"
    result = client.add_media("lounge", "yt", "abc")
    assert result["success"] is False and result["uid"] is None
    assert result["error"] == "playlist is locked"
    fake.ignore.add("addvideo")
    with pytest.raises(TimeoutError):
        client.add_media("lounge", "yt", "abc", timeout=SHORT)


def test_queue_media_is_the_form_that_does_not_wait(client: KrytenClient, fake: FakeBridge) -> None:
    fake.ignore.add("addvideo")
    correlation_id = client.queue_media("lounge", "yt", "abc")
    command = fake.wait_for_command("queue")
    assert command.correlation_id == correlation_id and command.problems == []
    assert command.data == {"type": "yt", "id": "abc", "pos": "end", "temp": True}


def test_unban_looks_the_name_up_in_the_banlist(client: KrytenClient, fake: FakeBridge) -> None:
    fake.banlist = [
        {"id": 7, "name": "troll", "reason": "spam", "bannedby": "alice"},
        {"id": 9, "name": "other", "reason": "", "bannedby": "alice"},
    ]
    correlation_id = client.unban("lounge", 9)
    command = fake.wait_for_command("unban")
    assert command.correlation_id == correlation_id
    assert command.data == {"ban_id": 9, "name": "other"} and command.problems == []
    with pytest.raises(KrytenValidationError, match=r"no ban with id 8 .*\(2 bans\)"):
        client.unban("lounge", 8)
    client.unban("lounge", 8, "given")  # with a name: no lookup
    assert fake.wait_for_command("unban").data == {"ban_id": 8, "name": "given"}
    assert client.safe_unban("lounge", 7)["success"] is True
    assert fake.wait_for_command("unban").data == {"ban_id": 7, "name": "troll"}


# --- other services, raw requests ---------------------------------------------------------------


def test_send_command_publishes_as_kryten_py(client: KrytenClient) -> None:
    seen = raw_messages(client, "kryten.llm.command")
    request_id = client.send_command("llm", "chat", {"prompt": "hi"}, "cytu.be", "Lounge")
    other_id = client.send_command("llm", "ping", 42)
    wait_until(lambda: len(seen) == 2, 5, "two commands")
    first, second = (m.json() for m in seen)
    assert seen[0].reply == ""  # fire and forget: no reply inbox
    assert list(first) == ["command", "args", "meta"]
    assert first["command"] == "chat" and first["args"] == {"prompt": "hi"}
    meta = first["meta"]
    assert meta["request_id"] == request_id and meta["source"] == "kryten-sync"
    assert (meta["domain"], meta["channel"]) == ("cytu.be", "lounge")  # as configured
    assert datetime.fromisoformat(meta["timestamp"]).utcoffset() is not None
    assert second["args"] == {"value": 42} and second["meta"]["request_id"] == other_id
    assert client.health().commands_sent >= 2


def test_request_reply_round_trip(client: KrytenClient) -> None:
    calls: list[tuple[dict[str, Any], str]] = []

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        calls.append((request, threading.current_thread().name))
        if request.get("boom"):
            raise RuntimeError("handler bug")
        return {"success": True, "data": {"balance": 42, "user": request.get("username")}}

    sub = client.subscribe_request_reply("kryten.economy.command", handle)
    reply = client.economy_request("Q_A", "balance.get", {"username": "alice"})
    assert reply == {"success": True, "data": {"balance": 42, "user": "alice"}}
    assert calls[0][0] == {"command": "balance.get", "channel": "Q_A", "username": "alice"}
    assert calls[0][1].startswith("kryten-sync-")  # a worker thread, not the loop
    assert client.nats_request("kryten.economy.command", {"boom": True}) == {
        "error": "Internal error"
    }
    assert client.request("kryten.economy.command", b"not json") == {"error": "Invalid JSON"}
    client.unsubscribe(sub)
    with pytest.raises(NoRespondersError):
        client.nats_request("kryten.economy.command", {}, SHORT)
    client.unsubscribe(sub)  # again: logged, not raised


def test_nats_request_timeout_is_a_timeout_error(client: KrytenClient) -> None:
    client.subscribe("kryten.silent.command", lambda msg: None)
    with pytest.raises(TimeoutError):
        client.nats_request("kryten.silent.command", {"x": 1}, SHORT)


def test_subscribe_request_reply_refuses_an_async_handler(client: KrytenClient) -> None:
    async def handler(request: dict[str, Any]) -> dict[str, Any]:
        return request

    with pytest.raises(TypeError, match="async"):
        client.subscribe_request_reply("kryten.x.command", handler)


# --- queries kryten_sync adds -------------------------------------------------------------------


def test_user_level_and_profile_never_raise(
    shared_server: NatsServer, client: KrytenClient, fake: FakeBridge
) -> None:
    fake.rank = 2
    assert client.get_user_level("lounge") == {
        "success": True,
        "rank": 2,
        "username": "kryten-bot",
    }
    fake.rank = None
    result = client.get_user_level("lounge", timeout=SHORT)
    assert result["success"] is False and "within 0.3 s" in result["error"]
    fake.profiles = {"alice": {"image": "a.png", "text": "hi"}}
    assert client.get_user_profile("lounge", "alice") == {"image": "a.png", "text": "hi"}
    assert client.get_user_profile("lounge", "nobody") is None
    fake.errors["state.user"] = "state not ready"
    assert client.get_user_profile("lounge", "alice") is None
    fake.stop()
    assert client.get_user_level("lounge")["success"] is False


def test_state_options_permissions_reload_and_shutdown(
    client: KrytenClient, fake: FakeBridge
) -> None:
    fake.options = {"allow_voteskip": True, "voteskip_ratio": 0.5}
    fake.permissions = {"playlistadd": 1.5, "ban": 2}
    assert client.get_state_channel_options("lounge") == fake.options
    assert client.get_state_channel_permissions("lounge", timeout=2) == fake.permissions
    assert client.reload_config()["message"] == "Configuration reloaded"
    assert "config_path" not in fake.requests[-1]
    client.reload_config("/etc/kryten.json")
    assert fake.requests[-1]["config_path"] == "/etc/kryten.json"  # at the top level
    result = client.shutdown(30, "maintenance")
    assert result["delay_seconds"] == 30 and result["reason"] == "maintenance"
    assert (fake.requests[-1]["delay_seconds"], fake.requests[-1]["reason"]) == (
        30,
        "maintenance",
    )
    for bad in (-1, 301, 1.5, True, "10"):
        with pytest.raises(ValueError, match="delay_seconds"):
            client.shutdown(bad)  # type: ignore[arg-type]


def test_system_queries_take_a_positional_timeout(client: KrytenClient, fake: FakeBridge) -> None:
    assert client.ping(2.0)["pong"] is True
    assert client.get_version(5.0) == fake.version
    assert client.get_channels(5.0)[0]["channel"] == "lounge"
    assert isinstance(client.get_stats(5.0), dict)
    fake.ignore.add("system.version")
    t0 = time.monotonic()
    with pytest.raises(KrytenTimeoutError):
        client.get_version(SHORT)
    assert time.monotonic() - t0 < 2


def test_bridge_failures_are_value_errors(client: KrytenClient, fake: FakeBridge) -> None:
    fake.errors["system.version"] = "ApplicationState not available"
    with pytest.raises(ValueError, match="ApplicationState"):  # as kryten-py raises
        client.get_version()
    assert issubclass(BridgeError, ValueError) and issubclass(BridgeError, KrytenError)
    assert issubclass(HandlerError, KrytenError)
    for name in ("HandlerError", "ChannelInfo", "BridgeError", "PublishError"):  # kryten-py's
        assert name in kryten_sync.__all__


# --- emotes ------------------------------------------------------------------------------------


def test_emotes_import_export_and_set(client: KrytenClient, fake: FakeBridge) -> None:
    client.get_or_create_kv_store("kryten_lounge_emotes")
    current = [
        {"name": "#keep", "image": "https://e/keep.png"},
        {"name": "#drop", "image": "https://e/drop.png"},
    ]
    client.kv_put("kryten_lounge_emotes", "list", current)
    exported = client.export_emotes("lounge")
    assert [e["name"] for e in exported] == ["#keep", "#drop"]

    ids = client.import_emotes(
        "lounge", [{"name": "#a", "image": "https://e/a.png"}, {"name": "#b", "image": "x"}]
    )
    assert [fake.wait_for_command("updateEmote").correlation_id for _ in ids] == ids

    wanted = [{"name": "#keep", "image": "https://e/keep2.png"}, {"name": "#new", "image": "n"}]
    last = client.set_emotes("lounge", wanted)
    removed = fake.wait_for_command("removeEmote")
    assert removed.data == {"name": "#drop"} and removed.problems == []
    updates = [fake.wait_for_command("updateEmote") for _ in wanted]
    assert [u.data for u in updates] == [
        {"name": "#keep", "image": "https://e/keep2.png"},
        {"name": "#new", "image": "n"},
    ]
    assert updates[-1].correlation_id == last
    with pytest.raises(KrytenValidationError, match="'name' and 'image'"):
        client.set_emotes("lounge", [{"name": "#x"}])


# --- handlers, health, channels -----------------------------------------------------------------


def test_on_event_name_keyword_and_health_fields(client: KrytenClient, fake: FakeBridge) -> None:
    seen: list[Any] = []
    client.on(event_name="chatMsg", channel="lounge")(seen.append)
    client.on("usercount", handler=seen.append)
    before = client.health()
    assert before.handlers_registered == 2 and before.last_event_time is None
    with client.events("chatMsg") as stream:  # a stream is not a registration
        assert client.health().handlers_registered == 2
        fake.emit("chatMsg", {"username": "alice", "msg": "hi", "meta": {}})
        stream.get(5)
    fake.emit("usercount", 5)
    wait_until(lambda: len(seen) == 2, 5, "two events")
    assert seen[1].payload == 5 == seen[1].count  # kryten-py's name of the payload
    health = client.health()
    assert health.avg_event_latency_ms > 0
    assert isinstance(health.last_event_time, datetime) and health.last_event_time.tzinfo
    dump = health.model_dump()
    assert list(dump)[:10] == [
        "connected",
        "state",
        "uptime_seconds",
        "channels",
        "events_received",
        "commands_sent",
        "errors",
        "avg_event_latency_ms",
        "last_event_time",
        "handlers_registered",
    ]
    assert dump["channels"] == ["cytu.be/lounge"] and type(dump["channels"][0]) is str
    assert ", ".join(health.channels) == "cytu.be/lounge"
    assert "cytu.be/lounge" in health.channels
    assert health.channels[0].received == 2
    json.dumps(health.to_dict())


def test_channels_are_kryten_py_channel_infos(
    shared_server: NatsServer, client: KrytenClient
) -> None:
    (info,) = client.channels
    assert isinstance(info, ChannelInfo) and ChannelInfo is ChannelStatus
    assert (info.domain, info.channel, info.subscribed, info.events_received) == (
        "cytu.be",
        "lounge",
        True,
        0,
    )
    assert info.model_dump() == {
        "domain": "cytu.be",
        "channel": "lounge",
        "subscribed": True,
        "events_received": 0,
        "token": "lounge",
        "received": 0,
        "malformed": 0,
        "pending": 0,
        "dropped": 0,
        "redelivered": 0,
        "skipped": 0,
        "duplicates": 0,
    }
    made = ChannelInfo(domain="d", channel="c", subscribed=False, events_received=3)
    assert made.received == 3 and made == "d/c"
    assert made != ChannelInfo("d", "c", received=4) and made == ChannelInfo("d", "c", received=3)
    with pytest.raises(AttributeError):
        made.received = 5  # type: ignore[misc]
    offline = KrytenClient(make_config(shared_server.url))
    assert offline.channels[0].subscribed is False


# --- key-value and state, as kryten-py code calls them -----------------------------------------


def test_kv_and_state_calls_written_for_kryten_py(client: KrytenClient) -> None:
    client.get_or_create_kv_bucket("compat_kv", "kryten-py style", 1024 * 1024)
    client.kv_put(bucket_name="compat_kv", key="config", value={"enabled": True}, as_json=True)
    client.kv_put("compat_kv", "count", 41)
    assert client.kv_get("compat_kv", "config", None, True) == {"enabled": True}
    assert client.kv_get(bucket_name="compat_kv", key="count", parse_json=True) == 41
    assert client.kv_get("compat_kv", "missing", "dflt") == "dflt"
    assert client.kv_get_all("compat_kv", True) == {"config": {"enabled": True}, "count": 41}
    assert client.kv_keys(bucket_name="compat_kv") == ["config", "count"]
    client.kv_delete(bucket_name="compat_kv", key="count")
    assert client.get_kv_bucket("compat_kv").get("count") is None

    client.get_or_create_kv_store("kryten_lounge_playlist")
    items = [
        {
            "uid": 5,
            "temp": True,
            "queueby": "a",
            "media": {"id": "x", "type": "yt", "title": "X", "seconds": 3},
        },
    ]
    client.kv_put("kryten_lounge_playlist", "items", items)
    client.kv_put(
        "kryten_lounge_playlist", "current", {"id": "x", "type": "yt", "title": "X", "uid": 5}
    )
    got = client.get_state_playlist_items("lounge", domain="cytu.be")
    assert got[0]["uid"] == 5 and got[0]["media"]["title"] == "X" and got[0].uid == 5
    current = client.get_state_current_media("lounge")
    assert current is not None and current.get("title") == "X" and current["type"] == "yt"
    assert current.get("nope", "d") == "d" and "uid" in current
    assert client.get_state_current_uid("lounge", domain="cytu.be") == "5"
    assert client.get_state_motd("lounge", domain="cytu.be", timeout=2.0) == ""


# --- lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_member(shared_server: NatsServer) -> None:
    cfg = make_config(shared_server.url, service={"name": "compat", "enable_heartbeat": False})
    client = KrytenClient(cfg)
    assert client.lifecycle.is_running is False  # kryten-py: None before connect
    client.lifecycle.set_metadata("role", "dj")  # kryten-py's (key, value)
    client.lifecycle.update_metadata({"shard": 1})
    client.lifecycle.set_metadata(region="eu")
    assert client.lifecycle.metadata == {"role": "dj", "shard": 1, "region": "eu"}
    notices: list[dict[str, Any]] = []
    client.lifecycle.on_restart_notice(notices.append)
    with client:
        assert client.lifecycle.is_running and client._nats is client
        client.publish_group_restart("test", 0)
        wait_until(lambda: len(notices) == 1, 5, "the restart notice")
    assert client._nats is None and not client.lifecycle.is_running
    assert notices[0]["initiator"] == "compat"
