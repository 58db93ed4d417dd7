"""Hostile or broken input cannot grow memory or slip through: names with whitespace or
control characters are refused before anything is sent, per-name bookkeeping is
bounded, failed connects leak nothing, no config dump shows a secret, and events
dropped at a bounded disconnect are counted. Real nats-server throughout."""

from __future__ import annotations

import json
import logging
import resource
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kryten_sync import (
    KrytenClient,
    KrytenConfig,
    KrytenConnectionError,
    KrytenValidationError,
)
from kryten_sync.stats import MAX_EVENT_NAMES, OTHER_EVENTS
from tests import bridge_format as bf
from tests._helpers import kryten_threads, make_config, wait_until
from tests._nats import AsyncNats, NatsServer, free_port
from tests.command_samples import SAMPLES

#: Whitespace and control characters, the ASCII ones the fuzz row used first.
BAD_CHARS = ["\t", "\n", "\r", "\x0b", "\x0c", " ", "\x00", "\x7f", "\u00a0", "\u2028", "\ud800"]


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with KrytenClient(make_config(shared_server.url)) as c:
        yield c


def test_no_command_with_a_bad_channel_name_returns_an_id_or_reaches_nats(
    shared_server: NatsServer, client: KrytenClient
) -> None:
    arrived: list[bytes] = []
    with AsyncNats(shared_server.url) as watcher:
        watcher.subscribe(">", cb=lambda m: arrived.append(m.data))
        ids: list[str] = []
        refused = 0
        for method, samples in SAMPLES.items():
            args, kwargs, _ = samples[0]
            for char in BAD_CHARS:
                for channel in (f"lounge{char}", f"{char}lounge", f"lo{char}unge"):
                    try:
                        ids.append(getattr(client, method)(channel, *args, **kwargs))
                    except KrytenValidationError as exc:
                        assert "not a CyTube channel name" in str(exc), exc
                        refused += 1
        client.flush()
        watcher.flush()
    assert ids == [], f"{len(ids)} calls returned a correlation id"
    assert refused == len(SAMPLES) * len(BAD_CHARS) * 3
    assert [json.loads(d).get("action") for d in arrived if b'"action"' in d] == []
    assert client.health().publish_errors == 0  # refused before the publish path


@pytest.mark.parametrize("char", BAD_CHARS)
def test_raw_subjects_with_whitespace_or_control_characters_are_refused(
    client: KrytenClient, char: str
) -> None:
    subject = f"raw.a{char}b"
    with pytest.raises(KrytenValidationError, match="invalid NATS subject"):
        client.publish(subject, b"x")
    with pytest.raises(KrytenValidationError, match="invalid NATS subject"):
        client.subscribe(subject, lambda m: None)
    with pytest.raises(KrytenValidationError, match="invalid NATS subject"):
        client.request_message(subject, b"x", timeout=0.5)


@pytest.mark.parametrize(
    "headers", [{"a b": "x"}, {"": "x"}, {"a:b": "x"}, {"ok": 1}, {"ok": "\ud800"}]
)
def test_headers_nats_would_refuse_on_the_loop_raise_in_the_caller(
    client: KrytenClient, headers: dict[str, Any]
) -> None:
    with pytest.raises(KrytenValidationError, match="header"):
        client.publish("raw.headers", b"x", headers=headers)
    assert client.health().messages_lost == 0


def test_text_that_cannot_be_encoded_raises_validation_error(client: KrytenClient) -> None:
    bad = "caf\ud800"
    calls = [
        lambda: client.send_chat("lounge", bad),
        lambda: client.send_pm("lounge", "alice", bad),
        lambda: client.set_channel_css("lounge", bad),
        lambda: client.set_channel_js("lounge", bad),
        lambda: client.set_motd("lounge", bad),
        lambda: client.publish("raw.text", bad),
        lambda: client.publish("raw.text", {"text": bad}),
        lambda: client.request_message("raw.text", bad, timeout=0.5),
    ]
    for call in calls:
        with pytest.raises(KrytenValidationError):
            call()
    assert client.health().messages_lost == 0


@pytest.mark.parametrize("char", BAD_CHARS)
def test_config_refuses_channels_and_domains_with_bad_characters(char: str) -> None:
    for field, value in (("channel", f"lo{char}unge"), ("domain", f"cytu{char}be")):
        channel = {"domain": "cytu.be", "channel": "lounge", field: value}
        with pytest.raises(KrytenValidationError) as info:
            KrytenConfig.from_dict({"nats": {"servers": ["h:1"]}, "channels": [channel]})
        assert f"channels[0].{field}" in str(info.value)
        assert value not in str(info.value)  # config errors never quote input


def test_channel_names_fold_case_as_the_bridge_does(
    shared_server: NatsServer, client: KrytenClient
) -> None:
    arrived: list[str] = []
    with AsyncNats(shared_server.url) as watcher:
        watcher.subscribe("kryten.commands.>", cb=lambda m: arrived.append(m.subject))
        client.send_chat("My_Channel-2", "hi")
        client.flush()
        wait_until(lambda: arrived, 2, "the command")
    assert arrived == ["kryten.commands.cytube.my_channel-2.chat"]
    for bad in ("My Channel", "a" * 31, "café", "My.Channel"):
        with pytest.raises(KrytenValidationError, match=r"\^\[\\w-\]\{1,30\}\$"):
            client.send_chat(bad, "hi")


# -- connect failures leak nothing ----------------------------------------------------------


def _threads_after(attempts: int, attempt: Any) -> tuple[int, int]:
    before = threading.active_count()
    for _ in range(attempts):
        attempt()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    return before, threading.active_count()


def test_failed_connects_of_any_cause_raise_connection_error_and_leak_no_thread(
    shared_server: NatsServer,
) -> None:
    refused = KrytenClient(
        make_config(f"nats://127.0.0.1:{free_port()}", nats={"connect_timeout": 0.5})
    )
    with socket_in_use() as port:
        metrics_clash = KrytenClient(
            make_config(shared_server.url, metrics={"port": port, "serve": True})
        )
        for client in (refused, metrics_clash):

            def attempt(client: KrytenClient = client) -> None:
                with pytest.raises(KrytenConnectionError):
                    client.connect()

            before, after = _threads_after(10, attempt)
            assert after <= before, f"{after - before} threads left by 10 failed connects"
            assert kryten_threads() == set()


def test_a_refused_subscription_leaks_no_worker_thread(client: KrytenClient) -> None:
    def attempt() -> None:
        with pytest.raises(KrytenValidationError):
            client.subscribe("a.>.b", lambda m: None)  # nats-py refuses the wildcard

    before, after = _threads_after(10, attempt)
    assert after <= before, f"{after - before} worker threads left by 10 refused subscribes"


class socket_in_use:
    """A listening socket on a free port: the port is taken while in the block."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# -- secrets ---------------------------------------------------------------------------------


def test_no_dump_of_the_config_shows_a_secret() -> None:
    secret = "s3cr3t-pw"
    config = KrytenConfig.from_dict(
        {
            "nats": {
                "servers": [f"nats://bot:{secret}@h1:4222", f"tls://{secret}tok@h2:4443", "h3"],
                "password": secret,
                "token": secret,
            },
            "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        }
    )
    dumps = [
        repr(config),
        str(config),
        repr(config.nats),
        str(config.model_dump()),
        config.model_dump_json(),
        str(config.nats.model_dump(mode="json")),
    ]
    for dump in dumps:
        assert secret not in dump, dump
    assert config.model_dump()["nats"]["servers"] == [
        "nats://***@h1:4222",
        "tls://***@h2:4443",
        "nats://h3:4222",
    ]
    # The connection still gets the credentials.
    assert config.nats.connect_options()["servers"][0] == f"nats://bot:{secret}@h1:4222"


def test_an_unknown_setting_error_does_not_quote_the_key() -> None:
    secret = "nkey-SUAB3KX"
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_dict(
            {
                "nats": {"servers": ["h:1"], secret: "x"},
                "channels": [{"domain": "cytu.be", "channel": "lounge"}],
                secret: 1,
                "strict": True,
            }
        )
    assert secret not in str(info.value)
    assert secret not in " ".join(info.value.problems)
    assert "nats.<key not shown>: unknown setting" in str(info.value)


# -- bounded bookkeeping -----------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size now, in MB (from /proc: ru_maxrss is a peak)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def test_a_flood_of_distinct_event_names_leaves_bookkeeping_and_memory_bounded(
    shared_server: NatsServer,
) -> None:
    config = make_config(shared_server.url, metrics={"port": 0, "serve": True})
    with KrytenClient(config) as client, AsyncNats(shared_server.url) as source:
        seen = [0]  # a count, not a list: the test must not grow the process itself

        def count(ev: Any) -> None:
            seen[0] += 1

        client.on("*", handler=count)
        subject = bf.subject("lounge", "x")

        def flood(name: Any, count: int) -> None:
            # Made batch by batch: 60,000 names of 1,000 characters would be 60 MB here.
            for start in range(0, count, 5000):
                source.publish_many(
                    (subject, bf.envelope(name(i), {})) for i in range(start, start + 5000)
                )

        flood(lambda i: f"warmup{i % 100}", 5000)
        wait_until(lambda: seen[0] == 5000, 30, "the warm-up")
        before = rss_mb()
        flood(lambda i: f"{i:06d}" + "x" * 994, 60_000)  # 1,000 characters: malformed
        flood(lambda i: f"ev{i}", 60_000)  # valid names, all distinct
        wait_until(lambda: client.health().events_received >= 65_000, 60, "the flood")
        wait_until(lambda: seen[0] == 65_000, 30, "the handler")
        middle = rss_mb()
        # The same again with new names: a leak would grow by as much again.
        flood(lambda i: f"{i:06d}" + "y" * 994, 60_000)
        flood(lambda i: f"ev{i + 60_000}", 60_000)
        wait_until(lambda: seen[0] == 125_000, 60, "the second flood")
        after = rss_mb()
        status = client.channels[0]
        health = client.health()
        metrics_text = _get(client.metrics_url)

    assert health.malformed_events == 120_000  # a 1,000-character name is not an event name
    assert health.events_received == 125_000
    prefix = "kryten_sync_events_received_total{"
    labels = [line for line in metrics_text.splitlines() if line.startswith(prefix)]
    assert len(labels) == MAX_EVENT_NAMES + 1, len(labels)  # one per name, then "(other)"
    other = [line for line in labels if f'event="{OTHER_EVENTS}"' in line]
    # The 100 warm-up names and the first new ones fill the table; the rest is "(other)".
    assert len(other) == 1 and float(other[0].split()[-1]) == 120_000 - (MAX_EVENT_NAMES - 100)
    assert status.received == 125_000
    figures = f"RSS {before:.1f} MB, {middle:.1f} MB after 120,000, {after:.1f} MB after 240,000"
    print(f"event-name flood: {figures}")  # shown with -s
    assert after - middle < 5, figures


def _get(url: str | None) -> str:
    import urllib.request

    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


# -- a bounded disconnect ------------------------------------------------------------------------


def test_events_discarded_at_a_bounded_disconnect_are_counted_without_stray_logs(
    shared_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = KrytenClient(make_config(shared_server.url))
    release = threading.Event()
    started = threading.Event()

    def slow(ev: Any) -> None:
        started.set()
        release.wait(5)

    client.on("chatMsg", handler=slow)
    client.connect()
    try:
        with AsyncNats(shared_server.url) as source:
            source.publish_many(
                (bf.subject("lounge", "chatMsg"), bf.envelope("chatMsg", bf.CHAT_MSG))
                for _ in range(50)
            )
        assert started.wait(5)
        wait_until(lambda: client.channels[0].pending == 49, 5, "the queue to fill")
        client.disconnect(timeout=0.5)
    finally:
        release.set()
    time.sleep(0.2)
    status = client.channels[0]
    assert status.dropped == 49, status
    assert client.health().events_dropped == 49
    text = caplog.text
    assert "never retrieved" not in text and "CancelledError" not in text, text
    assert "49 received events were not handled" in text
