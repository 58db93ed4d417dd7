"""A stand-in for the Kryten bridge (kryten-robot) for your tests, over a real NATS server.

:class:`FakeBridge` speaks the bridge's side of docs/protocol.md for one channel: it records
and checks the commands it receives, publishes events exactly as the bridge does, and
answers the bot-rank and ``kryten.robot.command`` queries, quirks included (silence for
an unknown command or another channel, double answers to ``system.ping``/``health``/
``stats``). It is built on a :class:`~kryten_sync.KrytenClient` of its own::

    from kryten_sync import KrytenClient
    from kryten_sync.testing import FakeBridge

    def test_greets_newcomers(nats_url):
        config = {"nats": {"servers": [nats_url]},
                  "channels": [{"domain": "cytu.be", "channel": "lounge"}]}
        with FakeBridge(nats_url, domain="cytu.be", channel="lounge") as fake, \\
                KrytenClient(config) as bot:
            @bot.on("addUser")
            def greet(event):
                bot.send_chat("lounge", f"hi {event.username}")

            fake.emit("addUser", {"name": "bob", "rank": 1})
            assert fake.wait_for_command("chat").data == {"message": "hi bob"}
            fake.rank = 1  # the bot is only a registered user now
            assert not bot.safe_set_motd("lounge", "<b>hi</b>")["success"]

Tests can publish hand-made commands and see :attr:`ReceivedCommand.problems`; see
:func:`check_command` for the rules. :class:`EmbeddedServer` starts a throw-away
nats-server for such tests (the binary comes with the ``server`` extra).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .client import KrytenClient
from .commands import parse
from .errors import KrytenTimeoutError
from .raw import Message, utc_timestamp
from .subjects import (
    COMMANDS_PREFIX,
    ROBOT_COMMAND,
    event_subject,
    normalize_token,
    user_level_subject,
)
from .tools.embedded import EmbeddedServer

#: Queries the real bridge answers twice (two handlers share kryten.robot.command).
_ANSWERED_TWICE = ("system.ping", "system.health", "system.stats")


@dataclass(frozen=True)
class ReceivedCommand:
    """One command the fake received; ``problems`` lists every departure from the
    protocol (each one may make the real bridge drop the command)."""

    subject: str
    action: str
    data: Any
    correlation_id: str
    timestamp: str
    problems: list[str] = field(default_factory=list)
    raw: bytes = b""


def check_command(subject: str, body: bytes) -> tuple[dict[str, Any], list[str]]:
    """The decoded command body (``{}`` if unusable) and its problems (protocol section 2).

    The rules are :func:`kryten_sync.commands.parse`'s.
    """
    return parse(subject, body)


class FakeBridge:
    """The bridge's side of the protocol for one channel (see the module docstring).

    Settable state: ``rank`` (None: do not answer the rank query), ``username``,
    ``version``, ``userlist``, ``playlist``, ``emotes``, ``motd``, ``profiles``,
    ``banlist``, ``channel_ranks``, ``chan_log``, ``search_results``, ``services``,
    ``stats``, ``config``; ``errors[command] = text`` answers ``{"success": false,
    "error": text}``, ``data_errors[command] = text`` a failure inside ``data`` (e.g. an
    ``addvideo`` refusal); ``ignore`` holds commands to treat as unknown (no reply);
    ``double_reply = True`` follows every answer with a second, failing one.
    ``requests`` records every decoded robot request.
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        domain: str = "cytu.be",
        channel: str = "lounge",
        nats_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.domain, self.channel = domain, channel
        urls = [servers] if isinstance(servers, str) else list(servers)
        self.client = KrytenClient(
            {
                "nats": {"servers": urls, "name": "kryten-fake-bridge", **(nats_options or {})},
                "channels": [{"domain": domain, "channel": channel}],
            }
        )
        self.rank: float | None = 3
        self.username, self.version = "kryten-bot", "1.12.6"
        self.userlist: list[dict[str, Any]] = []
        self.playlist: list[dict[str, Any]] = []
        self.emotes: list[dict[str, Any]] = []
        self.motd = ""
        self.profiles: dict[str, dict[str, Any]] = {}
        self.banlist: Any = []
        self.channel_ranks: Any = []
        self.chan_log: Any = ""
        self.search_results: Any = {"source": "library", "results": []}
        self.services: dict[str, Any] = {"services": [], "count": 0, "active_count": 0}
        self.stats: dict[str, Any] = {"uptime_seconds": 0.0, "events": {}, "commands": {}}
        self.config: dict[str, Any] = {
            "cytube": {"domain": domain, "channel": channel, "password": "***REDACTED***"}
        }
        self.errors: dict[str, str] = {}
        self.data_errors: dict[str, str] = {}
        self.ignore: set[str] = set()
        self.double_reply = False
        self.commands: list[ReceivedCommand] = []
        self.requests: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._hooks: list[tuple[str, Callable[[ReceivedCommand], None]]] = []
        self._cond = threading.Condition()
        self._next_uid = 1000
        self._started = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeBridge:
        """Connect and subscribe; returns once the server knows the subscriptions."""
        c = self.client
        c.connect()
        c.subscribe(f"{COMMANDS_PREFIX}.{normalize_token(self.channel)}.>", self._on_command)
        rank_subject = user_level_subject(self.domain, self.channel)
        if not any(ch.isspace() for ch in rank_subject):  # else the bridge can't either
            c.subscribe(rank_subject, self._on_rank)
        c.subscribe(ROBOT_COMMAND, self._on_robot)
        c.flush()
        return self

    def stop(self) -> None:
        """Disconnect (idempotent)."""
        self.client.disconnect("fake bridge stopped")

    def __enter__(self) -> FakeBridge:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- commands ------------------------------------------------------------------

    def on_command(self, action: str, fn: Callable[[ReceivedCommand], None]) -> None:
        """Call ``fn(command)`` for each received command of ``action`` (``"*"``: all)."""
        self._hooks.append((action, fn))

    def wait_for_command(self, action: str | None = None, timeout: float = 5) -> ReceivedCommand:
        """The oldest received command (of ``action``) not yet returned by this method."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, cmd in enumerate(self.commands):
                    if index not in self._taken and action in (None, cmd.action):
                        self._taken.add(index)
                        return cmd
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.action for c in self.commands]
                    raise KrytenTimeoutError(
                        f"no {action or 'command'!r} within {timeout:g} s (received: {seen})"
                    )
                self._cond.wait(left)

    def clear(self) -> None:
        """Forget the received commands."""
        with self._cond:
            self.commands.clear()
            self._taken.clear()

    def _on_command(self, msg: Message) -> None:
        body, problems = check_command(msg.subject, msg.data)
        action = body.get("action")
        cmd = ReceivedCommand(
            msg.subject,
            action if isinstance(action, str) else "",
            body.get("data"),
            str(body.get("correlation_id", "")),
            str(body.get("timestamp", "")),
            problems,
            msg.data,
        )
        with self._cond:
            self.commands.append(cmd)
            self._cond.notify_all()
        for wanted, fn in list(self._hooks):
            if wanted in ("*", cmd.action):
                fn(cmd)

    # -- events --------------------------------------------------------------------

    def emit(self, event_name: str, payload: Any) -> dict[str, Any]:
        """Publish ``event_name`` as the bridge does; returns the envelope sent."""
        envelope = {
            "event_name": event_name,
            "payload": payload,
            "channel": self.channel,
            "domain": self.domain,
            "timestamp": utc_timestamp(),
            "correlation_id": str(uuid.uuid4()),
        }
        subject = event_subject(self.channel, event_name)
        # The bridge's own bytes (json.dumps' default separators, ASCII escapes), not
        # the client's compact encoding: handlers must cope with what the bridge sends.
        self.client.publish(subject, json.dumps(envelope).encode("utf-8"))
        return envelope

    # -- queries -------------------------------------------------------------------

    def _on_rank(self, msg: Message) -> None:
        if self.rank is not None and msg.reply:
            msg.respond({"success": True, "rank": self.rank, "username": self.username})

    def _on_robot(self, msg: Message) -> None:
        try:
            request = msg.json()
        except ValueError as exc:
            msg.respond({"service": "robot", "success": False, "error": f"Invalid JSON: {exc}"})
            return
        if not isinstance(request, dict):
            return
        self.requests.append(request)
        command, meta = request.get("command"), request.get("meta")
        if request.get("service") not in (None, "robot", "system"):
            return
        if isinstance(meta, dict) and (meta.get("domain"), meta.get("channel")) != (
            self.domain,
            self.channel,
        ):
            return  # meant for the bridge of another channel
        answer = self._answers().get(command) if isinstance(command, str) else None
        if answer is None or command in self.ignore:
            return  # the real bridge ignores unknown commands
        reply: dict[str, Any] = {"service": "robot", "command": command, "success": True}
        try:
            if command in self.errors:
                raise ValueError(self.errors[command])
            if command in self.data_errors:
                data = {"success": False, "error": self.data_errors[command]}
            else:
                data = answer(request, request.get("args") or {})
        except (KeyError, ValueError) as exc:
            msg.respond({**reply, "success": False, "error": str(exc)})
            return
        msg.respond({**reply, "data": data})
        if command in _ANSWERED_TWICE:
            msg.respond({**reply, "data": self._second_answer(command)})
        if self.double_reply:
            msg.respond({**reply, "success": False, "error": "duplicate reply: take the first"})

    def _answers(self) -> dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]]:
        domain, channel = self.domain, self.channel
        return {
            "system.ping": lambda r, a: {
                "pong": True,
                "timestamp": utc_timestamp(),
                "uptime_seconds": self._uptime(),
                "service": "robot",
                "version": self.version,
            },
            "system.health": lambda r, a: {
                "service": "robot",
                "status": "healthy",
                "domain": domain,
                "channel": channel,
                "nats_connected": True,
            },
            "system.stats": lambda r, a: self.stats,
            "system.version": lambda r, a: {"version": self.version},
            "system.channels": lambda r, a: {
                "channels": [{"domain": domain, "channel": channel, "connected": True}]
            },
            "system.services": lambda r, a: self.services,
            "system.config": lambda r, a: self.config,
            "state.userlist": lambda r, a: {"userlist": self.userlist},
            "state.playlist": lambda r, a: {"playlist": self.playlist},
            "state.emotes": lambda r, a: {"emotes": self.emotes},
            "state.motd": lambda r, a: {"motd": self.motd},
            "state.user": lambda r, a: self._user(r.get("username")),  # top level
            "state.profiles": lambda r, a: {
                "profiles": {
                    **{u["name"]: u.get("profile", {}) for u in self.userlist if "name" in u},
                    **self.profiles,
                }
            },
            "addvideo": lambda r, a: self._add_video(a),
            "requestBanlist": lambda r, a: {"banlist": self.emit("banlist", self.banlist)},
            "requestChannelRanks": lambda r, a: {
                "ranks": self.emit("channelRanks", self.channel_ranks)
            },
            "readChanLog": lambda r, a: {"log": self.emit("readChanLog", self.chan_log)},
            "searchLibrary": lambda r, a: {
                "results": self.emit("searchResults", self.search_results)
            },
        }

    def _second_answer(self, command: str) -> dict[str, Any]:
        """The shape of the bridge's other handler for the queries it answers twice."""
        base = {"service": "robot", "version": self.version, "uptime_seconds": self._uptime()}
        where = {"cytube_connected": True, "channel": self.channel, "domain": self.domain}
        if command == "system.ping":
            return {**base, "pong": True, "timestamp": utc_timestamp(), **where}
        if command == "system.health":
            return {**base, "status": "healthy", "nats_connected": True, **where}
        return {**base, "commands_processed": len(self.requests)}

    def _uptime(self) -> float:
        return time.monotonic() - self._started

    def _user(self, name: object) -> dict[str, Any]:
        if not isinstance(name, str) or not name:
            raise ValueError("username required")
        user = next(
            (u for u in self.userlist if str(u.get("name", "")).lower() == name.lower()), None
        )
        return {"user": user, "profile": self.profiles.get(name) or (user or {}).get("profile")}

    def _add_video(self, args: dict[str, Any]) -> dict[str, Any]:
        for key in ("type", "id"):
            if not args.get(key):
                raise ValueError(f"Missing {key}")
        with self._cond:
            self._next_uid += 1
            return {"success": True, "uid": self._next_uid}


__all__ = ["EmbeddedServer", "FakeBridge", "ReceivedCommand", "check_command"]
