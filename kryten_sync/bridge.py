"""Request/reply with the bridge (docs/protocol.md section 3) and the rank-checked commands.

Every query goes to ``kryten.robot.command`` as ``{"service": "robot", "command", "args",
"meta"}`` and absorbs the bridge's quirks in one place (:meth:`Bridge._bridge`):
``meta`` names the configured domain and channel exactly (the bridge ignores a request
for another channel), ``state.*``/``system.*`` parameters go at the top level, a failure
inside ``data`` raises like an outer ``success: false``, and silence (an unknown command,
or no bridge for that channel) becomes a :class:`~kryten_sync.errors.KrytenTimeoutError`
naming the command. Of a double reply the first is taken.

:meth:`Bridge.send_confirmed` sends a command on the request path instead of its
fire-and-forget subject and waits for the bridge's confirmation, retrying when none comes
(:mod:`kryten_sync.confirm`); :meth:`Bridge.send` picks that way for every command when
``commands.confirm`` is set.

The ``safe_`` methods check the bot's rank (``kryten.user_level.{domain}.{channel}``)
against :data:`~kryten_sync.commands.COMMANDS` before sending a command CyTube would punish
or ignore; they report a missing rank, an unreachable bridge or a failed send in their
result, as kryten-py does.

Signatures and result shapes are kryten-py 0.17.5's where it has the method (the
request/reply form of its ``send_command`` is :meth:`Bridge.service_request` here).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._core.feature import AttachedFeature
from ._validate import require_number
from .commands import BUILDERS, COMMANDS, Command, build
from .confirm import Confirmation, can_confirm, robot_request
from .errors import (
    BridgeError,
    KrytenError,
    KrytenTimeoutError,
    KrytenValidationError,
    NoRespondersError,
    NotConnectedError,
)
from .raw import Message, Payload, check_headers, encode_json, encode_message, utc_timestamp
from .subjects import ROBOT_COMMAND, check_subject, service_command_subject, user_level_subject

if TYPE_CHECKING:
    from .config import KrytenConfig
    from .sending import CommandSender

#: Default seconds to wait for queries the bridge forwards to CyTube (it waits 5 s itself,
#: so a shorter wait would hide its own "CyTube did not respond" answer).
CYTUBE_ROUND_TRIP_TIMEOUT = 8.0

#: What every ``safe_`` method returns (kryten-py's shape): ``{"success": True,
#: "message_id": id}``, or ``{"success": False, "error": text, "rank": bot_rank}`` when the
#: rank is too low (``rank`` 0 when it could not be checked), or ``{"success": False,
#: "error": text}`` when sending failed.
SafeResult = dict[str, Any]

#: Where kryten-py's ``economy_request`` sends (kryten-economy's subject).
ECONOMY_COMMAND = "kryten.economy.command"

_log = logging.getLogger("kryten_sync.bridge")


def _seconds(value: float) -> str:
    return f"{value:g}"


class Bridge(AttachedFeature):
    """Queries answered by the bridge over ``kryten.robot.command`` (the client's query
    and ``safe_`` methods delegate here).

    All methods block. ``timeout`` defaults are kryten-py's where it has the method,
    ``config.request_timeout`` where the default is None; ``domain`` overrides the
    configured domain of ``channel``. A query raises
    :class:`KrytenTimeoutError` (a ``TimeoutError``: no reply, unknown command or no
    bridge for that channel), :class:`NoRespondersError` (no bridge at all) or
    :class:`BridgeError` (a ``ValueError``, as kryten-py raises: the bridge reported a
    failure).

    ``safe_<command>(...)`` exists for every command of rank 2 or more in
    :data:`~kryten_sync.commands.COMMANDS`, with the command's own arguments plus
    kryten-py's ``check_rank=True`` and ``timeout=2.0`` (for the rank check). It checks
    the arguments (KrytenValidationError raises: nothing else does), asks the bot's rank
    unless ``check_rank`` is false, and sends only when the rank suffices. It returns
    ``{"success": True, "message_id": id}``, or ``{"success": False, "error":
    "Insufficient rank: need 3+, have 2", "rank": 2}`` / ``{"success": False, "error":
    "Rank check failed: ...", "rank": 0}`` / ``{"success": False, "error": ...}`` (the
    send failed).
    """

    def __init__(self, config: KrytenConfig, sender: CommandSender) -> None:
        self.config = config
        self._sender = sender

    def request_message(
        self,
        subject: str,
        data: Payload = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Message:
        """Send a request and return the reply message (the client's ``request_message``)."""
        link = self.require()
        wait = self.config.request_timeout if timeout is None else timeout
        payload = encode_message(data)
        return link.request(check_subject(subject), payload, wait, check_headers(headers))

    # --- plumbing -------------------------------------------------------------------

    def _timeout(self, timeout: float | None, default: float | None = None) -> float:
        if timeout is None:
            return default if default is not None else self.config.request_timeout
        return float(
            require_number("bridge query", "timeout", timeout, minimum=0, exclusive_minimum=True)
        )

    def _robot(
        self,
        command: str,
        channel: str | None = None,
        *,
        args: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        domain: str | None = None,
        timeout: float | None = None,
        default_timeout: float | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one robot command and return the reply object as it came.

        ``params`` go at the top level of the request (``state.*``/``system.*``).
        """
        domain, channel = self.config.target(channel, domain)
        wait = self._timeout(timeout, default_timeout)
        request: dict[str, Any] = {
            "service": "robot",
            "command": command,
            "args": dict(args or {}),
            "meta": self._meta(domain, channel, request_id or str(uuid.uuid4())),
        }
        request.update(params or {})
        try:
            msg = self.request_message(ROBOT_COMMAND, request, timeout=wait)
        except NoRespondersError as exc:
            raise NoRespondersError(
                f"bridge command {command!r}: no bridge is subscribed to {ROBOT_COMMAND}"
            ) from exc
        except KrytenTimeoutError as exc:
            raise KrytenTimeoutError(
                f"bridge command {command!r} got no reply within {_seconds(wait)} s "
                f"(unknown command, or no bridge for {domain}/{channel})"
            ) from exc
        try:
            reply = msg.json()
        except ValueError:
            raise BridgeError(
                f"bridge command {command!r}: the reply is not JSON: {msg.data[:80]!r}",
                command=command,
            ) from None
        if not isinstance(reply, dict):
            raise BridgeError(
                f"bridge command {command!r}: the reply is not a JSON object",
                command=command,
                reply=reply,
            )
        return reply

    def _bridge(self, command: str, channel: str | None = None, **options: Any) -> dict[str, Any]:
        """Send one robot command (``options`` as :meth:`_robot`'s) and return its
        ``data`` (see the module docstring)."""
        reply = self._robot(command, channel, **options)
        if reply.get("success") is not True:
            error = reply.get("error") or "the bridge reported a failure without a reason"
            raise BridgeError(
                f"bridge command {command!r} failed: {error}", command=command, reply=reply
            )
        data = reply.get("data")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise BridgeError(
                f"bridge command {command!r}: reply data is not an object",
                command=command,
                reply=reply,
            )
        if data.get("success") is False or data.get("error"):
            error = data.get("error") or data.get("message") or "failed without a reason"
            raise BridgeError(
                f"bridge command {command!r} failed: {error}", command=command, reply=reply
            )
        return data

    @staticmethod
    def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], command: str) -> Any:
        value = data.get(key)
        if not isinstance(value, kind):
            raise BridgeError(
                f"bridge command {command!r}: reply data.{key} is missing or of the wrong "
                f"type ({type(value).__name__})",
                command=command,
                reply={"data": data},
            )
        return value

    def _cytube_round_trip(
        self,
        command: str,
        key: str,
        channel: str,
        args: dict[str, Any],
        *,
        domain: str | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        """The reply ``data`` of a query the bridge answers with CyTube's event: ``{key:
        envelope}``, the envelope's ``payload`` being the answer."""
        data = self._bridge(
            command,
            channel,
            args=args,
            domain=domain,
            timeout=timeout,
            default_timeout=max(self.config.request_timeout, CYTUBE_ROUND_TRIP_TIMEOUT),
        )
        envelope = self._field(data, key, dict, command)
        if "payload" not in envelope:
            raise BridgeError(
                f"bridge command {command!r}: data.{key} has no payload",
                command=command,
                reply={"data": data},
            )
        return data

    # --- commands, confirmed or not ---------------------------------------------------

    def send(self, command: Command) -> str:
        """Send a built command; what the client's command methods do.

        With ``commands.confirm`` set: as :meth:`send_confirmed`, returning its request
        id (a command the bridge cannot confirm is sent fire-and-forget, with a
        warning); otherwise fire-and-forget, returning the correlation id.
        """
        if self.config.commands.confirm:
            if can_confirm(command):
                return self.send_confirmed(command).request_id
            spec = command.spec
            self.require().log.limited(
                f"unconfirmable-{spec.action}",
                "%s is sent without confirmation: the bridge has no request-path command for %r",
                spec.method,
                spec.action,
            )
        return self._sender.send(command)

    def send_confirmed(
        self, command: Command, *, timeout: float | None = None, attempts: int | None = None
    ) -> Confirmation:
        """Send a built command (``kryten_sync.commands.send_chat("lounge", "hi")``, ...)
        on the bridge's request path and return its confirmation.

        The bridge answers after handing the command to CyTube. Without an answer within
        ``timeout`` (default ``commands.confirm_timeout``, else ``request_timeout``; at
        least 8 s for the commands the bridge answers only after CyTube), the same
        request (same ``request_id``) is sent again, up to ``attempts`` in all (default
        ``commands.confirm_attempts``), ``commands.confirm_retry_delay`` seconds apart,
        doubling. This is at-least-once: when an answer was lost rather than the
        request, CyTube gets the command twice. Raises BridgeError with the bridge's
        reason (never retried), KrytenTimeoutError / NoRespondersError naming the
        command after the last attempt, KrytenValidationError for a command the bridge
        cannot confirm (``unmute_user``).
        """
        robot, args = robot_request(command)
        spec = command.spec
        if command.domain is not None:
            self.config.check_command_domain(command.channel, command.domain)
        settings = self.config.commands
        if attempts is None:
            attempts = settings.confirm_attempts
        elif isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise KrytenValidationError(
                f"send_confirmed: attempts must be an int >= 1, got {attempts!r}"
            )
        wait = self._timeout(timeout, settings.confirm_timeout)
        if timeout is None and robot.waits_for_cytube:
            wait = max(wait, CYTUBE_ROUND_TRIP_TIMEOUT)
        link = self.require()
        request_id = str(uuid.uuid4())
        attempt = 1
        while True:
            if spec.rate_limited:  # every attempt reaches CyTube as a chat line
                self._sender.chat_limiter.acquire()
            try:
                data = self._bridge(
                    robot.name,
                    command.channel,
                    args=args,
                    domain=command.domain,
                    timeout=wait,
                    request_id=request_id,
                )
            except BridgeError as exc:
                raise BridgeError(
                    f"{spec.method} not confirmed: {exc}", command=robot.name, reply=exc.reply
                ) from exc
            except (KrytenTimeoutError, NoRespondersError) as exc:
                if attempt >= attempts:
                    raise type(exc)(
                        f"{spec.method} not confirmed after {attempts} attempt"
                        f"{'s' if attempts > 1 else ''}: {exc}"
                    ) from exc
                link.logger.warning(
                    "%s: no confirmation of %r (attempt %d of %d): %s; sending it again",
                    spec.method,
                    robot.name,
                    attempt,
                    attempts,
                    exc,
                )
                time.sleep(settings.confirm_retry_delay * 2 ** (attempt - 1))
                attempt += 1
                continue
            return Confirmation(spec.method, robot.name, request_id, attempt, data)

    # --- system queries (any bridge; ``channel`` picks which) -------------------------

    def ping(
        self,
        timeout: float = 2.0,
        *,
        channel: str | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        """``system.ping``: ``{"pong": True, "version", "uptime_seconds", ...}``."""
        return self._bridge("system.ping", channel, domain=domain, timeout=timeout)

    def get_version(
        self,
        timeout: float = 5.0,
        *,
        channel: str | None = None,
        domain: str | None = None,
    ) -> str:
        """The bridge's version string (``system.version``)."""
        data = self._bridge("system.version", channel, domain=domain, timeout=timeout)
        version: str = self._field(data, "version", str, "system.version")
        return version

    def get_stats(
        self,
        timeout: float = 5.0,
        *,
        channel: str | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        """The bridge's runtime statistics (``system.stats``)."""
        return self._bridge("system.stats", channel, domain=domain, timeout=timeout)

    def get_channels(
        self,
        timeout: float = 5.0,
        *,
        channel: str | None = None,
        domain: str | None = None,
    ) -> list[dict[str, Any]]:
        """The bridge's channels, each ``{"domain", "channel", "connected"}``."""
        data = self._bridge("system.channels", channel, domain=domain, timeout=timeout)
        channels: list[dict[str, Any]] = self._field(data, "channels", list, "system.channels")
        return channels

    def get_services(
        self,
        timeout: float = 5.0,
        *,
        channel: str | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        """The Kryten services the bridge has seen (``system.services``)."""
        return self._bridge("system.services", channel, domain=domain, timeout=timeout)

    def get_config(
        self,
        timeout: float = 5.0,
        *,
        channel: str | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        """The bridge's configuration, secrets redacted (``system.config``)."""
        return self._bridge("system.config", channel, domain=domain, timeout=timeout)

    # --- channel state ----------------------------------------------------------------

    def get_userlist(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """The users in ``channel`` as CyTube describes them (``state.userlist``)."""
        data = self._bridge("state.userlist", channel, domain=domain, timeout=timeout)
        users: list[dict[str, Any]] = self._field(data, "userlist", list, "state.userlist")
        return users

    def get_playlist(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """The playlist items of ``channel`` (``state.playlist``)."""
        data = self._bridge("state.playlist", channel, domain=domain, timeout=timeout)
        items: list[dict[str, Any]] = self._field(data, "playlist", list, "state.playlist")
        return items

    def get_emotes(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """The emotes of ``channel`` (``state.emotes``)."""
        data = self._bridge("state.emotes", channel, domain=domain, timeout=timeout)
        emotes: list[dict[str, Any]] = self._field(data, "emotes", list, "state.emotes")
        return emotes

    def get_motd(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> str:
        """The message of the day of ``channel`` (HTML; ``state.motd``)."""
        data = self._bridge("state.motd", channel, domain=domain, timeout=timeout)
        motd: str = self._field(data, "motd", str, "state.motd")
        return motd

    def get_user(
        self,
        channel: str,
        username: str,
        *,
        domain: str | None = None,
        timeout: float = 2.0,
    ) -> dict[str, Any] | None:
        """The user ``username`` in ``channel`` (``name``, ``rank``, ``profile``, ``meta``),
        or None when not there (``state.user``; its ``profile`` fills in a missing one)."""
        if not isinstance(username, str) or not username.strip():
            raise KrytenValidationError("get_user: username must be a non-empty string")
        data = self._bridge(
            "state.user", channel, params={"username": username}, domain=domain, timeout=timeout
        )
        user = data.get("user")
        if user is None:
            return None
        if not isinstance(user, dict):
            raise BridgeError(
                "bridge command 'state.user': reply data.user is not an object",
                command="state.user",
                reply={"data": data},
            )
        profile = data.get("profile")
        if "profile" not in user and isinstance(profile, dict):
            user = {**user, "profile": profile}
        return user

    def get_all_profiles(
        self, channel: str, *, domain: str | None = None, timeout: float = 2.0
    ) -> dict[str, dict[str, Any]]:
        """Every known profile of ``channel``: username -> ``{"image", "text"}``."""
        data = self._bridge("state.profiles", channel, domain=domain, timeout=timeout)
        profiles: dict[str, dict[str, Any]] = self._field(data, "profiles", dict, "state.profiles")
        return profiles

    # --- actions the bridge confirms ----------------------------------------------------

    def add_media(
        self,
        channel: str,
        media_type: str,
        media_id: str,
        *,
        position: str = "end",
        temp: bool = True,
        domain: str | None = None,
        timeout: float = 8.0,
    ) -> dict[str, Any]:
        """Queue a media item through the bridge (``addvideo``) and return its reply,
        as kryten-py does: ``{"success": True, "uid": uid, ...}`` (``uid`` None when
        CyTube's confirmation did not come in time), or ``{"success": False, "uid": None,
        "error": reason}`` when CyTube refused it (e.g. "playlist is locked"). The bridge's
        own reply keys (``data`` ...) are kept. No reply within ``timeout`` raises
        :class:`KrytenTimeoutError` (a ``TimeoutError``). ``queue_media`` is the form that
        does not wait.
        """
        build("queue_media", channel, media_type, media_id, position, temp, domain=domain)
        args = {"type": media_type, "id": media_id, "pos": position, "temp": temp}
        reply = self._robot("addvideo", channel, args=args, domain=domain, timeout=timeout)
        data = reply.get("data")
        data = data if isinstance(data, dict) else {}
        error = reply.get("error") or data.get("error")
        ok = reply.get("success") is True and data.get("success") is not False and not error
        uid = data.get("uid", reply.get("uid"))
        result = {**reply, "success": ok, "uid": uid if ok else None}
        if not ok:
            result["error"] = str(error or "the bridge reported a failure without a reason")
        return result

    def add_media_and_wait(
        self,
        channel: str,
        media_type: str,
        media_id: str,
        position: Literal["end", "next"] = "end",
        temp: bool = False,
        *,
        domain: str | None = None,
        timeout: float = 10,
    ) -> int:
        """Queue a media item through the bridge and return the uid CyTube gave it.

        Like ``add_media``, but a refusal (e.g. "playlist is locked") raises
        :class:`BridgeError` with CyTube's reason, and so does a reply without a uid.
        """
        build("queue_media", channel, media_type, media_id, position, temp, domain=domain)
        args = {"type": media_type, "id": media_id, "pos": position, "temp": temp}
        data = self._bridge("addvideo", channel, args=args, domain=domain, timeout=timeout)
        uid = data.get("uid")
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise BridgeError(
                f"bridge command 'addvideo': no uid in the reply (got {uid!r})",
                command="addvideo",
                reply={"data": data},
            )
        return uid

    def unban(
        self, channel: str, ban_id: int, name: str | None = None, *, domain: str | None = None
    ) -> str:
        """Lift ban ``ban_id`` (the ``id`` of a ban list entry); returns the correlation id.

        The bridge needs the banned ``name`` too: without it, it is looked up in the
        channel's ban list first (:meth:`ban_name`; an unknown id raises
        KrytenValidationError). Needs rank 2 (moderator).
        """
        if name is None:
            name = self.ban_name(channel, ban_id, domain=domain)
        return self._sender.send(build("unban", channel, ban_id, name, domain=domain))

    def ban_name(self, channel: str, ban_id: int, *, domain: str | None = None) -> str:
        """The user name of ban ``ban_id``, from the channel's ban list (``unban`` needs
        it); KrytenValidationError if the ban list has no such ban."""
        build("unban", channel, ban_id, "-", domain=domain)  # checks ban_id and channel
        envelope = self.get_banlist(channel, domain=domain)["banlist"]
        bans = envelope.get("payload")
        for ban in bans if isinstance(bans, list) else []:
            if isinstance(ban, dict) and ban.get("id") == ban_id:
                name = ban.get("name")
                if isinstance(name, str) and name:
                    return name
        count = len(bans) if isinstance(bans, list) else 0
        raise KrytenValidationError(
            f"unban: no ban with id {ban_id} in the ban list of {channel} ({count} bans); "
            "pass name= to unban without looking it up"
        )

    def get_banlist(
        self, channel: str, *, domain: str | None = None, timeout: float = CYTUBE_ROUND_TRIP_TIMEOUT
    ) -> dict[str, Any]:
        """``{"banlist": envelope}`` as kryten-py returns it: the ban list is
        ``["banlist"]["payload"]`` (the ``banlist`` event's payload; needs rank 2)."""
        return self._cytube_round_trip(
            "requestBanlist", "banlist", channel, {}, domain=domain, timeout=timeout
        )

    def get_channel_ranks(
        self, channel: str, *, domain: str | None = None, timeout: float = CYTUBE_ROUND_TRIP_TIMEOUT
    ) -> dict[str, Any]:
        """``{"ranks": envelope}``: the ranked users are ``["ranks"]["payload"]`` (the
        ``channelRanks`` event's payload; needs rank 3)."""
        return self._cytube_round_trip(
            "requestChannelRanks", "ranks", channel, {}, domain=domain, timeout=timeout
        )

    def get_chan_log(
        self,
        channel: str,
        count: int = 100,
        *,
        domain: str | None = None,
        timeout: float = CYTUBE_ROUND_TRIP_TIMEOUT,
    ) -> dict[str, Any]:
        """``{"log": envelope}``: the channel log is ``["log"]["payload"]`` (the
        ``readChanLog`` event's payload; needs rank 3)."""
        build("read_chan_log", channel, count, domain=domain)
        return self._cytube_round_trip(
            "readChanLog", "log", channel, {"count": count}, domain=domain, timeout=timeout
        )

    def get_library_search(
        self,
        channel: str,
        query: str,
        source: str = "library",
        *,
        domain: str | None = None,
        timeout: float = CYTUBE_ROUND_TRIP_TIMEOUT,
    ) -> dict[str, Any]:
        """``{"results": envelope}`` for ``query`` in the channel library
        (``source="library"``) or on YouTube (``"yt"``): the results are
        ``["results"]["payload"]`` (the ``searchResults`` event's payload)."""
        build("search_library", channel, query, source, domain=domain)
        args = {"query": query, "source": source}
        return self._cytube_round_trip(
            "searchLibrary", "results", channel, args, domain=domain, timeout=timeout
        )

    # --- channel state the bridge answers ----------------------------------------------

    def get_state_channel_options(
        self, channel: str, *, domain: str | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The channel options (``state.options``; ``{}`` when the bridge has none)."""
        return self._state_object("state.options", "options", channel, domain, timeout)

    def get_state_channel_permissions(
        self, channel: str, *, domain: str | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The channel permissions, name to rank (``state.permissions``)."""
        return self._state_object("state.permissions", "permissions", channel, domain, timeout)

    def _state_object(
        self, command: str, key: str, channel: str, domain: str | None, timeout: float
    ) -> dict[str, Any]:
        data = self._bridge(command, channel, domain=domain, timeout=timeout)
        value: dict[str, Any] = self._field({key: {}, **data}, key, dict, command)
        return value

    def get_user_profile(
        self, channel: str, username: str, *, domain: str | None = None, timeout: float = 2.0
    ) -> dict[str, Any] | None:
        """The profile (``{"image", "text"}``) of ``username`` from ``state.user``, or
        None when there is none or the query failed (as kryten-py: the failure is logged,
        not raised; only a missing connection raises)."""
        try:
            data = self._bridge(
                "state.user",
                channel,
                params={"username": username},
                domain=domain,
                timeout=timeout,
            )
        except NotConnectedError:
            raise
        except KrytenError as exc:
            _log.warning("profile query for %r in %s failed: %s", username, channel, exc)
            return None
        profile = data.get("profile")
        return profile if isinstance(profile, dict) else None

    # --- system commands ------------------------------------------------------------

    def reload_config(self, config_path: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Make the bridge reload its configuration (``system.reload``, from
        ``config_path`` or its own file); returns ``data`` (``success``, ``message``,
        ``changes``, ``errors``). A reload the bridge refuses raises BridgeError."""
        params = {"config_path": config_path} if config_path else {}
        return self._bridge("system.reload", params=params, timeout=timeout)

    def shutdown(
        self,
        delay_seconds: int = 0,
        reason: str = "Remote shutdown via client",
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Make the bridge shut down in ``delay_seconds`` (an int, 0-300;
        ``system.shutdown``); returns ``data`` (``message``, ``shutdown_time``, ...)."""
        if (
            isinstance(delay_seconds, bool)
            or not isinstance(delay_seconds, int)
            or not 0 <= delay_seconds <= 300
        ):
            raise KrytenValidationError(
                f"shutdown: delay_seconds must be an integer between 0 and 300, "
                f"got {delay_seconds!r}"
            )
        params = {"delay_seconds": delay_seconds, "reason": reason}
        return self._bridge("system.shutdown", params=params, timeout=timeout)

    # --- raw JSON requests, other services and the bot's rank ---------------------------

    def nats_request(
        self, subject: str, request: dict[str, Any], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send ``request`` as JSON on ``subject`` and return the decoded reply; a reply
        that is not JSON raises BridgeError (a ValueError), none in time
        KrytenTimeoutError (a TimeoutError)."""
        body = encode_json(request, "nats_request: request")
        msg = self.request_message(subject, body, timeout=self._timeout(timeout))
        try:
            reply: dict[str, Any] = msg.json()
        except ValueError:
            raise BridgeError(
                f"nats_request({subject!r}): the reply is not JSON: {msg.data[:80]!r}"
            ) from None
        return reply

    def economy_request(
        self, channel: str, command: str, payload: dict[str, Any], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Request ``command`` of kryten-economy on ``kryten.economy.command`` with
        ``payload``'s keys at the top level next to ``command`` and ``channel``; returns
        its raw reply (``success``, ``data`` or ``error``)."""
        envelope: dict[str, Any] = {"command": command, "channel": channel, **payload}
        return self.nats_request(ECONOMY_COMMAND, envelope, timeout)

    def send_command(
        self,
        service: str,
        type: str,
        body: Any,
        domain: str | None = None,
        channel: str = "lounge",
    ) -> str:
        """Publish command ``type`` to the Kryten service ``service`` without waiting
        (kryten-py's form): ``{"command", "args", "meta"}`` on ``kryten.{service}.command``,
        ``args`` being ``body`` (a dict) or ``{"value": body}``; returns ``meta``'s
        ``request_id``. ``meta`` names ``channel`` as configured (``domain``: its
        configured domain when None). :meth:`service_request` waits for a reply."""
        subject = service_command_subject(service)
        if not isinstance(type, str) or not type.strip():
            raise KrytenValidationError("send_command: type must be a non-empty string")
        domain, channel = self.config.target(channel, domain)
        request_id = str(uuid.uuid4())
        payload = {
            "command": type,
            "args": body if isinstance(body, dict) else {"value": body},
            "meta": self._meta(domain, channel, request_id),
        }
        self._sender.publish(subject, encode_json(payload, "send_command: body"), type)
        return request_id

    def _meta(self, domain: str, channel: str, request_id: str) -> dict[str, Any]:
        service = self.config.service
        return {
            "source": service.name if service is not None else "kryten-sync",
            "timestamp": utc_timestamp(),
            "domain": domain,
            "channel": channel,
            "request_id": request_id,
        }

    def service_request(
        self,
        service: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Request ``command`` of the Kryten service ``service`` on ``kryten.{service}.command``
        and return its decoded reply (whatever its ``success``)."""
        subject = service_command_subject(service)
        if not isinstance(command, str) or not command.strip():
            raise KrytenValidationError("service_request: command must be a non-empty string")
        wait = self._timeout(timeout)
        body = {"service": service, "command": command, "args": dict(args or {})}
        try:
            msg = self.request_message(subject, body, timeout=wait)
        except NoRespondersError as exc:
            raise NoRespondersError(
                f"{service} command {command!r}: nothing is subscribed to {subject}"
            ) from exc
        except KrytenTimeoutError as exc:
            raise KrytenTimeoutError(
                f"{service} command {command!r} got no reply on {subject} within {_seconds(wait)} s"
            ) from exc
        try:
            reply = msg.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise BridgeError(
                f"{service} command {command!r}: the reply is not a JSON object",
                command=command,
                reply=reply,
            )
        return reply

    def _rank_reply(
        self, channel: str, domain: str | None, timeout: float | None
    ) -> dict[str, Any]:
        """The bridge's answer on ``kryten.user_level.{domain}.{channel}``, checked to
        carry a numeric ``rank``; raises like :meth:`get_bot_rank`."""
        domain, channel = self.config.target(channel, domain)
        subject = user_level_subject(domain, channel)
        if any(c in subject for c in " \t\r\n*>"):
            raise KrytenValidationError(
                f"get_bot_rank: {subject!r} is not a usable subject (channel or domain "
                "contains whitespace or a wildcard)"
            )
        wait = self._timeout(timeout)
        try:
            msg = self.request_message(subject, {}, timeout=wait)
        except NoRespondersError as exc:
            raise NoRespondersError(f"no bridge is subscribed to {subject}") from exc
        except KrytenTimeoutError as exc:
            raise KrytenTimeoutError(
                f"no bridge answered {subject} within {_seconds(wait)} s"
            ) from exc
        try:
            reply = json.loads(msg.data)
        except ValueError:
            reply = None
        rank = reply.get("rank") if isinstance(reply, dict) else None
        if (
            not isinstance(reply, dict)
            or reply.get("success") is not True
            or (isinstance(rank, bool) or not isinstance(rank, int | float))
        ):
            error = reply.get("error") if isinstance(reply, dict) else None
            reason = error if isinstance(error, str) and error else repr(msg.data[:80])
            raise BridgeError(
                f"{subject} answered without a rank: {reason}",
                command="user_level",
                reply=reply,
            )
        return reply

    def get_bot_rank(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> float:
        """The bot's CyTube rank in ``channel``, asked on ``kryten.user_level.{domain}.{channel}``.

        Raises KrytenTimeoutError / NoRespondersError naming the subject when no bridge
        answers, BridgeError when it answers without a rank.
        """
        return float(self._rank_reply(channel, domain, timeout)["rank"])

    def get_user_level(
        self, channel: str, *, domain: str | None = None, timeout: float = 2.0
    ) -> dict[str, Any]:
        """The bridge's answer about the bot, as kryten-py returns it: ``{"success": True,
        "rank": 2, "username": "bot"}``, or ``{"success": False, "error": reason}``;
        never raises."""
        try:
            return self._rank_reply(channel, domain, timeout)
        except (KrytenError, ValueError) as exc:
            return {"success": False, "error": str(exc)}

    # --- rank-checked commands ---------------------------------------------------------

    def _safe(
        self,
        method: str,
        channel: str,
        domain: str | None,
        check_rank: bool,
        timeout: float,
        /,
        *args: Any,
    ) -> SafeResult:
        """Check the arguments (they alone raise), then the bot's rank against
        ``COMMANDS[method].min_rank`` unless ``check_rank`` is false, then send."""
        need = COMMANDS[method].min_rank
        command = BUILDERS[method](channel, *args, domain=domain)
        if check_rank:
            try:
                rank = self._rank_reply(channel, domain, timeout)["rank"]
            except KrytenError as exc:
                return {"success": False, "error": f"Rank check failed: {exc}", "rank": 0}
            if rank < need:
                return {
                    "success": False,
                    "error": f"Insufficient rank: need {need:g}+, have {rank:g}",
                    "rank": rank,
                }
        try:
            return {"success": True, "message_id": self.send(command)}
        except KrytenError as exc:
            return {"success": False, "error": str(exc)}

    def safe_delete_media(
        self,
        channel: str,
        uid: int,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``delete_media`` after checking the bot's rank."""
        return self._safe("delete_media", channel, domain, check_rank, timeout, uid)

    def safe_clear_playlist(
        self,
        channel: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``clear_playlist`` after checking the bot's rank."""
        return self._safe("clear_playlist", channel, domain, check_rank, timeout)

    def safe_shuffle_playlist(
        self,
        channel: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``shuffle_playlist`` after checking the bot's rank."""
        return self._safe("shuffle_playlist", channel, domain, check_rank, timeout)

    def safe_set_temp(
        self,
        channel: str,
        uid: int,
        is_temp: bool = True,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_temp`` after checking the bot's rank."""
        return self._safe("set_temp", channel, domain, check_rank, timeout, uid, is_temp)

    def safe_ban_user(
        self,
        channel: str,
        username: str,
        reason: str | None = None,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``ban_user`` after checking the bot's rank."""
        return self._safe("ban_user", channel, domain, check_rank, timeout, username, reason)

    def safe_assign_leader(
        self,
        channel: str,
        username: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``assign_leader`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("assign_leader", channel, domain, check_rank, timeout, username)

    def safe_set_motd(
        self,
        channel: str,
        motd: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_motd`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("set_motd", channel, domain, check_rank, timeout, motd)

    def safe_set_channel_css(
        self,
        channel: str,
        css: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_channel_css`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("set_channel_css", channel, domain, check_rank, timeout, css)

    def safe_set_channel_js(
        self,
        channel: str,
        js: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_channel_js`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("set_channel_js", channel, domain, check_rank, timeout, js)

    def safe_set_options(
        self,
        channel: str,
        options: Mapping[str, Any],
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_options`` after checking the bot's rank."""
        return self._safe("set_options", channel, domain, check_rank, timeout, options)

    def safe_set_permissions(
        self,
        channel: str,
        permissions: Mapping[str, float],
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_permissions`` after checking the bot's rank."""
        return self._safe("set_permissions", channel, domain, check_rank, timeout, permissions)

    def safe_update_emote(
        self,
        channel: str,
        name: str,
        image: str,
        source: str = "imgur",
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``update_emote`` after checking the bot's rank."""
        return self._safe("update_emote", channel, domain, check_rank, timeout, name, image, source)

    def safe_remove_emote(
        self,
        channel: str,
        name: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``remove_emote`` after checking the bot's rank."""
        return self._safe("remove_emote", channel, domain, check_rank, timeout, name)

    def safe_add_filter(  # noqa: PLR0917 - mirrors add_filter
        self,
        channel: str,
        name: str,
        source: str,
        flags: str,
        replace: str,
        filterlinks: bool = False,
        active: bool = True,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``add_filter`` after checking the bot's rank."""
        return self._safe(
            "add_filter",
            channel,
            domain,
            check_rank,
            timeout,
            name,
            source,
            flags,
            replace,
            filterlinks,
            active,
        )

    def safe_update_filter(  # noqa: PLR0917 - mirrors update_filter
        self,
        channel: str,
        name: str,
        source: str,
        flags: str,
        replace: str,
        filterlinks: bool = False,
        active: bool = True,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``update_filter`` after checking the bot's rank."""
        return self._safe(
            "update_filter",
            channel,
            domain,
            check_rank,
            timeout,
            name,
            source,
            flags,
            replace,
            filterlinks,
            active,
        )

    def safe_remove_filter(
        self,
        channel: str,
        name: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``remove_filter`` after checking the bot's rank."""
        return self._safe("remove_filter", channel, domain, check_rank, timeout, name)

    def safe_set_channel_rank(
        self,
        channel: str,
        username: str,
        rank: int,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``set_channel_rank`` after checking the bot's rank."""
        return self._safe("set_channel_rank", channel, domain, check_rank, timeout, username, rank)

    def safe_request_channel_ranks(
        self,
        channel: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``request_channel_ranks`` after checking the bot's rank."""
        return self._safe("request_channel_ranks", channel, domain, check_rank, timeout)

    def safe_request_banlist(
        self,
        channel: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``request_banlist`` after checking the bot's rank."""
        return self._safe("request_banlist", channel, domain, check_rank, timeout)

    def safe_unban(
        self,
        channel: str,
        ban_id: int,
        name: str | None = None,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``unban`` after checking the bot's rank (without ``name``, it is looked up in
        the ban list first: an unknown ``ban_id`` raises, like a bad argument)."""
        if name is None:
            name = self.ban_name(channel, ban_id, domain=domain)
        return self._safe("unban", channel, domain, check_rank, timeout, ban_id, name)

    def safe_read_chan_log(
        self,
        channel: str,
        count: int = 100,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``read_chan_log`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("read_chan_log", channel, domain, check_rank, timeout, count)

    def safe_delete_from_library(
        self,
        channel: str,
        media_id: str,
        *,
        domain: str | None = None,
        check_rank: bool = True,
        timeout: float = 2.0,
    ) -> SafeResult:
        """``delete_from_library`` after checking the bot's rank."""
        return self._safe("delete_from_library", channel, domain, check_rank, timeout, media_id)


__all__ = ["CYTUBE_ROUND_TRIP_TIMEOUT", "ECONOMY_COMMAND", "Bridge", "BridgeError", "SafeResult"]
