"""Every exception kryten-sync raises, in one place.

Each derives from :class:`KrytenError`; where a builtin category fits, also from it (a
timeout is a ``TimeoutError``, bad input a ``ValueError``), so generic ``except``
clauses keep working::

    KrytenError
    ├── KrytenConnectionError               cannot connect, or the connection is gone
    │   ├── NotConnectedError               called before connect() / after disconnect()
    │   │   └── ClientClosedError           the connection closed while in use
    │   ├── LoopDiedError                   the loop thread ended; __cause__ says why
    │   └── StreamConfigError               durable events: the stream or consumer on the
    │                                       server conflicts with the events settings
    ├── KrytenValidationError (ValueError)  bad input, refused before anything is sent
    │   └── MalformedEventError             a message that is not an event envelope
    ├── KrytenTimeoutError (TimeoutError)   no reply in time
    ├── NoRespondersError                   nobody is subscribed to the request subject
    ├── PublishError                        a publish that cannot be sent (retryable?)
    ├── BridgeError (ValueError)            the bridge answered with a failure
    ├── KeyValueError                       a key-value operation failed
    │   ├── BucketNotFoundError
    │   └── BucketConfigError               an existing bucket is configured otherwise
    ├── HandlerError                        kryten-py's name; never raised by kryten-sync
    ├── WrongThreadError (RuntimeError)     a blocking call on the client's loop thread
    ├── ForkedProcessError (RuntimeError)   used in a child after fork()
    └── EmbeddedServerError (RuntimeError)  the embedded nats-server failed

    ConfigWarning (UserWarning)             a configuration key that is ignored
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, NoReturn


class KrytenError(Exception):
    """Base class of every kryten-sync error."""


class KrytenConnectionError(KrytenError):
    """The NATS connection could not be made or is gone."""


class NotConnectedError(KrytenConnectionError):
    """The client is not connected: ``connect()`` was never called or it was disconnected."""


class ClientClosedError(NotConnectedError):
    """The client was closed while the call waited, or before it started."""


class StreamConfigError(KrytenConnectionError):
    """``connect()`` cannot consume durable events: the JetStream stream or consumer
    on the server conflicts with the ``events`` settings (the message names each
    difference and what to change)."""


class KrytenValidationError(KrytenError, ValueError):
    """Invalid configuration or call arguments.

    ``problems`` lists every problem found, each as ``"path: message"``.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems: list[str] = list(problems) if problems else [message]
        super().__init__(message)


class KrytenTimeoutError(KrytenError, TimeoutError):
    """A blocking call did not complete within its timeout (its work was cancelled)."""


class NoRespondersError(KrytenError):
    """A request found no subscriber on its subject."""


class PublishError(KrytenError):
    """A message could not be handed to NATS (too large, buffer full, connection closed).

    ``retryable`` is True when trying again later may succeed (buffer full while
    reconnecting); the message was not taken either way.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class WrongThreadError(KrytenError, RuntimeError):
    """A blocking method was called on the client's own event-loop thread."""


class ForkedProcessError(KrytenError, RuntimeError):
    """The client was created in a parent process and used after ``fork()``."""


class LoopDiedError(KrytenConnectionError):
    """The client's event-loop thread ended unexpectedly; ``__cause__`` holds why."""


class MalformedEventError(KrytenValidationError):
    """A message is not a valid event envelope; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason: str = reason
        super().__init__(f"malformed event: {reason}", [reason])

    def __reduce__(self) -> tuple[type[MalformedEventError], tuple[str]]:
        return (type(self), (self.reason,))


class BridgeError(KrytenError, ValueError):
    """The bridge (or another Kryten service) answered, but reported a failure or sent a
    reply that cannot be used. A ``ValueError``, as kryten-py raises for these.

    ``command`` names the request, ``reply`` is the decoded reply (None if undecodable).
    """

    def __init__(self, message: str, *, command: str = "", reply: Any = None) -> None:
        self.command = command
        self.reply = reply
        super().__init__(message)


class HandlerError(KrytenError):
    """kryten-py's error for a handler that raised. kryten-sync never raises it (a raising
    handler is logged, counted and passed to ``on_error``); it exists so that code written
    for kryten-py imports and catches the same names."""


class ConfigWarning(UserWarning):
    """A configuration key was ignored (unknown, or a kryten-py setting without effect
    here); ``strict: true`` turns these into errors."""


class KeyValueError(KrytenError):
    """A key-value operation failed; ``bucket`` names the bucket."""

    def __init__(self, message: str, *, bucket: str = "") -> None:
        self.bucket = bucket
        super().__init__(message)


class BucketNotFoundError(KeyValueError):
    """The key-value bucket does not exist (writes, watches and get_kv_store raise it;
    reads return their default instead)."""


class BucketConfigError(KeyValueError):
    """An existing bucket's configuration differs from the one requested.

    ``differences`` maps each differing setting (``history``, ``ttl``,
    ``max_value_size``) to ``(existing, requested)``.
    """

    def __init__(
        self, message: str, *, bucket: str, differences: dict[str, tuple[object, object]]
    ) -> None:
        self.differences = differences
        super().__init__(message, bucket=bucket)


class EmbeddedServerError(KrytenError, RuntimeError):
    """The embedded nats-server is missing, did not start or did not stop."""


__all__ = [
    "BridgeError",
    "BucketConfigError",
    "BucketNotFoundError",
    "ClientClosedError",
    "ConfigWarning",
    "EmbeddedServerError",
    "ForkedProcessError",
    "HandlerError",
    "KeyValueError",
    "KrytenConnectionError",
    "KrytenError",
    "KrytenTimeoutError",
    "KrytenValidationError",
    "LoopDiedError",
    "MalformedEventError",
    "NoRespondersError",
    "NotConnectedError",
    "PublishError",
    "StreamConfigError",
    "WrongThreadError",
]


def translate_nats_error(exc: BaseException, what: str) -> BaseException:
    """The kryten-sync error for a nats-py exception (the caller chains the original)."""
    import nats.errors as ne  # noqa: PLC0415 - keep `import kryten_sync.errors` light

    if isinstance(exc, KrytenError):
        return exc
    if isinstance(exc, ne.NoRespondersError):
        return NoRespondersError(f"{what}: no responders are subscribed")
    if isinstance(exc, ne.TimeoutError | TimeoutError):
        return KrytenTimeoutError(f"{what} timed out")
    if isinstance(exc, ne.MaxPayloadError):
        return PublishError(f"{what}: payload exceeds the server's max_payload")
    if isinstance(exc, ne.OutboundBufferLimitError):
        return PublishError(
            f"{what}: the outbound buffer is full while reconnecting; the message was not sent",
            retryable=True,
        )
    if isinstance(exc, ne.ConnectionClosedError | ne.ConnectionDrainingError):
        return ClientClosedError(f"{what}: the connection is closed")
    if isinstance(exc, ne.BadSubjectError):
        return KrytenValidationError(f"{what}: invalid subject")
    if isinstance(exc, ne.Error):
        return KrytenConnectionError(f"{what}: {exc}")
    return exc


def raise_translated(exc: BaseException, what: str) -> NoReturn:
    """Raise the kryten-sync error for ``exc`` with ``exc`` as its cause."""
    err = translate_nats_error(exc, what)
    if err is exc:
        raise exc
    raise err from exc


def describe_connect_error(exc: BaseException, servers: list[str]) -> str:
    """A one-line reason for a failed connect, naming the servers (without credentials)."""
    import nats.errors  # noqa: PLC0415 - keep `import kryten_sync.errors` light

    where = ", ".join(servers)
    text = str(exc)
    if isinstance(exc, ConnectionResetError):
        return (
            f"{where} closed the connection during the handshake (wrong credentials, or "
            "TLS expected on one side only?)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (is nats-server running on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {where}: {exc.strerror}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if "authorization violation" in text.lower() or isinstance(exc, nats.errors.AuthorizationError):
        return (
            f"{where} refused the credentials (authorization violation): check user/"
            "password, token, nkey seed or creds file"
        )
    if isinstance(exc, TimeoutError):
        return f"timed out connecting to {where}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {where}: {exc.strerror}"
    return f"cannot connect to {where}: {text or type(exc).__name__}"


def is_fatal_connect_error(exc: BaseException) -> bool:
    """Errors that retrying the same servers will not cure."""
    import nats.errors  # noqa: PLC0415

    return (
        isinstance(exc, ssl.SSLError | nats.errors.AuthorizationError)
        or "authorization violation" in str(exc).lower()
    )
