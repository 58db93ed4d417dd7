"""The exceptions kryten-sync raises.

Every error derives from :class:`KrytenError`. Where a builtin category fits, the
error also derives from it (a timeout is a ``TimeoutError``, bad input a
``ValueError``) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import NoReturn


class KrytenError(Exception):
    """Base class of every kryten-sync error."""


class KrytenConnectionError(KrytenError):
    """The NATS connection could not be made or is gone."""


class NotConnectedError(KrytenConnectionError):
    """The client is not connected: ``connect()`` was never called or it was disconnected."""


class ClientClosedError(NotConnectedError):
    """The client was closed while the call waited, or before it started."""


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


__all__ = [
    "ClientClosedError",
    "ForkedProcessError",
    "KrytenConnectionError",
    "KrytenError",
    "KrytenTimeoutError",
    "KrytenValidationError",
    "LoopDiedError",
    "NoRespondersError",
    "NotConnectedError",
    "PublishError",
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
