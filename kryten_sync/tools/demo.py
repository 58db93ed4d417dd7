"""``kryten-sync demo``: a simulated CyTube channel, a scripted audience and an example bot.

Nothing to set up: an embedded nats-server is started (``pip install
'kryten-sync[server]'``; ``--port`` fixes its port), or ``--nats URL`` names a real one. A
:class:`~kryten_sync.testing.FakeBridge` plays the bridge of one channel and keeps its
key-value state (userlist, playlist, current media, motd) as the real bridge does; an
audience thread acts out a short script (people join, chat, queue a video, leave), and
the bot of :func:`make_bot`, built only on kryten-sync's public API, answers them. What
is printed is the channel as any subscribed client sees it, the bot's own messages
included (the fake bridge echoes them as CyTube does).

A bot of your own can connect to the same server and channel. People can be made to
speak in the channel by ``--as NAME`` (each line typed becomes their chat message) or by
``kryten-sync say``, which asks the demo on :data:`SAY_SUBJECT`.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any

from kryten_sync import ChangeMediaEvent, ChatMessageEvent, Event, KrytenClient, UserJoinEvent
from kryten_sync.errors import KrytenError
from kryten_sync.raw import Message
from kryten_sync.subjects import normalize_token
from kryten_sync.testing import FakeBridge, ReceivedCommand

from .embedded import DEFAULT_NATS, EmbeddedServer
from .format import format_event, silence_stdout

BOT_NAME = "kryten-bot"
DOMAIN = "cytu.be"
#: The channel on the demo's own server: the name a first bot (the README's) uses.
CHANNEL = "lounge"
#: The channel on a NATS server of yours (--nats), where a real channel's bridge may be
#: listening: a name no real channel has.
SHARED_CHANNEL = "kryten-sync-demo"
#: Where ``kryten-sync say`` asks the demo to make someone speak (no bridge listens here).
SAY_SUBJECT = "kryten-sync.demo.say"
MOTD = "Welcome to the kryten-sync demo channel! Try !roll, !np or !queue."

# --------------------------------------------------------------------------- the bot
# The example: a bot using nothing but the public API. Handlers are plain functions; for
# one channel they run one at a time, in the order the events arrived, on a worker thread
# of their own, and may call any client method (send_chat, queue_media, ...).

_DICE = re.compile(r"(\d{1,2})d(\d{1,4})")


def make_bot(nats_url: str, channel: str = CHANNEL) -> KrytenClient:
    """A bot that greets newcomers and answers ``!roll [NdM]``, ``!np`` and ``!queue <id>``."""
    bot = KrytenClient(
        {
            "nats": {"servers": [nats_url], "name": BOT_NAME},
            "channels": [{"domain": DOMAIN, "channel": channel}],
            "chat_burst": 20,  # CyTube's chat limits without its antiflood option:
            "chat_min_delay": 0.1,  # bursts of 20, then 10 messages a second
        }
    )
    now_playing: dict[str, ChangeMediaEvent] = {}  # handlers never overlap: no lock needed

    @bot.on("addUser")
    def greet(event: UserJoinEvent) -> None:
        if event.username != BOT_NAME:
            bot.send_chat(event.channel, f"welcome, {event.username}! try !roll, !np or !queue")

    @bot.on("changeMedia")
    def remember(event: ChangeMediaEvent) -> None:
        now_playing["current"] = event

    @bot.on("chatMsg")
    def answer(event: ChatMessageEvent) -> None:
        if event.username == BOT_NAME:  # CyTube shows the bot its own messages too
            return
        command, _, arg = event.message.strip().partition(" ")
        arg = arg.strip()
        if command == "!roll":
            reply = roll(event.username, arg or "1d6")
        elif command == "!np":
            media = now_playing.get("current")
            reply = f"now playing: {media.title}" if media else "nothing is playing"
        elif command == "!queue" and arg:
            bot.queue_media(event.channel, "yt", arg)
            reply = f"queued {arg}"
        elif command == "!queue":
            reply = "usage: !queue <youtube id>"
        else:
            return
        bot.send_chat(event.channel, reply)

    return bot


def roll(username: str, dice: str) -> str:
    """``1d6``: one six-sided die; ``3d20``: three twenty-sided ones."""
    match = _DICE.fullmatch(dice)
    if match is None or not (1 <= int(match[1]) <= 20 and 2 <= int(match[2]) <= 1000):
        return f"{username}: try !roll or !roll NdM, e.g. !roll 2d6"
    rolls = [random.randint(1, int(match[2])) for _ in range(int(match[1]))]
    if len(rolls) == 1:
        return f"{username} rolled {rolls[0]}"
    return f"{username} rolled {dice}: {' + '.join(map(str, rolls))} = {sum(rolls)}"


# --------------------------------------------------------------------------- the channel

SONG = {"id": "dQw4w9WgXcQ", "type": "yt", "title": "Never Gonna Give You Up", "seconds": 213}

#: (who, what, text): "join", "say", "queue" (SONG, from the playlist UI), "play" (SONG
#: starts), "leave".
SCRIPT: list[tuple[str, str, str]] = [
    ("alice", "join", ""),
    ("alice", "say", "hi everyone!"),
    ("bob", "join", ""),
    ("alice", "say", "!roll"),
    ("bob", "say", "!roll 2d6"),
    ("bob", "queue", ""),
    ("", "play", ""),
    ("carol", "join", ""),
    ("carol", "say", "!np"),
    ("carol", "say", "!queue 9bZkp7q19f0"),
    ("alice", "say", "gotta go, bye!"),
    ("alice", "leave", ""),
    ("bob", "leave", ""),
]


class Channel:
    """The simulated channel: a FakeBridge that echoes the bot like CyTube would and
    keeps the channel's key-value state."""

    def __init__(self, nats_url: str, channel: str = CHANNEL) -> None:
        self.bridge = FakeBridge(nats_url, domain=DOMAIN, channel=channel, keep_state=True)
        self.bridge.username = BOT_NAME
        self.bridge.userlist = [_user(BOT_NAME, 3)]  # CyTube lists the bot's account too
        self.bridge.motd = MOTD
        self.bridge.on_command("chat", self._echo_chat)
        self.bridge.on_command("queue", self._echo_queue)
        self._uid = 0
        self._lock = threading.Lock()

    def start(self) -> Channel:
        """Start the bridge and answer ``kryten-sync say`` requests."""
        self.bridge.start()
        self.bridge.client.subscribe(SAY_SUBJECT, self._on_say)
        return self

    def stop(self) -> None:
        self.bridge.stop()

    def __enter__(self) -> Channel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def say(self, username: str, message: str) -> None:
        """``username`` says ``message``, joining first if not in the channel."""
        if not any(u.get("name") == username for u in self.bridge.userlist):
            self.join(username)
        self.chat(username, message)

    def join(self, username: str) -> None:
        self.bridge.emit("addUser", _user(username, 1))

    def _on_say(self, msg: Message) -> None:
        try:
            request = json.loads(msg.data)
            channel, username = str(request["channel"]), str(request["username"]).strip()
            message = str(request["message"])
        except (ValueError, KeyError, TypeError):
            msg.respond({"ok": False, "error": "expected {channel, username, message}"})
            return
        if normalize_token(channel) != normalize_token(self.bridge.channel):
            msg.respond({"ok": False, "error": f"this demo's channel is {self.bridge.channel}"})
            return
        if not username or not message.strip():
            msg.respond({"ok": False, "error": "username and message must not be empty"})
            return
        self.say(username, message)
        msg.respond({"ok": True})

    def _next_uid(self) -> int:
        with self._lock:
            self._uid += 1
            return self._uid

    def chat(self, username: str, message: str, rank: float = 1) -> None:
        now_ms = int(time.time() * 1000)
        payload = {"username": username, "msg": message, "rank": rank, "time": now_ms, "meta": {}}
        self.bridge.emit("chatMsg", payload)

    def queue(self, username: str, media: dict[str, Any], temp: bool = True) -> None:
        uid = self._next_uid()
        item = {"uid": uid, "temp": temp, "queueby": username, "media": media}
        self.bridge.emit("queue", {"item": item, "after": uid - 1})

    def _echo_chat(self, command: ReceivedCommand) -> None:
        self.chat(BOT_NAME, command.data["message"], rank=3)

    def _echo_queue(self, command: ReceivedCommand) -> None:
        data = command.data
        media = {"id": data["id"], "type": data["type"], "title": data["id"], "seconds": 0}
        self.queue(BOT_NAME, media, temp=data["temp"])

    def act(self, who: str, what: str, text: str) -> None:
        """Perform one step of :data:`SCRIPT`."""
        if what == "join":
            self.join(who)
        elif what == "say":
            self.chat(who, text)
        elif what == "queue":
            self.queue(who, SONG)
        elif what == "play":
            self.bridge.emit("changeMedia", {**SONG, "currentTime": 0, "paused": False})
        elif what == "leave":
            self.bridge.emit("userLeave", {"name": who})


def _user(name: str, rank: float) -> dict[str, Any]:
    """A userlist entry as CyTube sends it in ``addUser``."""
    return {"name": name, "rank": rank, "profile": {"image": "", "text": ""}, "meta": {}}


def _audience(channel: Channel, beat: float, stop: threading.Event) -> None:
    """Act out :data:`SCRIPT`, one step per ``beat`` seconds, until done or ``stop``."""
    for index, step in enumerate(SCRIPT):
        if index and stop.wait(beat):
            return
        try:
            channel.act(*step)
        except KrytenError:
            if stop.is_set():  # shutting down under our feet
                return
            raise


# --------------------------------------------------------------------------- running


def _say(text: str) -> None:
    print(text, flush=True)


def _read_lines_as(channel: Channel, username: str, stop: threading.Event) -> None:
    """Each line read from stdin is said by ``username`` (until EOF or ``stop``)."""
    for line in sys.stdin:
        if stop.is_set():
            return
        if line.strip():
            try:
                channel.say(username, line.rstrip("\n"))
            except KrytenError:
                if stop.is_set():
                    return
                raise


def _connect_hint(url: str, channel: str) -> list[str]:
    """How to reach this demo: from a bot of one's own, and from the shell."""
    nats = "" if url == DEFAULT_NATS else f" --nats {url}"
    return [
        f"connect your own bot: servers [{url!r}], channel {channel!r} on domain {DOMAIN!r}",
        f"speak as someone:  kryten-sync{nats} say {channel} '!roll' --as alice",
        f"see the state:     kryten-sync{nats} users {channel}   (also playlist, now, kv get)",
    ]


def run_demo(
    duration: float | None = 12.0,
    nats_url: str | None = None,
    *,
    port: int | None = None,
    as_user: str | None = None,
) -> int:
    """Run the demo for ``duration`` seconds (None: until Ctrl-C/SIGTERM); returns 0.

    ``port``: the embedded server's port (default: a free one); ``as_user``: each line
    read from stdin is said by that user.

    Everything started here is stopped when it returns, also when it ends by an
    exception, in reverse order: the audience, the bot, the bridge, the viewer (so it
    prints all that was said), the server. No process or thread is left behind.
    """
    started = time.monotonic()
    stop = threading.Event()
    with ExitStack() as running:
        if nats_url is None:
            url = running.enter_context(EmbeddedServer(port=port)).url
            where, name = f"an embedded nats-server at {url}", CHANNEL
        else:
            url, where, name = nats_url, f"NATS at {nats_url}", SHARED_CHANNEL
        viewer = KrytenClient(
            {
                "nats": {"servers": [url], "name": "kryten-sync-demo-viewer"},
                "channels": [{"domain": DOMAIN, "channel": name}],
            }
        )
        running.enter_context(viewer)
        channel = running.enter_context(Channel(url, name))
        bot = running.enter_context(make_bot(url, name))

        def show(event: Event) -> None:
            try:
                _say(format_event(event))
            except BrokenPipeError:  # nobody reads the transcript any more: end the demo
                silence_stdout()
                bot.stop()

        viewer.on("*", handler=show)
        for client in (viewer, bot):
            client.flush()  # their subscriptions are in place before anyone speaks

        _say(f"kryten-sync demo: channel {DOMAIN}/{name} on {where}")
        _say(f"{BOT_NAME} answers !roll, !roll NdM, !np and !queue <id>; Ctrl-C stops")
        for line in _connect_hint(url, name):
            _say(line)
        if as_user:
            _say(f"type a line and Enter to say it as {as_user}")
            reader = threading.Thread(
                target=_read_lines_as, args=(channel, as_user, stop), name="demo-stdin"
            )
            reader.daemon = True  # blocked in a read of stdin: never joined
            reader.start()
        left = None if duration is None else max(duration - (time.monotonic() - started), 0.5)
        beat = 0.8 if left is None else min(max((left - 2.0) / len(SCRIPT), 0.15), 1.0)
        audience = threading.Thread(
            target=_audience, args=(channel, beat, stop), name="demo-audience", daemon=True
        )
        running.callback(audience.join, 5.0)
        audience.start()
        if left is not None:
            timer = threading.Timer(left, bot.stop)
            timer.daemon = True
            running.callback(timer.join, 5.0)
            timer.start()
            running.callback(timer.cancel)
        running.callback(stop.set)

        bot.run()  # until the timer calls bot.stop(), or Ctrl-C / SIGTERM
    _say(f"demo over after {time.monotonic() - started:.1f} s")
    return 0


__all__ = [
    "BOT_NAME",
    "CHANNEL",
    "SAY_SUBJECT",
    "SCRIPT",
    "SHARED_CHANNEL",
    "Channel",
    "make_bot",
    "roll",
    "run_demo",
]
