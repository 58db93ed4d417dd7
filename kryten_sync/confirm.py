"""Confirmed commands: the bridge's request-path form of each command (docs/protocol.md
section 3, "Confirmed commands").

A fire-and-forget command (:mod:`kryten_sync.commands`) is never answered. The bridge
also takes most commands as requests on ``kryten.robot.command`` and answers each one
after handing it to CyTube, under a name and with argument keys of its own. This module
says how a built :class:`~kryten_sync.commands.Command` is sent that way
(:func:`robot_request`); :meth:`kryten_sync.bridge.Bridge.send_confirmed` sends it and
retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .commands import COMMANDS, Command
from .errors import KrytenValidationError


@dataclass(frozen=True, slots=True)
class RobotCommand:
    """A command as the bridge's request path takes it: ``name``, the ``data`` keys it
    reads under another name (``renames``), and whether the bridge answers only after
    CyTube did (up to 8 s)."""

    name: str
    renames: Mapping[str, str] = field(default_factory=dict)
    waits_for_cytube: bool = False


def _same(action: str) -> RobotCommand:
    return RobotCommand(action)


#: The request-path command of each fire-and-forget action; None where the bridge has
#: no request-path handler (it would never answer).
ROBOT_COMMANDS: Final[Mapping[str, RobotCommand | None]] = MappingProxyType(
    {
        "chat": RobotCommand("say"),
        "pm": _same("pm"),
        "queue": RobotCommand("addvideo", waits_for_cytube=True),
        "delete": RobotCommand("rmvideo"),
        "move": RobotCommand("mvvideo", {"uid": "from"}),
        "jump": _same("jump"),
        "clear": _same("clear"),
        "shuffle": _same("shuffle"),
        "setTemp": RobotCommand("settemp"),
        "playNext": _same("playNext"),
        "pause": _same("pause"),
        "play": _same("play"),
        "seek": _same("seek"),
        "kick": _same("kick"),
        "ban": _same("ban"),
        "voteskip": _same("voteskip"),
        "assignLeader": RobotCommand("assignLeader", {"username": "name"}),
        "mute": _same("mute"),
        "smute": _same("smute"),
        "unmute": None,
        "setMotd": _same("setMotd"),
        "setChannelCSS": _same("setChannelCSS"),
        "setChannelJS": _same("setChannelJS"),
        "setOptions": _same("setOptions"),
        "setPermissions": _same("setPermissions"),
        "updateEmote": _same("updateEmote"),
        "removeEmote": _same("removeEmote"),
        "addFilter": _same("addFilter"),
        "updateFilter": _same("updateFilter"),
        "removeFilter": _same("removeFilter"),
        "newPoll": _same("newPoll"),
        "vote": _same("vote"),
        "closePoll": _same("closePoll"),
        "setChannelRank": _same("setChannelRank"),
        "requestChannelRanks": RobotCommand("requestChannelRanks", waits_for_cytube=True),
        "requestBanlist": RobotCommand("requestBanlist", waits_for_cytube=True),
        "unban": _same("unban"),
        "readChanLog": RobotCommand("readChanLog", waits_for_cytube=True),
        "searchLibrary": RobotCommand("searchLibrary", waits_for_cytube=True),
        "deleteFromLibrary": _same("deleteFromLibrary"),
    }
)

if set(ROBOT_COMMANDS) != {spec.action for spec in COMMANDS.values()}:  # pragma: no cover
    raise RuntimeError("confirm: ROBOT_COMMANDS and COMMANDS name different actions")


def can_confirm(command: Command) -> bool:
    """Whether the bridge answers ``command`` on its request path."""
    return ROBOT_COMMANDS[command.spec.action] is not None


def robot_request(command: Command) -> tuple[RobotCommand, dict[str, Any]]:
    """The request-path command and ``args`` for ``command``; KrytenValidationError
    when the bridge cannot confirm it."""
    robot = ROBOT_COMMANDS[command.spec.action]
    if robot is None:
        raise KrytenValidationError(
            f"{command.spec.method} cannot be confirmed: the bridge has no request-path "
            f"command for {command.spec.action!r} (send it without confirmation)"
        )
    args = {robot.renames.get(key, key): value for key, value in command.data.items()}
    return robot, args


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The bridge's confirmation of one command.

    ``request_id`` was sent with every attempt (a receiver can drop repeats by it);
    ``attempts`` counts the requests sent; ``data`` is the bridge's answer (``{"success":
    True}``, for ``queue_media`` also the new ``uid`` when CyTube reported it in time).
    """

    method: str
    command: str
    request_id: str
    attempts: int
    data: dict[str, Any]


__all__ = ["ROBOT_COMMANDS", "Confirmation", "RobotCommand", "can_confirm", "robot_request"]
