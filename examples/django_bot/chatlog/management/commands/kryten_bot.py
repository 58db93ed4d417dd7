"""``python manage.py kryten_bot``: log every chat message of the channel through the
Django ORM and answer ``!count`` with the number of messages stored for that channel.

Handlers run on kryten-sync worker threads, not in a request, so nothing closes their
database connections for them: :func:`with_db` does what Django does around a request
(``close_old_connections()`` before and after), so a broken or expired connection is
replaced and, with the default ``CONN_MAX_AGE = 0``, none stays open between events.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections

from chatlog.models import ChatMessage
from kryten_sync import ChatMessageEvent, KrytenClient


def with_db(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap a handler that uses the ORM from a worker thread."""

    @functools.wraps(handler)
    def wrapper(event: Any) -> None:
        close_old_connections()
        try:
            handler(event)
        finally:
            close_old_connections()

    return wrapper


class Command(BaseCommand):
    help = "Run a Kryten bot that stores chat messages and answers !count."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--seconds",
            type=float,
            default=settings.KRYTEN_RUN_SECONDS,
            help="stop after this many seconds (default: $KRYTEN_RUN_SECONDS, else Ctrl-C)",
        )

    def handle(self, *args: Any, seconds: float, **options: Any) -> None:
        client = KrytenClient(settings.KRYTEN)

        @client.on("chatMsg")
        @with_db
        def store(event: ChatMessageEvent) -> None:
            ChatMessage.objects.create(
                domain=event.domain,
                channel=event.channel,
                username=event.username,
                message=event.message,
                sent_at=event.timestamp,
            )
            if event.message.strip() == "!count":
                count = ChatMessage.objects.filter(channel=event.channel).count()
                client.send_chat(event.channel, f"{count} messages logged in {event.channel}")

        with client:  # connects; disconnects (draining pending events) on the way out
            client.flush()  # the server now knows our subscriptions
            channels = ", ".join(f"{c.domain}/{c.channel}" for c in client.config.channels)
            self.stdout.write(f"logging chat of {channels}; Ctrl-C to stop")
            self.stdout.flush()
            if seconds > 0:
                timer = threading.Timer(seconds, client.stop)
                timer.daemon = True
                timer.start()
            client.run()  # until Ctrl-C, SIGTERM or the timer
        stored = ChatMessage.objects.count()
        connections.close_all()
        self.stdout.write(f"stopped; {stored} messages in the database")
