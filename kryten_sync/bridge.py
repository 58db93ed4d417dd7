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
or ignore; they report a missing rank or an unreachable bridge in their result.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._core.feature import AttachedFeature
from ._validate import require_number
from .commands import BUILDERS, COMMANDS, Command, build
from .confirm import Confirmation, can_confirm, robot_request
from .errors import BridgeError, KrytenTimeoutError, KrytenValidationError, NoRespondersError
from .raw import Message, Payload, encode_message, utc_timestamp
from .subjects import ROBOT_COMMAND, check_subject, service_command_subject, user_level_subject

if TYPE_CHECKING:
    from .config import KrytenConfig
    from .sending import CommandSender

#: Default seconds to wait for queries the bridge forwards to CyTube (it waits 5 s itself,
#: so a shorter wait would hide its own "CyTube did not respond" answer).
CYTUBE_ROUND_TRIP_TIMEOUT = 8.0

#: What every ``safe_`` method returns: ``{"success": True, "message_id": id}`` or
#: ``{"success": False, "error": text, "rank": bot_rank_or_None}``.
SafeResult = dict[str, Any]


def _seconds(value: float) -> str:
    return f"{value:g}"


class Bridge(AttachedFeature):
    """Queries answered by the bridge over ``kryten.robot.command`` (the client's query
    and ``safe_`` methods delegate here).

    All methods block. ``timeout`` defaults to ``config.request_timeout``; ``domain``
    overrides the configured domain of ``channel``. A query raises
    :class:`KrytenTimeoutError` (no reply: unknown command or no bridge for that
    channel), :class:`NoRespondersError` (no bridge at all) or :class:`BridgeError` (the
    bridge reported a failure).

    ``safe_<command>(...)`` exists for every command of rank 2 or more in
    :data:`~kryten_sync.commands.COMMANDS`, with the command's own arguments plus
    ``timeout`` (for the rank check). It checks the arguments (KrytenValidationError
    raises), asks the bot's rank, and sends only when the rank suffices. It returns
    ``{"success": True, "message_id": id}``, or without raising
    ``{"success": False, "error": "insufficient rank: need 3, have 2", "rank": 2.0}`` /
    ``{"success": False, "error": "rank check failed: ...", "rank": None}``.
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
        return link.request(check_subject(subject), encode_message(data), wait, headers)

    # --- plumbing -------------------------------------------------------------------

    def _timeout(self, timeout: float | None, default: float | None = None) -> float:
        if timeout is None:
            return default if default is not None else self.config.request_timeout
        return float(
            require_number("bridge query", "timeout", timeout, minimum=0, exclusive_minimum=True)
        )

    def _bridge(
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
        """Send one robot command and return its ``data`` (see the module docstring).

        ``params`` go at the top level of the request (``state.*``/``system.*``).
        """
        domain, channel = self.config.target(channel, domain)
        wait = self._timeout(timeout, default_timeout)
        service = self.config.service
        request: dict[str, Any] = {
            "service": "robot",
            "command": command,
            "args": dict(args or {}),
            "meta": {
                "source": service.name if service is not None else "kryten-sync",
                "timestamp": utc_timestamp(),
                "domain": domain,
                "channel": channel,
                "request_id": request_id or str(uuid.uuid4()),
            },
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

    def _envelope_payload(
        self,
        command: str,
        key: str,
        channel: str,
        args: dict[str, Any],
        *,
        domain: str | None,
        timeout: float | None,
    ) -> Any:
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
        return envelope["payload"]

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
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """``system.ping``: ``{"pong": True, "version", "uptime_seconds", ...}``."""
        return self._bridge("system.ping", channel, domain=domain, timeout=timeout)

    def get_version(
        self,
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """The bridge's version string (``system.version``)."""
        data = self._bridge("system.version", channel, domain=domain, timeout=timeout)
        version: str = self._field(data, "version", str, "system.version")
        return version

    def get_stats(
        self,
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The bridge's runtime statistics (``system.stats``)."""
        return self._bridge("system.stats", channel, domain=domain, timeout=timeout)

    def get_channels(
        self,
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """The bridge's channels, each ``{"domain", "channel", "connected"}``."""
        data = self._bridge("system.channels", channel, domain=domain, timeout=timeout)
        channels: list[dict[str, Any]] = self._field(data, "channels", list, "system.channels")
        return channels

    def get_services(
        self,
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The Kryten services the bridge has seen (``system.services``)."""
        return self._bridge("system.services", channel, domain=domain, timeout=timeout)

    def get_config(
        self,
        *,
        channel: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
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
        timeout: float | None = None,
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
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """Every known profile of ``channel``: username -> ``{"image", "text"}``."""
        data = self._bridge("state.profiles", channel, domain=domain, timeout=timeout)
        profiles: dict[str, dict[str, Any]] = self._field(data, "profiles", dict, "state.profiles")
        return profiles

    # --- actions the bridge confirms ----------------------------------------------------

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

        Same arguments as ``add_media``. The bridge waits up to 8 s for CyTube; a refusal
        (e.g. "playlist is locked") raises :class:`BridgeError` with CyTube's reason.
        """
        build("add_media", channel, media_type, media_id, position, temp, domain=domain)
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

    def get_banlist(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> Any:
        """The ban list (the ``banlist`` event's payload; needs rank 2)."""
        return self._envelope_payload(
            "requestBanlist", "banlist", channel, {}, domain=domain, timeout=timeout
        )

    def get_channel_ranks(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> Any:
        """The ranked users (the ``channelRanks`` event's payload; needs rank 3)."""
        return self._envelope_payload(
            "requestChannelRanks", "ranks", channel, {}, domain=domain, timeout=timeout
        )

    def get_chan_log(
        self,
        channel: str,
        count: int = 100,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The channel log (the ``readChanLog`` event's payload; needs rank 3)."""
        build("read_chan_log", channel, count, domain=domain)
        return self._envelope_payload(
            "readChanLog", "log", channel, {"count": count}, domain=domain, timeout=timeout
        )

    def get_library_search(
        self,
        channel: str,
        query: str,
        source: str = "library",
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Search results (the ``searchResults`` event's payload) for ``query`` in the
        channel library (``source="library"``) or on YouTube (``"yt"``)."""
        build("search_library", channel, query, source, domain=domain)
        args = {"query": query, "source": source}
        return self._envelope_payload(
            "searchLibrary", "results", channel, args, domain=domain, timeout=timeout
        )

    # --- other services and the bot's rank ---------------------------------------------

    def send_command(
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
            raise KrytenValidationError("send_command: command must be a non-empty string")
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

    def get_bot_rank(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> float:
        """The bot's CyTube rank in ``channel``, asked on ``kryten.user_level.{domain}.{channel}``.

        Raises KrytenTimeoutError / NoRespondersError naming the subject when no bridge
        answers, BridgeError when it answers without a rank.
        """
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
        return float(rank)

    # --- rank-checked commands ---------------------------------------------------------

    def _safe(
        self,
        method: str,
        channel: str,
        domain: str | None,
        timeout: float | None,
        /,
        *args: Any,
    ) -> SafeResult:
        """Check arguments, then the bot's rank against ``COMMANDS[method].min_rank``,
        then send. Only argument errors (and a missing connection) raise."""
        need = COMMANDS[method].min_rank
        command = BUILDERS[method](channel, *args, domain=domain)
        try:
            rank = self.get_bot_rank(channel, domain=domain, timeout=timeout)
        except (KrytenTimeoutError, NoRespondersError, BridgeError) as exc:
            return {"success": False, "error": f"rank check failed: {exc}", "rank": None}
        if rank < need:
            return {
                "success": False,
                "error": f"insufficient rank: need {need:g}, have {rank:g}",
                "rank": rank,
            }
        return {"success": True, "message_id": self.send(command)}

    def safe_delete_media(
        self,
        channel: str,
        uid: int,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``delete_media`` after checking the bot's rank."""
        return self._safe("delete_media", channel, domain, timeout, uid)

    def safe_clear_playlist(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> SafeResult:
        """``clear_playlist`` after checking the bot's rank."""
        return self._safe("clear_playlist", channel, domain, timeout)

    def safe_shuffle_playlist(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> SafeResult:
        """``shuffle_playlist`` after checking the bot's rank."""
        return self._safe("shuffle_playlist", channel, domain, timeout)

    def safe_set_temp(
        self,
        channel: str,
        uid: int,
        is_temp: bool = True,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_temp`` after checking the bot's rank."""
        return self._safe("set_temp", channel, domain, timeout, uid, is_temp)

    def safe_ban_user(
        self,
        channel: str,
        username: str,
        reason: str | None = None,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``ban_user`` after checking the bot's rank."""
        return self._safe("ban_user", channel, domain, timeout, username, reason)

    def safe_assign_leader(
        self,
        channel: str,
        username: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``assign_leader`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("assign_leader", channel, domain, timeout, username)

    def safe_set_motd(
        self,
        channel: str,
        motd: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_motd`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("set_motd", channel, domain, timeout, motd)

    def safe_set_channel_css(
        self,
        channel: str,
        css: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_channel_css`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("set_channel_css", channel, domain, timeout, css)

    def safe_set_channel_js(
        self,
        channel: str,
        js: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_channel_js`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("set_channel_js", channel, domain, timeout, js)

    def safe_set_options(
        self,
        channel: str,
        options: Mapping[str, Any],
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_options`` after checking the bot's rank."""
        return self._safe("set_options", channel, domain, timeout, options)

    def safe_set_permissions(
        self,
        channel: str,
        permissions: Mapping[str, float],
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_permissions`` after checking the bot's rank."""
        return self._safe("set_permissions", channel, domain, timeout, permissions)

    def safe_update_emote(
        self,
        channel: str,
        name: str,
        image: str,
        source: str = "imgur",
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``update_emote`` after checking the bot's rank."""
        return self._safe("update_emote", channel, domain, timeout, name, image, source)

    def safe_remove_emote(
        self,
        channel: str,
        name: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``remove_emote`` after checking the bot's rank."""
        return self._safe("remove_emote", channel, domain, timeout, name)

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
        timeout: float | None = None,
    ) -> SafeResult:
        """``add_filter`` after checking the bot's rank."""
        return self._safe(
            "add_filter",
            channel,
            domain,
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
        timeout: float | None = None,
    ) -> SafeResult:
        """``update_filter`` after checking the bot's rank."""
        return self._safe(
            "update_filter",
            channel,
            domain,
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
        timeout: float | None = None,
    ) -> SafeResult:
        """``remove_filter`` after checking the bot's rank."""
        return self._safe("remove_filter", channel, domain, timeout, name)

    def safe_set_channel_rank(
        self,
        channel: str,
        username: str,
        rank: int,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``set_channel_rank`` after checking the bot's rank."""
        return self._safe("set_channel_rank", channel, domain, timeout, username, rank)

    def safe_request_channel_ranks(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> SafeResult:
        """``request_channel_ranks`` after checking the bot's rank."""
        return self._safe("request_channel_ranks", channel, domain, timeout)

    def safe_request_banlist(
        self, channel: str, *, domain: str | None = None, timeout: float | None = None
    ) -> SafeResult:
        """``request_banlist`` after checking the bot's rank."""
        return self._safe("request_banlist", channel, domain, timeout)

    def safe_unban(
        self,
        channel: str,
        ban_id: int,
        name: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``unban`` after checking the bot's rank."""
        return self._safe("unban", channel, domain, timeout, ban_id, name)

    def safe_read_chan_log(
        self,
        channel: str,
        count: int = 100,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``read_chan_log`` after checking the bot's rank (CyTube kicks a bot without it)."""
        return self._safe("read_chan_log", channel, domain, timeout, count)

    def safe_delete_from_library(
        self,
        channel: str,
        media_id: str,
        *,
        domain: str | None = None,
        timeout: float | None = None,
    ) -> SafeResult:
        """``delete_from_library`` after checking the bot's rank."""
        return self._safe("delete_from_library", channel, domain, timeout, media_id)


__all__ = ["CYTUBE_ROUND_TRIP_TIMEOUT", "Bridge", "BridgeError", "SafeResult"]
