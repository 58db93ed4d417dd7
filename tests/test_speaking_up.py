"""Mistakes a first bot makes, and what it is told: over a real nats-server with a
FakeBridge on the other side."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator

import pytest

from kryten_sync import KrytenClient, KrytenValidationError
from kryten_sync.testing import FakeBridge
from tests._nats import NatsServer


@pytest.fixture
def fake(shared_server: NatsServer) -> Iterator[FakeBridge]:
    with FakeBridge(shared_server.url) as bridge:
        yield bridge


def config(url: str, **extra: object) -> dict[str, object]:
    return {
        "nats": {"servers": [url]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        **extra,
    }


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_command_to_a_channel_not_received_warns_once_per_channel(
    shared_server: NatsServer, fake: FakeBridge, caplog: pytest.LogCaptureFixture
) -> None:
    with KrytenClient(config(shared_server.url, chat_min_delay=0)) as client:
        caplog.set_level(logging.WARNING, "kryten_sync")
        client.send_chat("Lounge", "configured, other spelling")  # no warning
        for _ in range(3):
            client.send_chat("loungee", "typo")
        client.pause("elsewhere")
        client.flush()
    warnings = messages(caplog, logging.WARNING)
    assert warnings == [
        "send_chat: channel 'loungee' is not one this client receives (configured: lounge); "
        "sent anyway, but its events, and the bridge's echo, never reach this client",
        "pause: channel 'elsewhere' is not one this client receives (configured: lounge); "
        "sent anyway, but its events, and the bridge's echo, never reach this client",
    ]


def test_web_addresses_in_calls_name_the_value_to_use(shared_server: NatsServer) -> None:
    with KrytenClient(config(shared_server.url)) as client:
        with pytest.raises(KrytenValidationError) as caught:
            client.send_chat("https://cytu.be/r/lounge", "hi")
        assert str(caught.value) == (
            "send_chat: channel 'https://cytu.be/r/lounge' is a web address: use the channel "
            "name 'lounge' (and the domain 'cytu.be')"
        )
        with pytest.raises(KrytenValidationError, match=re.escape("use the domain 'cytu.be'")):
            client.send_chat("lounge", "hi", domain="https://cytu.be")
        with pytest.raises(
            KrytenValidationError, match=re.escape("channel filter 'cytu.be/r/lounge' is")
        ):
            client.on("chatMsg", channel="cytu.be/r/lounge", handler=print)
        with pytest.raises(KrytenValidationError, match=re.escape("use the domain 'cytu.be'")):
            client.wait_for("chatMsg", domain="https://cytu.be/", timeout=0.1)


def test_the_first_wait_for_the_chat_limiter_is_explained_once(
    shared_server: NatsServer, fake: FakeBridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kryten_sync")
    with KrytenClient(config(shared_server.url, chat_burst=2, chat_min_delay=0.05)) as client:
        threads = [
            threading.Thread(target=lambda: [client.send_chat("lounge", "x") for _ in range(2)])
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    told = [m for m in messages(caplog, logging.INFO) if "chat limiter" in m]
    assert len(told) == 1, told
    assert told[0].startswith("send_chat waited ")
    assert "after a burst of 2, chat, PMs, kicks, bans and mutes go out one per 0.05 s" in told[0]
    assert "chat_min_delay=0 (with chat_jitter=0) turns it off" in told[0]


def test_run_says_where_it_listens_and_with_which_handlers(
    shared_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kryten_sync")
    client = KrytenClient(config(shared_server.url))

    @client.on("chatMsg")
    def greet(event: object) -> None:
        pass

    client.on("addUser", handler=greet)
    timer = threading.Timer(0.3, client.stop)
    timer.start()
    runner = threading.Thread(target=client.run)  # not the main thread: stop() ends it
    runner.start()
    runner.join(10)
    client.disconnect()
    info = messages(caplog, logging.INFO)
    assert info[0] == (
        f"connected to {shared_server.url}, listening on cytu.be/lounge with 2 handlers "
        "(greet, greet); stop() ends run()"
    )
