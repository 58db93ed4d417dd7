"""Plain NATS messages and subscriptions, as the synchronous client hands them out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .errors import KrytenValidationError

LostReason = Literal["not sent", "unconfirmed"]
Payload = bytes | bytearray | memoryview | str | Mapping[str, Any] | list[Any] | None


def encode_payload(data: object, what: str = "payload") -> bytes:
    """bytes as is, str as UTF-8, dict/list as compact JSON (no NaN); anything else
    (None included) raises KrytenValidationError naming ``what`` -- never a repr."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return _utf8(data, what)
    if isinstance(data, Mapping | list):
        return encode_json(data, what)
    raise KrytenValidationError(
        f"{what} must be bytes, str, dict or list (sent as JSON), got {type(data).__name__}"
    )


def encode_json(value: object, what: str = "value") -> bytes:
    """Any JSON value (a number and None too) as compact UTF-8 JSON without NaN;
    KrytenValidationError naming ``what`` if it cannot be."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise KrytenValidationError(f"{what} is not JSON-serialisable: {exc}") from exc
    return _utf8(text, what)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise KrytenValidationError(f"{what} has text that is not valid Unicode: {exc}") from exc


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # what nats-py accepts


def check_headers(headers: object) -> dict[str, str] | None:
    """``headers`` if nats-py can send them (names: HTTP token characters; values: str
    that encode as UTF-8), else KrytenValidationError: refused on the loop, such a
    message would be lost after the call returned."""
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise KrytenValidationError(f"headers must be a dict, got {type(headers).__name__}")
    for name, value in headers.items():
        if not isinstance(name, str) or _HEADER_NAME.fullmatch(name.strip()) is None:
            raise KrytenValidationError(f"header name {name!r} is not a valid header name")
        if not isinstance(value, str):
            raise KrytenValidationError(
                f"header {name!r} must have a str value, got {type(value).__name__}"
            )
        _utf8(value, f"header {name!r}")
    return dict(headers)


def utc_timestamp() -> str:
    """Now in ISO-8601 UTC with an explicit offset (``...+00:00``), as the bridge and
    every Kryten service expect (a naive timestamp breaks their parsing)."""
    return datetime.now(UTC).isoformat()


def encode_message(data: Payload) -> bytes:
    """A message body: :func:`encode_payload`, with None as an empty body."""
    return b"" if data is None else encode_payload(data)


@dataclass(frozen=True, slots=True)
class Message:
    """A NATS message received by :meth:`KrytenClient.subscribe` or a request."""

    subject: str
    data: bytes
    reply: str = ""
    headers: Mapping[str, str] | None = None
    _respond: Callable[[str, bytes], None] | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.data.decode()

    def json(self) -> Any:
        """The payload decoded as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.data)

    def respond(self, data: Payload) -> None:
        """Publish ``data`` to this message's reply subject."""
        if not self.reply:
            raise KrytenValidationError(f"message on {self.subject!r} has no reply subject")
        if self._respond is None:
            raise KrytenValidationError("this message cannot be answered")
        self._respond(self.reply, encode_message(data))


class Subscription:
    """Handle of one :meth:`KrytenClient.subscribe`; ``unsubscribe()`` ends it."""

    def __init__(self, subject: str, queue: str, unsubscribe: Callable[[], None]) -> None:
        self.subject = subject
        self.queue = queue
        self._unsubscribe = unsubscribe
        self.active = True

    def unsubscribe(self) -> None:
        """Stop receiving; messages already handed to the handler thread still run."""
        if self.active:
            self.active = False
            self._unsubscribe()

    def __repr__(self) -> str:
        state = "active" if self.active else "closed"
        return f"<Subscription {self.subject!r} {state}>"


@dataclass(frozen=True, slots=True)
class LostMessage:
    """A message the client accepted (the call returned) that may not have reached NATS,
    as handed to the ``on_lost`` hook.

    ``reason`` is ``"not sent"`` when it never left the client (buffered while
    disconnected when the client closed or gave up reconnecting, or refused by nats-py),
    or ``"unconfirmed"`` when it was written to a connection that dropped before the
    server confirmed it: it may have arrived. ``action`` and ``correlation_id`` are set
    for commands (the correlation id the command method returned), None otherwise.
    """

    subject: str
    payload: bytes
    headers: Mapping[str, str] | None
    action: str | None
    correlation_id: str | None
    reason: LostReason
