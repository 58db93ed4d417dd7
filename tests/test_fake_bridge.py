"""FakeBridge itself, over a real nats-server: what it records, what it reports as a
problem, that emit() writes the bridge's exact bytes, and how it answers requests."""

from __future__ import annotations

import asyncio
import copy
import json
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import nats
import nats.errors
import pytest

import kryten_sync.testing as testing_module
from kryten_sync import (
    ChatMessageEvent,
    KrytenClient,
    KrytenTimeoutError,
    Message,
    UserCountEvent,
    UserJoinEvent,
)
from kryten_sync.testing import FakeBridge, ReceivedCommand, check_command
from tests import bridge_format as bf
from tests._nats import NatsServer

CMD = "kryten.commands.cytube.lounge"


@pytest.fixture
def fake(shared_server: NatsServer) -> Iterator[FakeBridge]:
    with FakeBridge(shared_server.url) as bridge:
        yield bridge


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    config = {
        "nats": {"servers": [shared_server.url]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        "chat_min_delay": 0,
    }
    with KrytenClient(config) as c:
        yield c


def body(action: Any, data: Any, **extra: Any) -> bytes:
    message = {
        "action": action,
        "data": data,
        "correlation_id": "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b",
        "timestamp": "2024-05-06T07:08:09+00:00",
    }
    message.update(extra)
    return json.dumps({k: v for k, v in message.items() if v is not ...}).encode()


# --- commands ---------------------------------------------------------------------------


def test_records_commands(client: KrytenClient, fake: FakeBridge) -> None:
    chat_id = client.send_chat("lounge", "hello")
    queue_id = client.queue_media("Lounge", "yt", "abc", "next")
    chat = fake.wait_for_command()
    queued = fake.wait_for_command()
    assert chat == ReceivedCommand(
        f"{CMD}.chat", "chat", {"message": "hello"}, chat_id, chat.timestamp, [], chat.raw
    )
    assert datetime.fromisoformat(chat.timestamp).utcoffset() is not None
    assert json.loads(chat.raw)["correlation_id"] == chat_id
    assert (queued.subject, queued.action, queued.correlation_id) == (
        f"{CMD}.queue",
        "queue",
        queue_id,
    )
    assert queued.data == {
        "type": "yt",
        "id": "abc",
        "pos": "next",
        "temp": True,
    }  # queue_media: temp by default
    assert queued.problems == []
    assert fake.commands == [chat, queued]


def test_wait_for_command_by_action_and_clear(client: KrytenClient, fake: FakeBridge) -> None:
    client.send_chat("lounge", "first")
    client.vote("lounge", 1)
    assert fake.wait_for_command("vote").data == {"option": 1}
    assert fake.wait_for_command().action == "chat"  # the oldest one not yet returned
    with pytest.raises(KrytenTimeoutError, match=r"within 0\.2 s \(received: \['chat', 'vote'\]"):
        fake.wait_for_command(timeout=0.2)
    fake.clear()
    assert fake.commands == []
    client.send_chat("lounge", "again")
    assert fake.wait_for_command("chat").data == {"message": "again"}


@pytest.mark.parametrize(
    ("subject", "data", "problem"),
    [
        ("chat", body("chat", {"msg": "hi"}), "data has unexpected key 'msg'"),
        ("chat", body("chat", {"msg": "hi"}), "data is missing 'message'"),
        ("chat", body("chat", {"message": "hi", "to": "x"}), "data has unexpected key 'to'"),
        ("setmotd", body("setmotd", {"motd": ""}), "unknown action 'setmotd' (did you mean"),
        ("jump", body("jump", {"uid": 12}), "data.uid of 'jump' must be a string of digits"),
        ("kick", body("kick", ["bob"]), "data is a list, not an object"),
        ("pm", body("chat", {"message": "hi"}), "does not end in 'chat'"),
        ("chat", body("chat", {"message": "hi"}, correlation_id=...), "no 'correlation_id'"),
        ("chat", body("chat", {"message": "hi"}, domain="cytu.be"), "unexpected key 'domain'"),
        ("chat", b"not json", "body is not valid JSON"),
        ("chat", b'["chat"]', "body is a JSON list, not an object"),
    ],
)
def test_reports_problems_of_hand_made_commands(
    client: KrytenClient, fake: FakeBridge, subject: str, data: bytes, problem: str
) -> None:
    client.publish(f"{CMD}.{subject}", data)
    received = fake.wait_for_command()
    assert received.raw == data
    assert any(problem in p for p in received.problems), received.problems


def test_a_correct_hand_made_command_has_no_problems(
    client: KrytenClient, fake: FakeBridge
) -> None:
    client.publish(f"{CMD}.kick", body("kick", {"username": "bob", "reason": "spam"}))
    assert fake.wait_for_command("kick").problems == []
    assert check_command(f"{CMD}.jump", body("jump", {"uid": "12"}))[1] == []


def test_on_command_hook_can_answer_with_an_event(client: KrytenClient, fake: FakeBridge) -> None:
    def echo(cmd: ReceivedCommand) -> None:
        fake.emit("chatMsg", {"username": "kryten-bot", "msg": cmd.data["message"], "meta": {}})

    fake.on_command("chat", echo)
    with client.events("chatMsg") as stream:
        client.send_chat("lounge", "echo me")
        event = stream.get(5)
    assert isinstance(event, ChatMessageEvent)
    assert (event.username, event.message) == ("kryten-bot", "echo me")


# --- events -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_name", "payload"),
    [
        ("chatMsg", bf.CHAT_MSG),
        ("usercount", bf.USERCOUNT),
        ("setMotd", bf.SET_MOTD),
        ("playlist", bf.PLAYLIST),
        ("somethingNew", None),
    ],
)
def test_emit_writes_the_bridge_bytes(
    client: KrytenClient, fake: FakeBridge, event_name: str, payload: Any
) -> None:
    captured: list[Message] = []
    client.subscribe("kryten.events.cytube.lounge.>", captured.append)
    client.flush()
    sent = fake.emit(event_name, copy.deepcopy(payload))
    deadline = time.monotonic() + 5
    while not captured and time.monotonic() < deadline:
        time.sleep(0.01)
    assert captured, "the event did not arrive"
    msg = captured[0]
    assert msg.subject == bf.subject("lounge", event_name)
    expected = bf.envelope(
        event_name,
        payload,
        at=datetime.fromisoformat(sent["timestamp"]),
        correlation_id=sent["correlation_id"],
    )
    assert msg.data == expected
    assert sent == json.loads(expected)


def test_emit_reaches_handlers_as_typed_events(client: KrytenClient, fake: FakeBridge) -> None:
    with client.events() as stream:
        fake.emit("chatMsg", bf.CHAT_MSG)
        fake.emit("addUser", bf.ADD_USER)
        fake.emit("usercount", 12)
        chat, join, count = stream.get(5), stream.get(5), stream.get(5)
    assert isinstance(chat, ChatMessageEvent)
    assert chat.username == "alice" and chat.channel == "lounge" and chat.domain == "cytu.be"
    assert isinstance(join, UserJoinEvent) and join.username == "bob" and join.rank == 1.5
    assert isinstance(count, UserCountEvent) and count.count == 12


# --- requests ---------------------------------------------------------------------------


async def _replies(url: str, subject: str, request: Any, wait: float = 0.3) -> list[Any]:
    """Every reply to one request, not just the first (raw nats-py)."""
    nc = await nats.connect(url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        await nc.publish(subject, data, reply=inbox)
        replies: list[Any] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                replies.append(json.loads((await sub.next_msg(timeout=left)).data))
            except nats.errors.TimeoutError:
                break
        return replies
    finally:
        await nc.close()


def robot(fake: FakeBridge, url: str, command: str, **extra: Any) -> list[Any]:
    request: dict[str, Any] = {
        "service": "robot",
        "command": command,
        "args": {},
        "meta": {"domain": "cytu.be", "channel": "lounge", "request_id": "x"},
    }
    request.update(extra)
    return asyncio.run(_replies(url, "kryten.robot.command", request))


def test_answers_ping_health_and_stats_twice(shared_server: NatsServer, fake: FakeBridge) -> None:
    for command in ("system.ping", "system.health", "system.stats"):
        first, second = robot(fake, shared_server.url, command)
        assert first["success"] is second["success"] is True
        assert first["command"] == second["command"] == command
        assert set(first["data"]) != set(second["data"]), command
    assert [r["data"] for r in robot(fake, shared_server.url, "system.version")] == [
        {"version": fake.version}
    ]


def test_ignores_what_the_bridge_ignores(shared_server: NatsServer, fake: FakeBridge) -> None:
    url = shared_server.url
    assert robot(fake, url, "no.such.command") == []
    assert robot(fake, url, "system.version", meta={"domain": "cytu.be", "channel": "x"}) == []
    assert robot(fake, url, "system.version", service="economy") == []
    fake.ignore.add("state.motd")
    assert robot(fake, url, "state.motd") == []
    # Without meta (older clients) the request is answered.
    assert len(robot(fake, url, "system.version", meta=None)) == 1


def test_failures_it_can_be_told_to_send(shared_server: NatsServer, fake: FakeBridge) -> None:
    url = shared_server.url
    fake.errors["system.version"] = "boom"
    assert robot(fake, url, "system.version") == [
        {"service": "robot", "command": "system.version", "success": False, "error": "boom"}
    ]
    fake.data_errors["addvideo"] = "playlist locked"
    [reply] = robot(fake, url, "addvideo", args={"type": "yt", "id": "abc"})
    assert reply["success"] is True
    assert reply["data"] == {"success": False, "error": "playlist locked"}
    fake.double_reply = True
    first, second = robot(fake, url, "state.motd")
    assert (first["success"], second["success"]) == (True, False)
    [bad] = robot(fake, url, "state.user")  # no top-level username
    assert bad["success"] is False and "username" in bad["error"]
    [not_json] = asyncio.run(_replies(url, "kryten.robot.command", b"{nope"))
    assert not_json["success"] is False


def test_answers_the_rank_query(shared_server: NatsServer, fake: FakeBridge) -> None:
    subject = "kryten.user_level.cytu.be.lounge"
    fake.rank, fake.username = 2, "bot"
    replies = asyncio.run(_replies(shared_server.url, subject, {}))
    assert replies == [{"success": True, "rank": 2, "username": "bot"}]
    fake.rank = None
    assert asyncio.run(_replies(shared_server.url, subject, {})) == []


def test_start_stop_is_idempotent(shared_server: NatsServer) -> None:
    fake = FakeBridge([shared_server.url], channel="My-Channel")
    fake.start()
    assert fake.client.is_connected
    fake.stop()
    fake.stop()
    assert not fake.client.is_connected


def test_module_docstring_example_runs(shared_server: NatsServer) -> None:
    doc = testing_module.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\nTests can", 1)[0])
    namespace: dict[str, Any] = {}
    exec(compile(code, "<testing docstring>", "exec"), namespace)
    namespace["test_greets_newcomers"](shared_server.url)


# --- key-value state (keep_state) ---------------------------------------------------------


def test_keep_state_writes_what_the_events_change(shared_server: NatsServer) -> None:
    config = {
        "nats": {"servers": [shared_server.url]},
        "channels": [{"domain": "cytu.be", "channel": "Stateful"}],
    }
    song = {"id": "abc", "type": "yt", "title": "A song", "seconds": 60}
    other = {"id": "def", "type": "yt", "title": "Another", "seconds": 30}
    with (
        FakeBridge(shared_server.url, channel="Stateful", keep_state=True) as fake,
        KrytenClient(config) as client,
    ):
        fake.motd = "hello <b>all</b>"
        fake.write_state(["state"])
        fake.emit("userlist", [{"name": "bot", "rank": 3}])
        fake.emit("addUser", {"name": "alice", "rank": 1, "meta": {"afk": False}})
        fake.emit("addUser", {"name": "bob", "rank": 2})
        fake.emit("userLeave", {"name": "alice"})
        fake.emit("queue", {"item": {"uid": 1, "temp": False, "queueby": "bob", "media": song}})
        fake.emit("queue", {"item": {"uid": 2, "temp": True, "queueby": "bob", "media": other}})
        fake.emit(
            "queue",
            {"item": {"uid": 3, "temp": True, "queueby": "x", "media": other}, "after": 1},
        )
        fake.emit("delete", {"uid": 2})
        fake.emit("setCurrent", 1)
        fake.emit("changeMedia", {**song, "currentTime": 0, "paused": False})
        fake.emit("setMotd", "new motd")
        fake.emit("emoteList", [{"name": "Kappa", "image": "k.png"}])

        assert [u.name for u in client.get_state_userlist("stateful")] == ["bot", "bob"]
        assert [i.uid for i in client.get_state_playlist_items("Stateful")] == [1, 3]
        current = client.get_state_current_media("Stateful")
        assert current is not None and (current.id, current.uid) == ("abc", 1)
        assert client.get_state_current_uid("Stateful") == "1"  # kryten-py's str
        assert client.get_state_motd("Stateful") == "new motd"
        assert [e.name for e in client.get_state_emotes("Stateful")] == ["Kappa"]
        # The bridge's request/reply answers come from the same state.
        assert [u["name"] for u in client.get_userlist("Stateful")] == ["bot", "bob"]
        assert client.kv_get("kryten_Stateful_state", "motd") == b"new motd"


def test_without_keep_state_no_bucket_is_made(shared_server: NatsServer, fake: FakeBridge) -> None:
    fake.emit("addUser", {"name": "alice", "rank": 1})
    assert fake.userlist == []
    config = {
        "nats": {"servers": [shared_server.url]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
    }
    with KrytenClient(config) as client:
        assert client.kv_keys("kryten_lounge_userlist") == []
