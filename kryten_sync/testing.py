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
:func:`check_command` for the rules. With ``keep_state=True`` it also keeps the channel's
key-value state as the bridge does (docs/protocol.md section 5), so the client's
``get_state_*`` methods and ``kryten-sync kv get`` read what the emitted events made.
:class:`EmbeddedServer` starts a throw-away nats-server for such tests (the binary comes
with the ``server`` extra).

:class:`MockKrytenClient` is kryten-py's test double for tests without any nats-server:
a real client on an in-process server (:class:`LoopbackServer`, core NATS without
JetStream) with a FakeBridge per configured channel, plus kryten-py's
``simulate_event``/``get_published_commands`` and in-memory key-value.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from . import kv_store
from .client import KrytenClient
from .commands import parse
from .config import KrytenConfig, NatsConfig
from .errors import KeyValueError, KrytenTimeoutError, NotConnectedError
from .raw import Message, encode_payload, utc_timestamp
from .state import state_bucket_name
from .subjects import (
    COMMANDS_PREFIX,
    ROBOT_COMMAND,
    event_subject,
    normalize_token,
    token,
    user_level_subject,
)
from .tools.embedded import EmbeddedServer
from .tools.loopback import LoopbackServer

#: The state buckets: ``kryten_{channel}_{kind}`` for each kind.
_STATE_KINDS = ("playlist", "userlist", "emotes", "state")
#: Which state each tracked event changes.
_STATE_OF_EVENT = {
    "addUser": "userlist",
    "userLeave": "userlist",
    "userlist": "userlist",
    "playlist": "playlist",
    "queue": "playlist",
    "delete": "playlist",
    "changeMedia": "playlist",
    "setCurrent": "playlist",
    "setMotd": "state",
    "emoteList": "emotes",
}

#: Queries the real bridge answers twice (two handlers share kryten.robot.command).
_ANSWERED_TWICE = ("system.ping", "system.health", "system.stats")

#: The commands the real bridge performs on its request path (besides addvideo and the
#: four that answer with an event), each with the ``args`` keys it reads and needs.
_ROBOT_ACTIONS: dict[str, tuple[str, ...]] = {
    "say": ("message",),
    "pm": ("to", "message"),
    "kick": ("username",),
    "ban": ("username",),
    "mute": ("username",),
    "smute": ("username",),
    "rmvideo": ("uid",),
    "mvvideo": ("from", "after"),
    "jump": ("uid",),
    "clear": (),
    "shuffle": (),
    "settemp": ("uid", "temp"),
    "pause": (),
    "play": (),
    "seek": ("time",),
    "voteskip": (),
    "assignLeader": ("name",),
    "playNext": (),
    "setMotd": ("motd",),
    "setChannelCSS": ("css",),
    "setChannelJS": ("js",),
    "setOptions": ("options",),
    "setPermissions": ("permissions",),
    "updateEmote": ("name", "image"),
    "removeEmote": ("name",),
    "addFilter": ("name", "source"),
    "updateFilter": ("name", "source"),
    "removeFilter": ("name",),
    "newPoll": ("title", "options"),
    "vote": ("option",),
    "closePoll": (),
    "setChannelRank": ("username", "rank"),
    "unban": ("ban_id", "name"),
    "deleteFromLibrary": ("media_id",),
}


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
    ``options``, ``permissions``, ``banlist``, ``channel_ranks``, ``chan_log``,
    ``search_results``, ``services``, ``stats``, ``config``; ``errors[command] = text``
    answers ``{"success": false, "error": text}``, ``data_errors[command] = text`` a
    failure inside ``data`` (e.g. an ``addvideo`` refusal); ``ignore`` holds commands to
    treat as unknown (no reply); ``unanswered[command] = n`` leaves the next ``n``
    requests of ``command`` without a reply (a lost request or answer);
    ``double_reply = True`` follows every answer with a second, failing one.
    ``requests`` records every decoded robot request. The commands the bridge performs
    on its request path (``say``, ``kick``, ...: the confirmed commands) are answered
    ``{"success": true}`` when their ``args`` hold the keys the bridge reads, else with
    the bridge's ``Missing ...`` failure.

    ``keep_state=True``: the state buckets (``kryten_{channel}_playlist``, ``_userlist``,
    ``_emotes``, ``_state``) are created at :meth:`start` and written from ``playlist``,
    ``current``, ``userlist``, ``emotes`` and ``motd``; :meth:`emit` of an event that
    changes them (``addUser``, ``userLeave``, ``userlist``, ``playlist``, ``queue``,
    ``delete``, ``changeMedia``, ``setCurrent``, ``setMotd``, ``emoteList``) updates those
    attributes and the buckets, as the bridge does. After changing the attributes by
    hand, :meth:`write_state` writes them.
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        domain: str = "cytu.be",
        channel: str = "lounge",
        nats_options: Mapping[str, Any] | None = None,
        keep_state: bool = False,
    ) -> None:
        self.domain, self.channel = domain, channel
        self.keep_state = keep_state
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
        self.current: dict[str, Any] | None = None
        self.emotes: list[dict[str, Any]] = []
        self.motd = ""
        self.profiles: dict[str, dict[str, Any]] = {}
        self.options: dict[str, Any] = {}
        self.permissions: dict[str, Any] = {}
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
        self.unanswered: dict[str, int] = {}
        self.double_reply = False
        self.commands: list[ReceivedCommand] = []
        self.requests: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._hooks: list[tuple[str, Callable[[ReceivedCommand], None]]] = []
        self._cond = threading.Condition()
        self._state_lock = threading.Lock()  # one state change and its writes at a time
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
        if self.keep_state:
            for kind in _STATE_KINDS:
                c.get_or_create_kv_store(state_bucket_name(self.channel, kind))
            self.write_state()
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

    def emit(
        self,
        event_name: str,
        payload: Any,
        *,
        channel: str | None = None,
        domain: str | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """Publish ``event_name`` as the bridge does; returns the envelope sent.

        ``channel``/``domain`` stand in for the fake's own (the bridge of another
        channel), ``correlation_id`` for a new uuid4.
        """
        channel = self.channel if channel is None else channel
        envelope = {
            "event_name": event_name,
            "payload": payload,
            "channel": channel,
            "domain": self.domain if domain is None else domain,
            "timestamp": utc_timestamp(),
            "correlation_id": correlation_id or str(uuid.uuid4()),
        }
        subject = event_subject(channel, event_name)
        # The bridge's own bytes (json.dumps' default separators, ASCII escapes), not
        # the client's compact encoding: handlers must cope with what the bridge sends.
        data = json.dumps(envelope).encode("utf-8")
        if not self.keep_state or channel != self.channel:  # no state of another bridge
            self.client.publish(subject, data)
            return envelope
        with self._state_lock:  # state written before the event, in event order
            self.write_state(self._track(event_name, payload))
            self.client.publish(subject, data)
        return envelope

    # -- key-value state (keep_state) --------------------------------------------------

    def write_state(self, kinds: Sequence[str] = _STATE_KINDS) -> None:
        """Write the state attributes of ``kinds`` (default: all) to their buckets."""
        values: dict[str, dict[str, Any]] = {
            "playlist": {"items": self.playlist, "current": self.current or {}},
            "userlist": {"users": self.userlist},
            "emotes": {"list": self.emotes},
            "state": {"motd": self.motd},
        }
        for kind in kinds:
            bucket = state_bucket_name(self.channel, kind)
            for key, value in values[kind].items():
                self.client.kv_put(bucket, key, value)

    def _track(self, event_name: str, payload: Any) -> list[str]:
        """Apply one event to the state attributes; the kinds of state it changed."""
        if event_name == "addUser" and isinstance(payload, dict) and "name" in payload:
            self.userlist = [u for u in self.userlist if u.get("name") != payload["name"]]
            self.userlist.append(payload)
        elif event_name == "userLeave" and isinstance(payload, dict):
            self.userlist = [u for u in self.userlist if u.get("name") != payload.get("name")]
        elif event_name == "userlist" and isinstance(payload, list):
            self.userlist = list(payload)
        elif event_name == "playlist" and isinstance(payload, list):
            self.playlist = list(payload)
        elif event_name == "queue" and isinstance(payload, dict) and "item" in payload:
            after = payload.get("after")
            uids = [item.get("uid") for item in self.playlist]
            at = 0 if after == "prepend" else uids.index(after) + 1 if after in uids else None
            self.playlist.insert(len(self.playlist) if at is None else at, payload["item"])
        elif event_name == "delete" and isinstance(payload, dict):
            self.playlist = [i for i in self.playlist if i.get("uid") != payload.get("uid")]
        elif event_name == "changeMedia" and isinstance(payload, dict):
            # The bridge keeps the uid of the last setCurrent (protocol section 5).
            uid = (self.current or {}).get("uid")
            self.current = {**payload, **({"uid": uid} if uid is not None else {})}
        elif event_name == "setCurrent":
            self.current = {**(self.current or {}), "uid": payload}
        elif event_name == "setMotd" and isinstance(payload, str):
            self.motd = payload
        elif event_name == "emoteList" and isinstance(payload, list):
            self.emotes = list(payload)
        else:
            return []
        return [_STATE_OF_EVENT[event_name]]

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
        if not isinstance(command, str):
            return
        answer = self._answers().get(command)
        if answer is None or command in self.ignore:
            return  # the real bridge ignores unknown commands
        if self.unanswered.get(command, 0) > 0:
            self.unanswered[command] -= 1
            return
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
            "state.options": lambda r, a: {"options": self.options},
            "state.permissions": lambda r, a: {"permissions": self.permissions},
            "system.reload": lambda r, a: {
                "success": True,
                "message": "Configuration reloaded",
                "changes": {},
                "errors": [],
            },
            "system.shutdown": lambda r, a: self._shutdown(r),
            "addvideo": lambda r, a: self._add_video(a),
            "requestBanlist": lambda r, a: {"banlist": self.emit("banlist", self.banlist)},
            "requestChannelRanks": lambda r, a: {
                "ranks": self.emit("channelRanks", self.channel_ranks)
            },
            "readChanLog": lambda r, a: {"log": self.emit("readChanLog", self.chan_log)},
            "searchLibrary": lambda r, a: {
                "results": self.emit("searchResults", self.search_results)
            },
            **{name: self._perform(keys) for name, keys in _ROBOT_ACTIONS.items()},
        }

    @staticmethod
    def _perform(keys: tuple[str, ...]) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
        """The answer to a command the bridge performs: it needs ``keys`` in ``args``."""

        def answer(request: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
            missing = [key for key in keys if key not in args]
            if missing:
                raise ValueError(f"Missing {' and '.join(missing)}")
            return {"success": True}

        return answer

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

    def _shutdown(self, request: dict[str, Any]) -> dict[str, Any]:
        """The bridge's answer; like the bridge, nothing shuts down before the delay."""
        delay = request.get("delay_seconds", 0)
        if not isinstance(delay, int | float) or not 0 <= delay <= 300:
            raise ValueError("delay_seconds must be between 0 and 300")
        return {
            "success": True,
            "message": "Shutdown initiated",
            "delay_seconds": int(delay),
            "reason": request.get("reason", "Remote shutdown via system.shutdown"),
        }

    def _add_video(self, args: dict[str, Any]) -> dict[str, Any]:
        for key in ("type", "id"):
            if not args.get(key):
                raise ValueError(f"Missing {key}")
        with self._cond:
            self._next_uid += 1
            return {"success": True, "uid": self._next_uid}


# --- MockKrytenClient ---------------------------------------------------------------


def _mock_config(config: KrytenConfig | Mapping[str, Any], url: str) -> KrytenConfig:
    """``config`` with its NATS section replaced by the loopback server's URL and no HTTP
    endpoints (a test double binds no port)."""
    nats = NatsConfig(servers=[url], name="kryten-sync-mock")
    if isinstance(config, Mapping):
        config = {key: value for key, value in config.items() if key != "metrics"}
        config["nats"] = nats
    cfg = KrytenConfig.coerce(config)
    service = cfg.service
    if service is not None:
        service = service.model_copy(update={"health_port": None, "metrics_port": None})
    return cfg.model_copy(update={"nats": nats, "metrics": None, "service": service})


class _Recorder:
    """Every command the mock client sends, seen by the loopback server as it arrives (its
    tap), in the bridge's format. Holds no reference to the mock."""

    def __init__(self, config: KrytenConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []

    def tap(self, subject: str, reply: str, headers: bytes | None, payload: bytes) -> None:
        if subject.startswith(COMMANDS_PREFIX + "."):
            entry = self._command(subject, payload)
        elif _is_service_command(subject):
            entry = self._service_request(subject, payload)
        else:
            return
        entry["request"] = bool(reply)
        with self.lock:
            self.entries.append(entry)

    def _command(self, subject: str, payload: bytes) -> dict[str, Any]:
        body, problems = parse(subject, payload)
        channel = subject[len(COMMANDS_PREFIX) + 1 :].split(".", 1)[0]
        configured = self.config.channel_for(channel)
        return {
            "subject": subject,
            "action": body.get("action", ""),
            "data": body.get("data"),
            "channel": channel,
            "domain": configured.domain if configured is not None else None,
            "correlation_id": body.get("correlation_id", ""),
            "timestamp": body.get("timestamp", ""),
            "problems": problems,
        }

    @staticmethod
    def _service_request(subject: str, payload: bytes) -> dict[str, Any]:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return {
                "subject": subject,
                "action": "",
                "data": None,
                "channel": None,
                "domain": None,
                "correlation_id": "",
                "timestamp": "",
                "problems": ["body is not a JSON object"],
            }
        found = body.get("meta")
        meta: dict[str, Any] = found if isinstance(found, dict) else {}
        if "args" in body:
            data = body["args"]
        else:  # economy requests carry their parameters at the top level
            data = {k: v for k, v in body.items() if k not in _SERVICE_KEYS}
        return {
            "subject": subject,
            "action": body.get("command", ""),
            "data": data,
            "channel": meta.get("channel", body.get("channel")),
            "domain": meta.get("domain"),
            "correlation_id": meta.get("request_id", ""),
            "timestamp": meta.get("timestamp", ""),
            "problems": [],
        }


_SERVICE_KEYS = frozenset({"service", "command", "channel", "meta", "args"})


def _is_service_command(subject: str) -> bool:
    """``kryten.{service}.command``: a request to the bridge or another Kryten service."""
    parts = subject.split(".")
    return len(parts) == 3 and parts[0] == "kryten" and parts[2] == "command"


def _economy_responder(
    responses: dict[str, Any], logger: logging.Logger
) -> Callable[[Message], None]:
    def answer(msg: Message) -> None:
        if not msg.reply:
            return
        try:
            request = msg.json()
        except ValueError:
            request = None
        if not isinstance(request, dict):
            msg.respond({"success": False, "error": "request is not a JSON object"})
            return
        command = request.get("command")
        reply = responses.get(command) if isinstance(command, str) else None
        if reply is None:
            reply = {"success": True, "data": {}}
        logger.debug("mock economy service answers %r", command)
        msg.respond(reply)

    return answer


def _shut_down(bridges: list[FakeBridge], server: LoopbackServer) -> None:
    """Stop the mock's bridges and server (also when the mock is garbage-collected)."""
    for bridge in bridges:
        bridge.stop()
    server.close()


class MemoryBucket:
    """An in-memory key-value bucket of a :class:`MockKrytenClient`, with the
    :class:`~kryten_sync.KeyValueStore` methods (``get``, ``put``, ``delete``, ``keys``,
    ``get_all``) and their semantics: values are stored as bytes (dict/list as JSON, str
    as UTF-8) and read back as bytes, or parsed with ``parse_json``."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._values: dict[str, bytes] = {}
        self._revision = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryBucket {self.bucket!r}>"

    def get(self, key: str, default: Any = None, *, parse_json: bool = False) -> Any:
        raw = self._values.get(key)
        if raw is None:
            return default
        return self._decode(key, raw) if parse_json else raw

    def put(self, key: str, value: Any) -> int:
        data = encode_payload(value, f"kv_put({self.bucket!r}, {key!r}): value")
        with self._lock:
            self._values[key] = data
            self._revision += 1
            return self._revision

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._values)

    def get_all(self, *, parse_json: bool = False) -> dict[str, Any]:
        values = dict(self._values)
        if parse_json:
            return {key: self._decode(key, raw) for key, raw in values.items()}
        return values

    def _decode(self, key: str, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise KeyValueError(
                f"value of {key!r} in bucket {self.bucket!r} is not JSON: {raw[:60]!r}",
                bucket=self.bucket,
            ) from exc


class MockKrytenClient(KrytenClient):
    """kryten-py's ``MockKrytenClient``: a test double that needs no nats-server.

    It is a real :class:`~kryten_sync.KrytenClient` connected to an in-process NATS server
    (:class:`~kryten_sync.tools.loopback.LoopbackServer`), with a :class:`FakeBridge` per
    configured channel on the same server. So every method has the client's signature
    and behaviour: commands are built and sent by the client's own code, events reach
    handlers through its decoding and matching, and bridge queries are answered by the
    fakes (``bridge`` is the first one: set its ``rank``, ``playlist``, ... as in any
    FakeBridge test). The ``nats`` section of ``config`` is replaced by the loopback
    server's; ``metrics`` and the service's HTTP ports are dropped.

    kryten-py's additions:

    - :meth:`simulate_event` publishes an event as the bridge does and returns once the
      handlers registered for it have run;
    - :meth:`get_published_commands` lists what was sent to the bridge and to other
      Kryten services (``kryten.commands.cytube.>`` and ``kryten.{service}.command``), each as
      ``{"subject", "action", "data", "channel", "domain", "correlation_id",
      "timestamp", "request", "problems"}`` read from the bytes sent;
      :meth:`clear_published_commands` forgets them;
    - ``economy_responses[command]`` (also ``_economy_responses``, kryten-py's name) is
      what the economy service answers; ``{"success": True, "data": {}}`` by default;
    - kryten-py's key-value methods (``kv_get``, ``kv_put``, ``kv_delete``, ``kv_keys``,
      ``kv_get_all``, ``get_kv_bucket``, ``get_or_create_kv_bucket``) and its three state
      readers work on in-memory buckets (:class:`MemoryBucket`; a bucket exists once
      named). The loopback server has no JetStream: ``get_kv_store``, ``kv_watch`` and
      the other state readers need a real server (use FakeBridge there).

    The chat limiter applies as configured (``chat_burst``, ``chat_min_delay``; set
    ``chat_min_delay: 0`` for fast tests), as it does for the real client.
    """

    def __init__(
        self, config: KrytenConfig | Mapping[str, Any], logger: logging.Logger | None = None
    ) -> None:
        server = LoopbackServer()
        try:
            cfg = _mock_config(config, server.url)
        except BaseException:
            server.close()
            raise
        recorder = _Recorder(cfg)
        server.tap = recorder.tap
        super().__init__(cfg, logger)
        self._mock_server = server
        self._mock_recorder = recorder
        self._mock_lock = threading.Lock()
        self._mock_running = False
        self.economy_responses: dict[str, Any] = {}
        self._economy_responses = self.economy_responses  # kryten-py's name
        seen: set[tuple[str, str]] = set()
        self.bridges: list[FakeBridge] = []
        for channel in cfg.channels:
            if (channel.domain, channel.channel) not in seen:
                seen.add((channel.domain, channel.channel))
                self.bridges.append(
                    FakeBridge(server.url, domain=channel.domain, channel=channel.channel)
                )
        self.bridge = self.bridges[0]
        self._memory_buckets: dict[str, MemoryBucket] = {}
        weakref.finalize(self, _shut_down, self.bridges, server)

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the loopback server and the fake bridges, then connect."""
        with self._mock_lock:
            if not self._mock_running:
                self._mock_server.start()
                try:
                    for bridge in self.bridges:
                        bridge.start()
                    self.bridge.client.subscribe(
                        "kryten.economy.command",
                        _economy_responder(self.economy_responses, self.logger),
                    )
                    self.bridge.client.flush()
                except BaseException:
                    _shut_down(self.bridges, self._mock_server)
                    raise
                self._mock_running = True
        super().connect()

    def disconnect(self, reason: str = "Normal shutdown", timeout: float | None = None) -> int:
        """Disconnect, then stop the fake bridges and the loopback server; returns what
        :meth:`KrytenClient.disconnect` returns."""
        lost = super().disconnect(reason, timeout)
        with self._mock_lock:
            if self._mock_running:
                self._mock_running = False
                for bridge in self.bridges:
                    bridge.stop()
                self._mock_server.stop()
        return lost

    close = disconnect

    def __enter__(self) -> MockKrytenClient:
        self.connect()
        return self

    # -- events ----------------------------------------------------------------------------

    def simulate_event(
        self,
        event_name: str,
        payload: Any,
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Publish ``event_name`` with ``payload`` exactly as the bridge would, for
        ``channel``/``domain`` (default: the first configured), and return once the
        handlers registered for it have run (``concurrent=True`` ones may still be
        running). Called from a handler of the same channel, it returns at once: the
        event is handled after the current handler, as the real client would. An event
        of a channel the client is not configured for reaches no handler (the client
        does not subscribe to it), as with the bridge. KrytenTimeoutError if the handlers
        take longer than ``timeout`` seconds.
        """
        if not self.is_connected:
            raise NotConnectedError("simulate_event(): the mock is not connected: call connect()")
        first = self.config.channels[0]
        channel = first.channel if channel is None else channel
        domain = first.domain if domain is None else domain
        name = token(channel, "channel")
        bridge = next((b for b in self.bridges if normalize_token(b.channel) == name), self.bridge)
        correlation_id = str(uuid.uuid4())

        def emit() -> None:
            bridge.emit(
                event_name, payload, channel=channel, domain=domain, correlation_id=correlation_id
            )

        if self.config.channel_for(channel) is None:
            self.logger.warning(
                "simulate_event(): %r is not a configured channel; no handler sees it", channel
            )
            emit()
            return
        if self._on_channel_worker(name):
            emit()
            return
        # "*": any name the bridge can send is fine here (no unknown-name warning); the
        # stream's handler is the last registered, so it runs after the ones that match.
        with self.events(
            "*", predicate=lambda e: e.correlation_id == correlation_id, maxsize=1
        ) as stream:
            emit()
            stream.get(timeout)

    def _on_channel_worker(self, channel_token: str) -> bool:
        source = self._dispatcher.channel_sources.get(channel_token)
        return source is not None and source.worker.thread is threading.current_thread()

    # -- what was sent -----------------------------------------------------------------------

    def get_published_commands(self) -> list[dict[str, Any]]:
        """Every command and service request sent so far, oldest first (see the class
        docstring); includes everything published before this call."""
        if self.is_connected:
            self.flush()  # the server has seen (and recorded) all published before it
        recorder = self._mock_recorder
        with recorder.lock:
            return [dict(entry) for entry in recorder.entries]

    def clear_published_commands(self) -> None:
        """Forget the recorded commands."""
        if self.is_connected:
            self.flush()
        recorder = self._mock_recorder
        with recorder.lock:
            recorder.entries.clear()

    # -- key-value, in memory (kryten-py's mock methods) -------------------------------------

    def _memory_bucket(self, bucket_name: str) -> MemoryBucket:
        with self._mock_lock:
            bucket = self._memory_buckets.get(bucket_name)
            if bucket is None:
                bucket = self._memory_buckets[bucket_name] = MemoryBucket(bucket_name)
            return bucket

    def get_kv_bucket(self, bucket_name: str) -> MemoryBucket:  # type: ignore[override]
        """The in-memory bucket ``bucket_name``."""
        return self._memory_bucket(bucket_name)

    def get_or_create_kv_bucket(  # type: ignore[override]
        self,
        bucket_name: str,
        description: str | None = None,
        max_value_size: int = kv_store.DEFAULT_MAX_VALUE_SIZE,
        *,
        history: int | None = None,
        ttl: float | None = None,
    ) -> MemoryBucket:
        """The in-memory bucket ``bucket_name`` (``description``, ``max_value_size``,
        ``history`` and ``ttl`` are accepted and not used)."""
        return self._memory_bucket(bucket_name)

    def kv_get(
        self,
        bucket_name: str,
        key: str,
        default: Any = None,
        parse_json: bool = False,
        *,
        timeout: float | None = None,
    ) -> Any:
        """As kryten-py: bytes (parsed JSON with ``parse_json``), or ``default`` if the key
        is missing or its value is not JSON (``timeout``: accepted, nothing waits)."""
        bucket = self._memory_bucket(bucket_name)
        return kv_store.kv_get(bucket, key, default, parse_json, self.logger)

    def kv_put(  # type: ignore[override]
        self, bucket_name: str, key: str, value: Any, as_json: bool = False
    ) -> None:
        """As kryten-py: JSON with ``as_json``, else str as UTF-8, bytes as they are, other
        values as ``str(value)``."""
        kv_store.kv_put(self._memory_bucket(bucket_name), key, value, as_json, self.logger)

    def kv_delete(self, bucket_name: str, key: str) -> None:
        kv_store.kv_delete(self._memory_bucket(bucket_name), key, self.logger)

    def kv_keys(self, bucket_name: str) -> list[str]:
        return kv_store.kv_keys(self._memory_bucket(bucket_name), self.logger)

    def kv_get_all(self, bucket_name: str, parse_json: bool = False) -> dict[str, Any]:
        return kv_store.kv_get_all(self._memory_bucket(bucket_name), parse_json, self.logger)

    def get_state_playlist_items(  # type: ignore[override]
        self, channel: str, *, domain: str | None = None
    ) -> list[dict[str, Any]]:
        """``items`` of ``kryten_{channel}_playlist`` in memory, ``[]`` if unwritten."""
        items = self.kv_get(state_bucket_name(channel, "playlist"), "items", [], True)
        return items if isinstance(items, list) else []

    def get_state_current_media(  # type: ignore[override]
        self, channel: str, *, domain: str | None = None
    ) -> dict[str, Any] | None:
        """``current`` of ``kryten_{channel}_playlist`` in memory, None if unwritten."""
        current = self.kv_get(state_bucket_name(channel, "playlist"), "current", None, True)
        return current if isinstance(current, dict) else None

    def get_state_current_uid(  # type: ignore[override]
        self, channel: str, *, domain: str | None = None
    ) -> str | None:
        """The ``uid`` of :meth:`get_state_current_media` as a string, None if there is
        none."""
        current = self.get_state_current_media(channel, domain=domain)
        uid = None if current is None else current.get("uid")
        text = "" if uid is None else str(uid).strip()
        return text or None


__all__ = [
    "EmbeddedServer",
    "FakeBridge",
    "LoopbackServer",
    "MemoryBucket",
    "MockKrytenClient",
    "ReceivedCommand",
    "check_command",
]
