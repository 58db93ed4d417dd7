"""NATS subjects of the Kryten protocol and the token normaliser both sides use.

Everything that goes into a subject is checked before it is normalised: whitespace and
control characters are refused everywhere (NATS would refuse the subject, or, for
``\x0b``/``\x0c``, take it as a different subject nobody listens on), channel names
must be CyTube channel names and event names CyTube event names.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import KrytenValidationError

_REMOVED = frozenset(".*>!@#$%^&()+=[]{|}\\:;\"'<>,?/")
_TRANSLATION = {ord(c): None for c in _REMOVED} | {ord(" "): "-"}
_MAX_TOKEN = 100
#: CyTube creates only channels matching ``^[\w-]{1,30}$`` (ASCII ``\w``).
CHANNEL_RULE = "1-30 ASCII letters, digits, '_' or '-' (CyTube's ^[\\w-]{1,30}$)"
_CHANNEL = re.compile(r"[A-Za-z0-9_-]{1,30}")
#: CyTube's event names are identifiers (``chatMsg``, ``setUserMeta``); 64 leaves room.
EVENT_NAME_RULE = "1-64 ASCII letters, digits, '_' or '-'"
_EVENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

EVENTS_PREFIX = "kryten.events.cytube"
COMMANDS_PREFIX = "kryten.commands.cytube"
ROBOT_COMMAND = "kryten.robot.command"
DISCOVERY_POLL = "kryten.service.discovery.poll"
GROUP_RESTART = "kryten.lifecycle.group.restart"


def normalize_token(value: str) -> str:
    """Return ``value`` as the bridge writes it into a subject token (may be empty).

    Lowercase; ``.`` removed; spaces become ``-``; ``*``, ``>`` and the punctuation
    ``!@#$%^&*()+=[]{|}\\:;"'<>,?/`` removed; at most 100 characters.
    """
    return value.lower().translate(_TRANSLATION)[:_MAX_TOKEN]


def channel_url(value: str) -> tuple[str | None, str | None] | None:
    """``(domain, channel)`` read from a value that looks like a CyTube address, such as
    ``https://cytu.be/r/lounge`` or ``cytu.be/r/lounge`` (either may be None when the
    address lacks it); None when ``value`` does not look like an address."""
    text = value.strip()
    if "://" not in text and "/r/" not in text:
        return None
    parts = urlsplit(text if "://" in text else f"https://{text}")
    path = [part for part in parts.path.split("/") if part]
    channel = path[1] if len(path) >= 2 and path[0] == "r" else None
    return parts.netloc.rpartition("@")[2] or None, channel


def url_problem(value: str, what: str) -> str | None:
    """What is wrong with a channel or domain ``value`` that is a CyTube address, and the
    value to use instead (``what`` names the setting; a domain if it says so); None when
    ``value`` is not an address."""
    found = channel_url(value)
    if found is None:
        return None
    domain, channel = found
    if "domain" in what:
        use = f"the domain {domain!r}" if domain else "the server's host name, e.g. 'cytu.be'"
        also = f" (and the channel {channel!r})" if channel else ""
    else:
        use = f"the channel name {channel!r}" if channel else "the channel's name (NAME in /r/NAME)"
        also = f" (and the domain {domain!r})" if domain else ""
    return f"is a web address: use {use}{also}"


def token(value: str, what: str) -> str:
    """Normalise ``value``; raise :class:`KrytenValidationError` naming ``what`` if it
    is not a str, holds whitespace other than spaces or control characters, is empty
    after normalisation or, for a channel or domain, is a web address
    (``https://cytu.be/r/lounge``)."""
    if not isinstance(value, str):
        raise KrytenValidationError(f"{what} must be a string, got {type(value).__name__}")
    if "/" in value and ("channel" in what or "domain" in what):
        problem = url_problem(value, what)
        if problem is not None:
            raise KrytenValidationError(f"{what} {value!r} {problem}")
    result = normalize_token(value)
    if not result.isprintable():
        raise KrytenValidationError(f"{what} {value!r} contains whitespace or control characters")
    if not result:
        raise KrytenValidationError(f"{what} {value!r} is empty after normalisation")
    return result


def channel_token(value: str, what: str = "channel") -> str:
    """``N(value)`` of a CyTube channel name; KrytenValidationError naming ``what`` and
    the rule if ``value`` cannot be one."""
    if not isinstance(value, str):
        raise KrytenValidationError(f"{what} must be a string, got {type(value).__name__}")
    problem = url_problem(value, what) if "/" in value else None
    if problem is not None:
        raise KrytenValidationError(f"{what} {value!r} {problem}")
    if _CHANNEL.fullmatch(value) is None:
        raise KrytenValidationError(
            f"{what} {value!r} is not a CyTube channel name: {CHANNEL_RULE}"
        )
    return value.lower()


def is_event_name(value: str) -> bool:
    """Whether ``value`` can be a CyTube event name (see EVENT_NAME_RULE)."""
    return _EVENT_NAME.fullmatch(value) is not None


def event_token(value: str, what: str = "event name") -> str:
    """``N(value)`` of a CyTube event name; KrytenValidationError if it cannot be one."""
    if not isinstance(value, str) or not is_event_name(value):
        raise KrytenValidationError(f"{what} {value!r} is not an event name: {EVENT_NAME_RULE}")
    return value.lower()


def subject_piece(value: str, what: str) -> str:
    """``value`` unchanged if it can stand in a subject as given (a configured domain:
    dots allowed, but no whitespace, control characters or wildcards)."""
    if not isinstance(value, str) or not value:
        raise KrytenValidationError(f"{what} must be a non-empty string")
    if not value.isprintable() or " " in value or "*" in value or ">" in value:
        raise KrytenValidationError(
            f"{what} {value!r} contains whitespace, control characters or a wildcard"
        )
    return value


def event_subject(channel: str, event_name: str) -> str:
    """``kryten.events.cytube.{N(channel)}.{N(event_name)}``: where the bridge publishes."""
    return f"{EVENTS_PREFIX}.{channel_token(channel)}.{event_token(event_name)}"


def channel_events_wildcard(channel: str) -> str:
    """``kryten.events.cytube.{N(channel)}.>``: every event of one channel."""
    return f"{EVENTS_PREFIX}.{channel_token(channel)}.>"


def command_subject(channel: str, action: str) -> str:
    """``kryten.commands.cytube.{N(channel)}.{N(action)}``: where the bridge takes commands."""
    return f"{COMMANDS_PREFIX}.{channel_token(channel)}.{token(action, 'action')}"


def user_level_subject(domain: str, channel: str) -> str:
    """``kryten.user_level.{domain}.{channel}``: the bot's rank (configured strings, as is)."""
    return f"kryten.user_level.{domain}.{channel}"


def service_command_subject(service: str) -> str:
    """``kryten.{service}.command``: request/reply of another Kryten service."""
    return f"kryten.{token(service, 'service')}.command"


def lifecycle_subject(service: str, event: str) -> str:
    """``kryten.lifecycle.{service}.{event}`` (startup, heartbeat, shutdown, ...)."""
    return f"kryten.lifecycle.{service}.{event}"


def service_token(name: str) -> str:
    """A service name as one subject token: lowercased, ``.`` and spaces become ``-``."""
    cleaned = name.strip().lower().replace(".", "-").replace(" ", "-")
    if not cleaned or "*" in cleaned or ">" in cleaned or not cleaned.isprintable():
        raise KrytenValidationError(f"service name {name!r} is not a valid subject token")
    return cleaned


def check_subject(subject: object) -> str:
    """``subject`` if it is a usable NATS subject, else KrytenValidationError."""
    # Two C-level checks: this runs on every publish. isprintable() is False for every
    # control, format, surrogate and separator character except the plain space.
    if not isinstance(subject, str) or not subject or not subject.isprintable() or " " in subject:
        raise KrytenValidationError(
            f"invalid NATS subject {subject!r}: empty, or contains whitespace or control characters"
        )
    return subject
