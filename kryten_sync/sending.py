"""Sending built commands (:class:`~kryten_sync.commands.Command`) to the bridge.

Building a command is a pure function (:mod:`kryten_sync.commands`); sending it is this
feature's job: the domain check, a correlation id and timestamp, one encoding, the chat
rate limiter, and the connection's publisher, with retries for what failed before
nats-py took the message. A command for a channel the client does not receive is sent,
with one warning per channel (most often it is a typo); the first chat command that has
to wait for the limiter says so once, at INFO.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from ._core.feature import AttachedFeature
from ._ratelimit import RateLimiter
from .commands import Command
from .config import KrytenConfig
from .errors import KrytenError, PublishError
from .raw import encode_payload, utc_timestamp


class CommandSender(AttachedFeature):
    """Publishes commands on ``kryten.commands.cytube.{channel}.{action}``."""

    def __init__(self, config: KrytenConfig) -> None:
        self.config = config
        self.chat_limiter = RateLimiter(
            config.chat_burst, config.chat_min_delay, jitter=config.chat_jitter
        )
        self._received: dict[str, bool] = {}  # channel as given -> configured?
        self._lock = threading.Lock()
        self._told_of_limiter = False

    def send(self, command: Command) -> str:
        """Publish ``command`` (blocking on the chat limiter first when the command is
        rate-limited) and return its correlation id."""
        if command.domain is not None:
            self.config.check_command_domain(command.channel, command.domain)
        link = self.require()
        if not self._received.get(command.channel, False):
            self._check_received(command, link.logger)
        correlation_id = str(uuid.uuid4())
        payload = encode_payload(command.body(correlation_id, utc_timestamp()), "command")
        spec = command.spec
        if spec.rate_limited:
            waited = self.chat_limiter.acquire()
            if waited > 0 and not self._told_of_limiter:
                self._told_of_limiter = True
                self._tell_of_limiter(link.logger, spec.method, waited)
        self.publish(command.subject, payload, spec.action)
        return correlation_id

    def publish(self, subject: str, payload: bytes, tag: str) -> None:
        """Publish one command body, counted under ``tag`` in ``commands_sent``."""
        link = self.require()
        attempt = 0
        while True:
            try:
                link.publisher.put(subject, payload, None, tag)
                return
            except KrytenError as exc:
                # Only errors raised before nats-py took the message are retried, so a
                # command that was accepted is never sent twice.
                retry = isinstance(exc, PublishError) and exc.retryable
                if not retry or attempt >= self.config.retry_attempts:
                    link.publisher.count_error()  # one per call, not per attempt
                    raise
                time.sleep(self.config.retry_delay * 2**attempt)
                attempt += 1

    def _tell_of_limiter(self, logger: logging.Logger, method: str, waited: float) -> None:
        """Say once why a chat command waited: the pacing surprises threaded programs."""
        limiter = self.chat_limiter
        logger.info(
            "%s waited %.1f s for the chat limiter: after a burst of %d, chat, PMs, kicks, "
            "bans and mutes go out one per %g s for the whole client, all threads together "
            "(CyTube's antiflood drops the excess); chat_burst and chat_min_delay set it, "
            "chat_min_delay=0 (with chat_jitter=0) turns it off",
            method,
            waited,
            limiter.burst,
            limiter.min_delay,
        )

    def _check_received(self, command: Command, logger: logging.Logger) -> None:
        """Warn once per channel about commands for a channel not in the configuration."""
        with self._lock:
            if command.channel in self._received:
                return
            received = self.config.channel_for(command.channel) is not None
            self._received[command.channel] = received
        if not received:
            configured = ", ".join(c.channel for c in self.config.channels)
            logger.warning(
                "%s: channel %r is not one this client receives (configured: %s); sent "
                "anyway, but its events, and the bridge's echo, never reach this client",
                command.spec.method,
                command.channel,
                configured,
            )
