"""NATS subjects of the Kryten protocol and the token normaliser both sides use."""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import KrytenValidationError

_REMOVED = frozenset(".*>!@#$%^&()+=[]{|}\\:;\"'<>,?/")
_TRANSLATION = {ord(c): None for c in _REMOVED} | {ord(" "): "-"}
_MAX_TOKEN = 100

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
    """Normalise ``value``; raise :class:`KrytenValidationError` naming ``what`` if empty
    or, for a channel or domain, a web address (``https://cytu.be/r/lounge``)."""
    if not isinstance(value, str):
        raise KrytenValidationError(f"{what} must be a string, got {type(value).__name__}")
    if "/" in value and ("channel" in what or "domain" in what):
        problem = url_problem(value, what)
        if problem is not None:
            raise KrytenValidationError(f"{what} {value!r} {problem}")
    result = normalize_token(value)
    if not result:
        raise KrytenValidationError(f"{what} {value!r} is empty after normalisation")
    return result


def event_subject(channel: str, event_name: str) -> str:
    """``kryten.events.cytube.{N(channel)}.{N(event_name)}``: where the bridge publishes."""
    return f"{EVENTS_PREFIX}.{token(channel, 'channel')}.{token(event_name, 'event name')}"


def channel_events_wildcard(channel: str) -> str:
    """``kryten.events.cytube.{N(channel)}.>``: every event of one channel."""
    return f"{EVENTS_PREFIX}.{token(channel, 'channel')}.>"


def command_subject(channel: str, action: str) -> str:
    """``kryten.commands.cytube.{N(channel)}.{N(action)}``: where the bridge takes commands."""
    return f"{COMMANDS_PREFIX}.{token(channel, 'channel')}.{token(action, 'action')}"


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
    if not cleaned or any(c in cleaned for c in "*>\t\r\n"):
        raise KrytenValidationError(f"service name {name!r} is not a valid subject token")
    return cleaned


def check_subject(subject: object) -> str:
    """``subject`` if it is a usable NATS subject, else KrytenValidationError."""
    # Plain `in` tests: this runs on every publish.
    if (
        not isinstance(subject, str)
        or not subject
        or " " in subject
        or "\t" in subject
        or "\r" in subject
        or "\n" in subject
    ):
        raise KrytenValidationError(f"invalid NATS subject {subject!r}")
    return subject
