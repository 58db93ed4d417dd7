"""A bot as a user writes it, for mypy (tests/test_typing.py runs ``mypy --strict`` on
it; pytest does not collect it and nothing runs it).

Each ``assert_type`` is what an editor shows: ``on``/``wait_for``/``events`` with a
typed event's name give its model, in CyTube's spelling and in kryten-py's lowercase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_type

from kryten_sync import (
    ChatMessageEvent,
    Event,
    EventStream,
    KrytenClient,
    RawEvent,
    UserJoinEvent,
)
from kryten_sync.events import AfkEvent, PollOpenedEvent, UserRankEvent, VoteskipEvent

client = KrytenClient({"nats": {"servers": ["nats://127.0.0.1:4222"]}, "channels": []})


@client.on("chatMsg")
def on_chat(event: ChatMessageEvent) -> None:
    if event.text.startswith("!roll"):
        client.send_chat(event.channel, f"{event.username} rolled 4")


@client.on("chatmsg", channel="lounge", concurrent=True)  # kryten-py's spelling
def on_chat_too(event: ChatMessageEvent) -> None:
    print(event.message, event.rank + 1.0, event.shadow)


@client.on("addUser")
def greet(event: UserJoinEvent) -> None:
    print(f"hi {event.username} ({event.rank})")


@client.on("setUserRank")
def any_typed(event: Event) -> None:  # a broader parameter is fine
    print(event.event_name)


@client.on("userlist")
def untyped(event: Any) -> None:
    print(event)


@client.on("setUserMeta")  # arrives as RawEvent
def raw(event: RawEvent) -> None:
    print(event.payload["name"])


@client.on("*")
def everything(event: Event) -> None:
    print(event.channel)


client.on("setAFK", handler=lambda event: print(event.username, event.afk))
client.on("voteskip", handler=lambda event: print(event.count, "/", event.need))
client.on("someCustomEvent", handler=lambda event: print(event.event_name))


def afk(event: AfkEvent) -> None:
    print(event.afk)


assert_type(client.on("setAFK", handler=afk), Callable[[AfkEvent], None])
assert_type(client.on("setafk", handler=afk), Callable[[AfkEvent], None])

chat = client.wait_for("chatMsg", timeout=5)
assert_type(chat, ChatMessageEvent)
print(chat.message.upper(), chat.text)
assert_type(client.wait_for("newPoll", predicate=lambda p: p.initiator == "alice"), PollOpenedEvent)
assert_type(client.wait_for("setUserRank"), UserRankEvent)
assert_type(client.wait_for("rank"), Event)
assert_type(client.wait_for("whatever", channel="lounge"), Event)

with client.events("chatMsg", predicate=lambda e: e.username != "bot") as chats:
    assert_type(chats, EventStream[ChatMessageEvent])
    for message in chats:
        assert_type(message, ChatMessageEvent)
        print(message.username)

with client.events("voteskip") as skips:
    assert_type(skips.get(timeout=1), VoteskipEvent)

with client.events() as all_events:
    assert_type(all_events, EventStream[Event])
    assert_type(all_events.get(), Event)

stream: EventStream = client.events("addUser")  # the default type argument is Event
stream.close()
