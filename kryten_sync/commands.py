"""The fire-and-forget CyTube commands (docs/protocol.md section 2) as data.

:data:`COMMANDS` is the single source of truth: for every command it names the bridge
action (exact case), the ``data`` keys the bridge expects (it passes them as keyword
arguments and silently drops a command whose keys are off), the CyTube rank the command
needs and whether it goes through the client's chat rate limiter.

Each command has one pure builder here, named like the client method that sends it
(:func:`send_chat`, :func:`queue_media`, ...; all in :data:`BUILDERS`). A builder validates
its arguments, raising :class:`~kryten_sync.errors.KrytenValidationError` for anything the
bridge or CyTube would otherwise swallow without a word, and returns a :class:`Command`:
nothing is sent and no client is needed. :func:`parse` is the inverse check, of a command
as the bridge receives it.

Ranks in :data:`COMMANDS` are CyTube's defaults (``src/channel/permissions.js``); channel
admins can change most of them. CyTube kicks a user who sends ``assignLeader``,
``setMotd``, ``setChannelCSS``/``JS`` or ``readChanLog`` without the rank, so check before
sending those.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from ._validate import (
    fail,
    json_copy,
    require_bool,
    require_int,
    require_mapping,
    require_number,
    require_seconds,
    require_text,
    type_name,
)
from .errors import KrytenValidationError
from .subjects import channel_token, command_subject, normalize_token, url_problem

RANK_GUEST: Final = 0.0
RANK_REGISTERED: Final = 1.0
RANK_LEADER: Final = 1.5
RANK_MODERATOR: Final = 2.0
RANK_ADMIN: Final = 3.0
RANK_OWNER: Final = 4.0

#: Largest channel CSS or JS accepted, in UTF-8 bytes (20 KiB).
MAX_CHANNEL_CODE_BYTES: Final = 20 * 1024
#: CyTube's limit on a poll title and on each poll option, in characters.
MAX_POLL_TEXT: Final = 255
#: Ranks ``set_channel_rank`` accepts. CyTube refuses to set a rank below 1
#: ("demote them to below rank 1") and nobody but a site admin can set 5 (founder).
CHANNEL_RANK_RANGE: Final = (1, 5)

_FILTER_FLAGS: Final = frozenset("dgimsuvy")


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """How one command method maps onto the wire.

    ``keys`` are always sent, in protocol order; ``optional_keys`` only when the caller
    gave them (kick/ban ``reason``). ``min_rank`` is the CyTube rank needed by default
    (0 anyone, 1 registered, 1.5 leader, 2 moderator, 3 channel admin, 4 owner).
    ``rate_limited`` commands go through the client's chat limiter.
    """

    method: str
    action: str
    keys: tuple[str, ...]
    _: KW_ONLY
    optional_keys: tuple[str, ...] = ()
    min_rank: float
    rate_limited: bool = False


def _spec(
    method: str,
    action: str,
    keys: tuple[str, ...],
    rank: float,
    *,
    optional: tuple[str, ...] = (),
    rate_limited: bool = False,
) -> CommandSpec:
    return CommandSpec(
        method, action, keys, optional_keys=optional, min_rank=rank, rate_limited=rate_limited
    )


_FILTER_KEYS: Final = ("name", "source", "flags", "replace", "filterlinks", "active")

_SPECS: Final[tuple[CommandSpec, ...]] = (
    # chat
    _spec("send_chat", "chat", ("message",), RANK_GUEST, rate_limited=True),
    _spec("send_pm", "pm", ("to", "message"), RANK_GUEST, rate_limited=True),
    # playlist
    _spec("queue_media", "queue", ("type", "id", "pos", "temp"), RANK_LEADER),
    _spec("delete_media", "delete", ("uid",), RANK_MODERATOR),
    _spec("move_media", "move", ("uid", "after"), RANK_LEADER),
    _spec("jump_to", "jump", ("uid",), RANK_LEADER),
    _spec("clear_playlist", "clear", (), RANK_MODERATOR),
    _spec("shuffle_playlist", "shuffle", (), RANK_MODERATOR),
    _spec("set_temp", "setTemp", ("uid", "temp"), RANK_MODERATOR),
    _spec("play_next", "playNext", (), RANK_LEADER),
    # playback (CyTube ignores these three; the bridge still emits them)
    _spec("pause", "pause", (), RANK_LEADER),
    _spec("play", "play", (), RANK_LEADER),
    _spec("seek", "seek", ("time",), RANK_LEADER),
    # moderation. The bridge sends kick, ban and the mutes to CyTube as chat messages
    # ("/kick name"), so they share the chat budget and go through the chat limiter.
    _spec("kick_user", "kick", ("username",), RANK_LEADER, optional=("reason",), rate_limited=True),
    _spec(
        "ban_user", "ban", ("username",), RANK_MODERATOR, optional=("reason",), rate_limited=True
    ),
    _spec("voteskip", "voteskip", (), RANK_GUEST),
    _spec("assign_leader", "assignLeader", ("username",), RANK_MODERATOR),
    _spec("mute_user", "mute", ("username",), RANK_LEADER, rate_limited=True),
    _spec("shadow_mute_user", "smute", ("username",), RANK_LEADER, rate_limited=True),
    _spec("unmute_user", "unmute", ("username",), RANK_LEADER, rate_limited=True),
    # channel administration
    _spec("set_motd", "setMotd", ("motd",), RANK_ADMIN),
    _spec("set_channel_css", "setChannelCSS", ("css",), RANK_ADMIN),
    _spec("set_channel_js", "setChannelJS", ("js",), RANK_ADMIN),
    _spec("set_options", "setOptions", ("options",), RANK_MODERATOR),
    _spec("set_permissions", "setPermissions", ("permissions",), RANK_ADMIN),
    _spec("update_emote", "updateEmote", ("name", "image"), RANK_ADMIN),
    _spec("remove_emote", "removeEmote", ("name",), RANK_ADMIN),
    _spec("add_filter", "addFilter", _FILTER_KEYS, RANK_ADMIN),
    _spec("update_filter", "updateFilter", _FILTER_KEYS, RANK_ADMIN),
    _spec("remove_filter", "removeFilter", ("name",), RANK_ADMIN),
    # polls
    _spec("new_poll", "newPoll", ("title", "options", "obscured", "timeout"), RANK_LEADER),
    _spec("vote", "vote", ("option",), RANK_GUEST),
    _spec("close_poll", "closePoll", (), RANK_LEADER),
    # ranks, bans, log, library
    _spec("set_channel_rank", "setChannelRank", ("username", "rank"), RANK_ADMIN),
    _spec("request_channel_ranks", "requestChannelRanks", (), RANK_ADMIN),
    _spec("request_banlist", "requestBanlist", (), RANK_MODERATOR),
    _spec("unban", "unban", ("ban_id", "name"), RANK_MODERATOR),
    _spec("read_chan_log", "readChanLog", ("count",), RANK_ADMIN),
    _spec("search_library", "searchLibrary", ("query", "source"), RANK_GUEST),
    _spec("delete_from_library", "deleteFromLibrary", ("media_id",), RANK_MODERATOR),
)

#: Every command method, by method name (read-only).
COMMANDS: Final[Mapping[str, CommandSpec]] = MappingProxyType({s.method: s for s in _SPECS})

if len(COMMANDS) != len(_SPECS):  # pragma: no cover - guards the table above
    raise RuntimeError("commands: duplicate method in the command table")


@dataclass(frozen=True, slots=True)
class Command:
    """One command, ready to send: a command is data.

    Sending it (correlation id, timestamp, encoding, rate limit, publish) is the client's
    job. ``channel`` is the caller's string (checked: a valid subject token), ``data`` the
    exact ``data`` object of the body (keys in protocol order), ``domain`` the caller's
    override or None (checked, never sent: the body has no domain).
    """

    spec: CommandSpec
    channel: str
    data: dict[str, Any]
    domain: str | None = None

    @property
    def subject(self) -> str:
        """``kryten.commands.cytube.{N(channel)}.{N(action)}``: where the bridge takes it."""
        return command_subject(self.channel, self.spec.action)

    def body(self, correlation_id: str, timestamp: str) -> dict[str, Any]:
        """The body to publish, as ``{"action", "data", "correlation_id", "timestamp"}``."""
        return {
            "action": self.spec.action,
            "data": self.data,
            "correlation_id": correlation_id,
            "timestamp": timestamp,
        }


# --- checks of the commands alone (the shared ones are in _validate) ------------------


def _require_uid(method: str, name: str, value: object) -> int:
    """A playlist uid: a non-negative int (CyTube numbers items from 0)."""
    return require_int(method, name, value, minimum=0)


def _require_code(method: str, name: str, value: object) -> str:
    """Channel CSS/JS: any str (empty clears it) of at most 20 KiB as UTF-8."""
    text = require_text(method, name, value, allow_empty=True)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate
        fail(method, name, f"has text that is not valid Unicode: {exc}", cause=exc)
    if size > MAX_CHANNEL_CODE_BYTES:
        fail(method, name, f"is {size} bytes as UTF-8, over the {MAX_CHANNEL_CODE_BYTES} limit")
    return text


def _optional_reason(method: str, reason: object) -> dict[str, str]:
    """``{"reason": reason}`` when a non-empty reason was given, else ``{}``."""
    if reason is None:
        return {}
    text = require_text(method, "reason", reason, allow_empty=True)
    return {"reason": text} if text else {}


def _filter_data(
    method: str,
    *,
    name: object,
    source: object,
    flags: object,
    replace: object,
    filterlinks: object,
    active: object,
) -> dict[str, Any]:
    flags_text = require_text(method, "flags", flags, allow_empty=True)
    bad = sorted(set(flags_text) - _FILTER_FLAGS)
    if bad or len(set(flags_text)) != len(flags_text):
        fail(method, "flags", f"must be distinct JavaScript regex flags (dgimsuvy), got {flags!r}")
    return {
        "name": require_text(method, "name", name),
        "source": require_text(method, "source", source),
        "flags": flags_text,
        "replace": require_text(method, "replace", replace, allow_empty=True),
        "filterlinks": require_bool(method, "filterlinks", filterlinks),
        "active": require_bool(method, "active", active),
    }


def _make(method: str, channel: str, domain: str | None, /, **data: Any) -> Command:
    """Check ``channel``/``domain`` and the data keys against the table; the Command.

    A key mismatch is a bug in a builder, not in the caller's arguments: RuntimeError.
    """
    spec = COMMANDS.get(method)
    if spec is None:
        raise RuntimeError(f"_make: {method!r} is not in COMMANDS")
    given = set(data)
    required = set(spec.keys)
    if not required <= given or not given <= required | set(spec.optional_keys):
        raise RuntimeError(
            f"{method}: data keys {sorted(given)} do not match the protocol "
            f"(always {list(spec.keys)}, optionally {list(spec.optional_keys)})"
        )
    try:
        channel_token(channel)
    except KrytenValidationError as exc:
        raise KrytenValidationError(f"{method}: {exc}") from exc
    if domain is not None:
        require_text(method, "domain", domain)
        problem = url_problem(domain, "domain")
        if problem is not None:
            raise KrytenValidationError(f"{method}: domain {domain!r} {problem}")
    ordered = {key: data[key] for key in (*spec.keys, *spec.optional_keys) if key in data}
    return Command(spec, channel, ordered, domain)


# --- chat -----------------------------------------------------------------------------


def send_chat(channel: str, message: str, *, domain: str | None = None) -> Command:
    """Send a chat message to the channel.

    Needs rank 0 (anyone); sending it waits for the chat rate limiter. CyTube drops blank
    messages (refused here) and cuts a message to 240 characters.
    """
    require_text("send_chat", "message", message)
    return _make("send_chat", channel, domain, message=message)


def send_pm(channel: str, username: str, message: str, *, domain: str | None = None) -> Command:
    """Send a private message to ``username`` (who must be in the channel).

    Needs rank 0 (anyone signed in); sending it waits for the chat rate limiter.
    """
    require_text("send_pm", "username", username)
    require_text("send_pm", "message", message)
    return _make("send_pm", channel, domain, to=username, message=message)


# --- playlist -------------------------------------------------------------------------


def queue_media(
    channel: str,
    media_type: str,
    media_id: str,
    position: Literal["end", "next"] = "end",
    temp: bool = True,
    *,
    domain: str | None = None,
) -> Command:
    """Queue a media item (``media_type`` e.g. "yt", ``media_id`` its id or URL) without
    waiting: the fire-and-forget form of the client's ``add_media``.

    ``position`` is "end" or "next"; ``temp`` marks it temporary (default True, as
    kryten-py's ``add_media``). Needs rank 1.5 (leader) by default; anyone when the
    playlist is unlocked. The new uid arrives later as a ``queue`` event.
    """
    method = "queue_media"
    require_text(method, "media_type", media_type)
    require_text(method, "media_id", media_id)
    if position not in ("end", "next"):
        fail(method, "position", f"must be 'end' or 'next', got {position!r}")
    require_bool(method, "temp", temp)
    return _make(method, channel, domain, type=media_type, id=media_id, pos=position, temp=temp)


def delete_media(channel: str, uid: int, *, domain: str | None = None) -> Command:
    """Remove the playlist item ``uid``.

    Needs rank 2 (moderator).
    """
    _require_uid("delete_media", "uid", uid)
    return _make("delete_media", channel, domain, uid=uid)


def move_media(
    channel: str,
    uid: int,
    position: int | Literal["prepend", "append"],
    *,
    domain: str | None = None,
) -> Command:
    """Move item ``uid`` after item ``position`` (a uid), or to "prepend"/"append".

    Needs rank 1.5 (leader).
    """
    method = "move_media"
    _require_uid(method, "uid", uid)
    if isinstance(position, str):
        if position not in ("prepend", "append"):
            fail(method, "position", f"must be a uid or 'prepend'/'append', got {position!r}")
    else:
        _require_uid(method, "position", position)
    return _make(method, channel, domain, uid=uid, after=position)


def jump_to(channel: str, uid: int | str, *, domain: str | None = None) -> Command:
    """Play the playlist item ``uid`` now (an int or a string of digits).

    Sent as a string of digits (the bridge rejects an int). Needs rank 1.5 (leader).
    """
    if isinstance(uid, str):
        if not (uid.isascii() and uid.isdigit()):
            fail("jump_to", "uid", f"must be an int or a string of digits, got {uid!r}")
        uid_text = str(int(uid))
    else:
        uid_text = str(_require_uid("jump_to", "uid", uid))
    return _make("jump_to", channel, domain, uid=uid_text)


def clear_playlist(channel: str, *, domain: str | None = None) -> Command:
    """Remove every item from the playlist.

    Needs rank 2 (moderator).
    """
    return _make("clear_playlist", channel, domain)


def shuffle_playlist(channel: str, *, domain: str | None = None) -> Command:
    """Shuffle the playlist.

    Needs rank 2 (moderator).
    """
    return _make("shuffle_playlist", channel, domain)


def set_temp(channel: str, uid: int, is_temp: bool = True, *, domain: str | None = None) -> Command:
    """Mark playlist item ``uid`` temporary (or permanent with ``is_temp=False``).

    Needs rank 2 (moderator).
    """
    _require_uid("set_temp", "uid", uid)
    require_bool("set_temp", "is_temp", is_temp)
    return _make("set_temp", channel, domain, uid=uid, temp=is_temp)


def play_next(channel: str, *, domain: str | None = None) -> Command:
    """Skip to the next playlist item at once (no vote).

    Needs rank 1.5 (leader).
    """
    return _make("play_next", channel, domain)


# --- playback -------------------------------------------------------------------------


def pause(channel: str, *, domain: str | None = None) -> Command:
    """Ask for playback to pause.

    CyTube itself ignores this (the bridge still emits it). Needs rank 1.5 (leader).
    """
    return _make("pause", channel, domain)


def play(channel: str, *, domain: str | None = None) -> Command:
    """Ask for playback to resume.

    CyTube itself ignores this (the bridge still emits it). Needs rank 1.5 (leader).
    """
    return _make("play", channel, domain)


def seek(channel: str, time_seconds: float, *, domain: str | None = None) -> Command:
    """Ask to seek the current media to ``time_seconds`` (finite, not negative).

    CyTube itself ignores this (the bridge still emits it). Needs rank 1.5 (leader).
    """
    require_seconds("seek", "time_seconds", time_seconds)
    return _make("seek", channel, domain, time=time_seconds)


# --- moderation -----------------------------------------------------------------------


def kick_user(
    channel: str,
    username: str,
    reason: str | None = None,
    *,
    domain: str | None = None,
) -> Command:
    """Kick ``username`` out of the channel, with an optional ``reason``.

    ``reason`` is sent only when given and not empty. Needs rank 1.5 (leader).
    """
    require_text("kick_user", "username", username)
    extra = _optional_reason("kick_user", reason)
    return _make("kick_user", channel, domain, username=username, **extra)


def ban_user(
    channel: str,
    username: str,
    reason: str | None = None,
    *,
    domain: str | None = None,
) -> Command:
    """Ban ``username`` from the channel (by name), with an optional ``reason``.

    ``reason`` is sent only when given and not empty. Needs rank 2 (moderator).
    """
    require_text("ban_user", "username", username)
    extra = _optional_reason("ban_user", reason)
    return _make("ban_user", channel, domain, username=username, **extra)


def voteskip(channel: str, *, domain: str | None = None) -> Command:
    """Vote to skip the current media.

    Needs rank 0 (anyone).
    """
    return _make("voteskip", channel, domain)


def assign_leader(channel: str, username: str, *, domain: str | None = None) -> Command:
    """Give ``username`` leader (rank 1.5); ``""`` takes leader away.

    Needs rank 2 (moderator); CyTube kicks a user who tries without it.
    """
    require_text("assign_leader", "username", username, allow_empty=True)
    return _make("assign_leader", channel, domain, username=username)


def mute_user(channel: str, username: str, *, domain: str | None = None) -> Command:
    """Mute ``username`` (they can no longer chat).

    Needs rank 1.5 (leader). The bridge sends it as a ``/mute`` chat command.
    """
    require_text("mute_user", "username", username)
    return _make("mute_user", channel, domain, username=username)


def shadow_mute_user(channel: str, username: str, *, domain: str | None = None) -> Command:
    """Shadow-mute ``username`` (their messages reach only themselves and moderators).

    Needs rank 1.5 (leader). The bridge sends it as a ``/smute`` chat command.
    """
    require_text("shadow_mute_user", "username", username)
    return _make("shadow_mute_user", channel, domain, username=username)


def unmute_user(channel: str, username: str, *, domain: str | None = None) -> Command:
    """Lift a mute or shadow mute from ``username``.

    Needs rank 1.5 (leader). The bridge sends it as a ``/unmute`` chat command.
    """
    require_text("unmute_user", "username", username)
    return _make("unmute_user", channel, domain, username=username)


# --- channel administration -----------------------------------------------------------


def set_motd(channel: str, motd: str, *, domain: str | None = None) -> Command:
    """Set the channel's message of the day (HTML); ``""`` clears it.

    Needs rank 3 (channel admin); CyTube kicks a user who tries without it. CyTube
    keeps the first 20000 characters.
    """
    require_text("set_motd", "motd", motd, allow_empty=True)
    return _make("set_motd", channel, domain, motd=motd)


def set_channel_css(channel: str, css: str, *, domain: str | None = None) -> Command:
    """Replace the channel's custom CSS (at most 20 KiB as UTF-8; ``""`` clears it).

    Needs rank 3 (channel admin); CyTube kicks a user who tries without it.
    """
    _require_code("set_channel_css", "css", css)
    return _make("set_channel_css", channel, domain, css=css)


def set_channel_js(channel: str, js: str, *, domain: str | None = None) -> Command:
    """Replace the channel's custom JavaScript (at most 20 KiB as UTF-8; ``""`` clears it).

    Needs rank 3 (channel admin); CyTube kicks a user who tries without it.
    """
    _require_code("set_channel_js", "js", js)
    return _make("set_channel_js", channel, domain, js=js)


def set_options(channel: str, options: Mapping[str, Any], *, domain: str | None = None) -> Command:
    """Change channel options (e.g. ``{"allow_voteskip": False}``); others stay.

    ``options`` must be JSON-serialisable; a deep copy is sent. Needs rank 2
    (moderator).
    """
    require_mapping("set_options", "options", options)
    copied = json_copy("set_options", "options", options)
    return _make("set_options", channel, domain, options=copied)


def set_permissions(
    channel: str, permissions: Mapping[str, float], *, domain: str | None = None
) -> Command:
    """Change permissions: each key (e.g. "playlistadd") maps to the minimum rank.

    Values must be numbers (CyTube discards anything else). Needs rank 3 (channel
    admin).
    """
    method = "set_permissions"
    require_mapping(method, "permissions", permissions)
    for key, value in permissions.items():
        require_number(method, f"permissions[{key!r}]", value)
    return _make(method, channel, domain, permissions=dict(permissions))


def update_emote(
    channel: str,
    name: str,
    image: str,
    source: str = "imgur",
    *,
    domain: str | None = None,
) -> Command:
    """Add or replace the emote ``name`` (e.g. ":wave:") showing ``image`` (a URL).

    ``source`` is accepted for compatibility and not sent (CyTube emotes have none).
    Needs rank 3 (channel admin).
    """
    require_text("update_emote", "name", name)
    require_text("update_emote", "image", image)
    require_text("update_emote", "source", source, allow_empty=True)
    return _make("update_emote", channel, domain, name=name, image=image)


def remove_emote(channel: str, name: str, *, domain: str | None = None) -> Command:
    """Remove the emote ``name``.

    Needs rank 3 (channel admin).
    """
    require_text("remove_emote", "name", name)
    return _make("remove_emote", channel, domain, name=name)


def add_filter(  # noqa: PLR0917 - the positional signature is the protocol's
    channel: str,
    name: str,
    source: str,
    flags: str,
    replace: str,
    filterlinks: bool = False,
    active: bool = True,
    *,
    domain: str | None = None,
) -> Command:
    """Add chat filter ``name``: JavaScript regex ``source``/``flags`` -> ``replace``.

    Needs rank 3 (channel admin).
    """
    data = _filter_data(
        "add_filter",
        name=name,
        source=source,
        flags=flags,
        replace=replace,
        filterlinks=filterlinks,
        active=active,
    )
    return _make("add_filter", channel, domain, **data)


def update_filter(  # noqa: PLR0917 - the positional signature is the protocol's
    channel: str,
    name: str,
    source: str,
    flags: str,
    replace: str,
    filterlinks: bool = False,
    active: bool = True,
    *,
    domain: str | None = None,
) -> Command:
    """Replace chat filter ``name`` (same arguments as :func:`add_filter`).

    Needs rank 3 (channel admin).
    """
    data = _filter_data(
        "update_filter",
        name=name,
        source=source,
        flags=flags,
        replace=replace,
        filterlinks=filterlinks,
        active=active,
    )
    return _make("update_filter", channel, domain, **data)


def remove_filter(channel: str, name: str, *, domain: str | None = None) -> Command:
    """Remove chat filter ``name``.

    Needs rank 3 (channel admin).
    """
    require_text("remove_filter", "name", name)
    return _make("remove_filter", channel, domain, name=name)


# --- polls ----------------------------------------------------------------------------


def new_poll(
    channel: str,
    title: str,
    options: Sequence[str],
    obscured: bool = False,
    timeout: float = 0,
    *,
    domain: str | None = None,
) -> Command:
    """Open a poll (replacing any open one) with the given option texts.

    ``obscured`` hides the counts until it closes; ``timeout`` closes it after that
    many seconds (0: never). Title and each option: at most 255 characters, options
    not empty. Needs rank 1.5 (leader).
    """
    method = "new_poll"
    require_text(method, "title", title, allow_empty=True, max_chars=MAX_POLL_TEXT)
    if isinstance(options, str | bytes) or not isinstance(options, Sequence):
        fail(method, "options", f"must be a list of str, got {type_name(options)}")
    if not options:
        fail(method, "options", "must not be empty")
    for index, option in enumerate(options):
        require_text(method, f"options[{index}]", option, max_chars=MAX_POLL_TEXT)
    require_bool(method, "obscured", obscured)
    require_seconds(method, "timeout", timeout)
    return _make(
        method,
        channel,
        domain,
        title=title,
        options=list(options),
        obscured=obscured,
        timeout=timeout,
    )


def vote(channel: str, option: int, *, domain: str | None = None) -> Command:
    """Vote for option number ``option`` (from 0) of the open poll.

    Needs rank 0 (anyone).
    """
    require_int("vote", "option", option, minimum=0)
    return _make("vote", channel, domain, option=option)


def close_poll(channel: str, *, domain: str | None = None) -> Command:
    """Close the open poll.

    Needs rank 1.5 (leader).
    """
    return _make("close_poll", channel, domain)


# --- ranks, bans, log, library --------------------------------------------------------


def set_channel_rank(
    channel: str, username: str, rank: int, *, domain: str | None = None
) -> Command:
    """Set the permanent channel rank of ``username`` (an int from 1 to 5).

    CyTube refuses ranks below 1 and ranks not below your own. Needs rank 3
    (channel admin).
    """
    low, high = CHANNEL_RANK_RANGE
    require_text("set_channel_rank", "username", username)
    require_int("set_channel_rank", "rank", rank, minimum=low, maximum=high)
    return _make("set_channel_rank", channel, domain, username=username, rank=rank)


def request_channel_ranks(channel: str, *, domain: str | None = None) -> Command:
    """Ask for the list of ranked users; it arrives as a ``channelRanks`` event.

    Needs rank 3 (channel admin).
    """
    return _make("request_channel_ranks", channel, domain)


def request_banlist(channel: str, *, domain: str | None = None) -> Command:
    """Ask for the ban list; it arrives as a ``banlist`` event.

    Needs rank 2 (moderator).
    """
    return _make("request_banlist", channel, domain)


def unban(channel: str, ban_id: int, name: str, *, domain: str | None = None) -> Command:
    """Lift ban ``ban_id`` (the ``id`` of a banlist entry) on ``name``.

    Needs rank 2 (moderator).
    """
    require_int("unban", "ban_id", ban_id, minimum=0)
    require_text("unban", "name", name)
    return _make("unban", channel, domain, ban_id=ban_id, name=name)


def read_chan_log(channel: str, count: int = 100, *, domain: str | None = None) -> Command:
    """Ask for the channel log; it arrives as a ``readChanLog`` event.

    ``count`` must be at least 1. Needs rank 3 (channel admin); CyTube kicks a user
    who tries without it.
    """
    require_int("read_chan_log", "count", count, minimum=1)
    return _make("read_chan_log", channel, domain, count=count)


def search_library(
    channel: str,
    query: str,
    source: str = "library",
    *,
    domain: str | None = None,
) -> Command:
    """Search the channel library ("library") or YouTube ("yt") for ``query``.

    Results arrive as a ``searchResults`` event. Needs rank 0 (anyone).
    """
    require_text("search_library", "query", query)
    require_text("search_library", "source", source)
    return _make("search_library", channel, domain, query=query, source=source)


def delete_from_library(channel: str, media_id: str, *, domain: str | None = None) -> Command:
    """Delete ``media_id`` from the channel library.

    Needs rank 2 (moderator).
    """
    require_text("delete_from_library", "media_id", media_id)
    return _make("delete_from_library", channel, domain, media_id=media_id)


# --- every builder, by method name ----------------------------------------------------

_BUILDERS_BY_NAME: Final = {
    builder.__name__: builder
    for builder in (
        send_chat,
        send_pm,
        queue_media,
        delete_media,
        move_media,
        jump_to,
        clear_playlist,
        shuffle_playlist,
        set_temp,
        play_next,
        pause,
        play,
        seek,
        kick_user,
        ban_user,
        voteskip,
        assign_leader,
        mute_user,
        shadow_mute_user,
        unmute_user,
        set_motd,
        set_channel_css,
        set_channel_js,
        set_options,
        set_permissions,
        update_emote,
        remove_emote,
        add_filter,
        update_filter,
        remove_filter,
        new_poll,
        vote,
        close_poll,
        set_channel_rank,
        request_channel_ranks,
        request_banlist,
        unban,
        read_chan_log,
        search_library,
        delete_from_library,
    )
}

if _BUILDERS_BY_NAME.keys() != COMMANDS.keys():  # pragma: no cover - guards the list above
    raise RuntimeError("commands: the builders and the command table name different methods")

#: Every builder, by method name, in table order (read-only).
BUILDERS: Final[Mapping[str, Callable[..., Command]]] = MappingProxyType(
    {method: _BUILDERS_BY_NAME[method] for method in COMMANDS}
)


def build(method: str, channel: str, /, *args: Any, **kwargs: Any) -> Command:
    """The Command of ``BUILDERS[method](channel, *args, **kwargs)``.

    An unknown ``method`` raises :class:`~kryten_sync.errors.KrytenValidationError`
    suggesting the closest one.
    """
    builder = BUILDERS.get(method)
    if builder is None:
        close = difflib.get_close_matches(str(method), BUILDERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KrytenValidationError(f"build: unknown command method {method!r}{hint}")
    return builder(channel, *args, **kwargs)


# --- the bridge's side: is a received command what the protocol allows? ---------------

_BY_ACTION: Final[Mapping[str, CommandSpec]] = MappingProxyType(
    {spec.action: spec for spec in COMMANDS.values()}
)
#: The keys of a command body, in the order :meth:`Command.body` writes them.
_BODY_KEYS: Final = ("action", "data", "correlation_id", "timestamp")


def parse(subject: str, body: bytes) -> tuple[dict[str, Any], list[str]]:
    """The decoded command body (``{}`` if unusable) and its problems (protocol section 2).

    Each problem is a departure from the protocol that may make the real bridge drop the
    command: a body that is not a JSON object or whose keys are off, an unknown action,
    a subject not ending in the action's token, ``data`` keys other than the table's,
    a ``jump`` uid that is not a string of digits.
    """
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}, ["body is not valid JSON"]
    if not isinstance(decoded, dict):
        return {}, [f"body is a JSON {type(decoded).__name__}, not an object"]
    problems = [f"body has no {key!r}" for key in _BODY_KEYS if key not in decoded]
    problems += [f"body has unexpected key {key!r}" for key in decoded if key not in _BODY_KEYS]
    action, data = decoded.get("action"), decoded.get("data")
    spec = _BY_ACTION.get(action) if isinstance(action, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(action), _BY_ACTION, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"unknown action {action!r}{hint}")
    elif subject.rsplit(".", 1)[-1] != normalize_token(spec.action):
        problems.append(f"subject {subject!r} does not end in {normalize_token(spec.action)!r}")
    if not isinstance(data, dict):
        problems.append(f"data is a {type(data).__name__}, not an object")
    elif spec is not None:
        allowed = (*spec.keys, *spec.optional_keys)
        problems += [f"data is missing {key!r}" for key in spec.keys if key not in data]
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"data has unexpected key {key!r}{hint}")
        uid = data.get("uid")
        if spec.action == "jump" and not (isinstance(uid, str) and uid.isdigit()):
            problems.append(f"data.uid of 'jump' must be a string of digits, got {uid!r}")
    return decoded, problems


__all__ = [
    "BUILDERS",
    "CHANNEL_RANK_RANGE",
    "COMMANDS",
    "MAX_CHANNEL_CODE_BYTES",
    "MAX_POLL_TEXT",
    "RANK_ADMIN",
    "RANK_GUEST",
    "RANK_LEADER",
    "RANK_MODERATOR",
    "RANK_OWNER",
    "RANK_REGISTERED",
    "Command",
    "CommandSpec",
    "build",
    "parse",
]
