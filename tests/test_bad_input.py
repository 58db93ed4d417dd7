"""Bad input gets a clear error in the caller's thread and loses nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kryten_sync import (
    KrytenClient,
    KrytenError,
    KrytenValidationError,
    Message,
    PublishError,
)
from tests._helpers import make_config, wait_until
from tests._nats import NatsServer


@pytest.fixture(scope="module")
def small_server() -> Iterator[NatsServer]:
    """A server that takes at most 1 KiB per message."""
    with NatsServer(config="max_payload: 1024") as server:
        yield server


@pytest.fixture
def client(small_server: NatsServer) -> Iterator[KrytenClient]:
    with KrytenClient(make_config(small_server.url)) as c:
        yield c


def collect(client: KrytenClient, subject: str) -> list[bytes]:
    got: list[bytes] = []
    client.subscribe(subject, lambda msg: got.append(msg.data))
    return got


def test_oversized_publish_raises_and_the_next_one_arrives(client: KrytenClient) -> None:
    got = collect(client, "big.>")
    client.publish("big.one", b"a")
    with pytest.raises(PublishError, match=r"payload of 2000 bytes exceeds .* 1024 bytes"):
        client.publish("big.two", b"x" * 2000)
    client.publish("big.three", b"c")
    client.flush()
    wait_until(lambda: len(got) == 2, 5, "the two small messages")
    assert got == [b"a", b"c"]


def test_oversized_command_raises_and_is_not_retried(client: KrytenClient) -> None:
    got = collect(client, "kryten.commands.cytube.lounge.>")
    with pytest.raises(PublishError, match="exceeds"):
        client.send_chat("lounge", "x" * 2000)
    client.send_chat("lounge", "short")
    client.flush()
    wait_until(lambda: len(got) == 1, 5, "the short chat command")
    assert b'"short"' in got[0]
    assert client.health().publish_errors == 1  # one call raised (never retried)


@pytest.mark.parametrize(
    ("subject", "data", "match"),
    [
        ("", b"x", "invalid NATS subject"),
        ("has space", b"x", "invalid NATS subject"),
        ("ok", {"not": {1, 2}}, "not JSON-serialisable"),
        ("ok", 42, "payload must be bytes, str, dict or list"),
    ],
)
def test_bad_publish_arguments(
    client: KrytenClient, subject: str, data: object, match: str
) -> None:
    with pytest.raises(KrytenValidationError, match=match):
        client.publish(subject, data)  # type: ignore[arg-type]
    client.publish("still.works", b"x")


def test_reply_that_is_not_json(client: KrytenClient) -> None:
    def answer(msg: Message) -> None:
        msg.respond(b"\xff not json")

    client.subscribe("bad.reply", answer)
    with pytest.raises(KrytenError, match="is not JSON"):
        client.request("bad.reply", timeout=2)
    assert client.request_message("bad.reply", timeout=2).data == b"\xff not json"


def test_a_command_domain_must_be_one_the_client_is_configured_for(
    client: KrytenClient,
) -> None:
    got = collect(client, "kryten.commands.cytube.>")
    with pytest.raises(KrytenValidationError, match=r"domain 'other\.tv' is not configured"):
        client.send_chat("lounge", "hi", domain="other.tv")
    client.send_chat("lounge", "one", domain="CYTU.BE")  # compared after normalisation
    client.send_chat("elsewhere", "two", domain="cytu.be")  # unconfigured channel, known domain
    client.flush()
    wait_until(lambda: len(got) == 2, 5, "both commands")
    assert [b'"one"' in got[0], b'"two"' in got[1]] == [True, True]


def test_a_command_domain_must_match_the_channel_configuration(small_server: NatsServer) -> None:
    config = make_config(small_server.url)
    config["channels"] = [
        {"domain": "cytu.be", "channel": "lounge"},
        {"domain": "other.tv", "channel": "movies"},
    ]
    with KrytenClient(config) as client:
        with pytest.raises(KrytenValidationError, match=r"'movies' is configured on other\.tv"):
            client.send_chat("movies", "hi", domain="cytu.be")
        client.send_chat("movies", "hi", domain="other.tv")
