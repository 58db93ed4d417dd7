"""Every command method on the wire, seen by a second NATS connection (real nats-server).

The table walk calls each sample of tests/command_samples.py on a connected client and
checks the exact subject and body another connection receives on ``kryten.commands.>``.
Then: per-thread order under 8 concurrent threads, the chat limiter not holding up other
commands, and a real transient publish failure (outbound buffer full while the server is
down) retried without duplication.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import nats
import pytest

from kryten_sync import COMMANDS, KrytenClient, Message, PublishError
from tests._nats import NatsServer
from tests.command_samples import SAMPLE_CHANNEL, SAMPLES, iter_samples

CHANNEL_TOKEN = "test-channel"  # N("Test-Channel")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(\+00:00|Z)$")


def client_for(url: str, **settings: Any) -> KrytenClient:
    config: dict[str, Any] = {
        "nats": {"servers": [url]},
        "channels": [{"domain": "cytu.be", "channel": SAMPLE_CHANNEL}],
    }
    config.update(settings)
    return KrytenClient(config)


class Wire:
    """Every message on ``kryten.commands.>`` as received by its own connection."""

    def __init__(self, client: KrytenClient) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        client.subscribe("kryten.commands.>", self._on_message)
        client.flush()

    def _on_message(self, msg: Message) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[list[Message]], bool], timeout: float = 5) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.messages), timeout), (
                f"wire: condition not met within {timeout} s ({len(self.messages)} messages)"
            )

    def by_correlation_id(self, cid: str, timeout: float = 5) -> Message:
        self.wait(lambda msgs: any(cid.encode() in m.data for m in msgs), timeout)
        with self._cond:
            found = [m for m in self.messages if json.loads(m.data)["correlation_id"] == cid]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def sender(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with client_for(shared_server.url, chat_min_delay=0) as client:
        yield client


@pytest.fixture(scope="module")
def wire(shared_server: NatsServer) -> Iterator[Wire]:
    with client_for(shared_server.url) as observer:
        yield Wire(observer)


def assert_same_json(actual: Any, expected: Any, path: str = "data") -> None:
    """Equal values of the same JSON types (1 != 1.0 != True here), dict keys in order."""
    assert type(actual) is type(expected), f"{path}: {actual!r} is not {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys {list(actual)}"
        for key, value in expected.items():
            assert_same_json(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_same_json(got, want, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_samples_cover_every_command() -> None:
    assert set(SAMPLES) == set(COMMANDS)


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "expected"),
    list(iter_samples()),
    ids=[f"{m}-{i}" for m, samples in SAMPLES.items() for i in range(len(samples))],
)
def test_command_on_the_wire(
    sender: KrytenClient,
    wire: Wire,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    spec = COMMANDS[method]
    before = datetime.now().astimezone()
    cid = getattr(sender, method)(SAMPLE_CHANNEL, *args, **kwargs)
    msg = wire.by_correlation_id(cid)

    token = spec.action.lower()  # N(action): actions are plain ASCII words
    assert msg.subject == f"kryten.commands.cytube.{CHANNEL_TOKEN}.{token}"
    body = json.loads(msg.data.decode("utf-8"))
    assert list(body) == ["action", "data", "correlation_id", "timestamp"]
    assert body["action"] == spec.action
    assert_same_json(body["data"], expected)
    assert body["correlation_id"] == cid
    assert uuid.UUID(cid).version == 4 and str(uuid.UUID(cid)) == cid
    stamp = body["timestamp"]
    assert ISO_UTC.match(stamp), stamp
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= when <= datetime.now().astimezone()


def test_concurrent_threads_keep_their_order(sender: KrytenClient, wire: Wire) -> None:
    threads, per_thread = 8, 60
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def issue(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                tag = f"conc:{t}:{i}"
                if i % 3 == 0:
                    sender.send_chat(SAMPLE_CHANNEL, tag)
                elif i % 3 == 1:
                    sender.set_motd(SAMPLE_CHANNEL, tag)
                else:
                    sender.send_pm(SAMPLE_CHANNEL, "alice", tag)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=issue, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors

    def tags(msgs: list[Message]) -> list[str]:
        found = []
        for msg in msgs:
            data = json.loads(msg.data)["data"]
            text = data.get("message", data.get("motd", ""))
            if isinstance(text, str) and text.startswith("conc:"):
                found.append(text)
        return found

    wire.wait(lambda msgs: len(tags(msgs)) >= threads * per_thread, timeout=10)
    seen = tags(wire.messages)
    assert len(seen) == len(set(seen)) == threads * per_thread
    for t in range(threads):
        mine = [int(tag.split(":")[2]) for tag in seen if tag.split(":")[1] == str(t)]
        assert mine == list(range(per_thread)), f"thread {t} out of order: {mine}"


def test_chat_limiter_paces_chat_but_not_other_commands(
    shared_server: NatsServer, wire: Wire
) -> None:
    # Default config: burst 4, then one per second.
    with client_for(shared_server.url) as client:
        chat_elapsed: list[float] = []

        def chat() -> None:
            t0 = time.monotonic()
            for i in range(6):
                client.send_chat(SAMPLE_CHANNEL, f"paced:{i}")
            chat_elapsed.append(time.monotonic() - t0)

        chatter = threading.Thread(target=chat)
        chatter.start()
        durations: list[float] = []
        motd_ids: list[str] = []
        while chatter.is_alive() and len(durations) < 200:
            t0 = time.monotonic()
            motd_ids.append(client.set_motd(SAMPLE_CHANNEL, "not held up"))
            durations.append(time.monotonic() - t0)
            time.sleep(0.05)
        chatter.join(10)

    assert chat_elapsed and 1.8 <= chat_elapsed[0] < 5.0, chat_elapsed
    assert len(durations) >= 10
    assert max(durations) < 0.2, max(durations)

    def position(predicate: Callable[[dict[str, Any]], bool]) -> int:
        bodies = [json.loads(m.data) for m in wire.messages]
        return next(i for i, body in enumerate(bodies) if predicate(body))

    wire.wait(lambda msgs: any(b'"paced:5"' in m.data for m in msgs))
    wire.wait(lambda msgs: any(motd_ids[-1].encode() in m.data for m in msgs))
    last_chat = position(lambda b: b["data"].get("message") == "paced:5")
    fifth_motd = position(lambda b: b["correlation_id"] == motd_ids[4])
    assert fifth_motd < last_chat, "set_motd waited behind the paced chat"


async def _stream_messages(url: str, create: bool) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if create:
            await js.add_stream(name="COMMANDS", subjects=["kryten.commands.>"])
            return []
        info = await js.stream_info("COMMANDS")
        return [
            (await js.get_msg("COMMANDS", seq)).data or b""
            for seq in range(1, info.state.messages + 1)
        ]
    finally:
        await nc.close()


def test_transient_publish_failure_is_retried_once(nats_server: NatsServer) -> None:
    """A real transient failure: while the server is down nats-py's 2 MiB reconnect
    buffer is full, so the command is refused before nats-py takes it (retryable)."""
    asyncio.run(_stream_messages(nats_server.url, create=True))
    client = client_for(
        nats_server.url,
        chat_min_delay=0,
        retry_attempts=10,
        retry_delay=0.2,
        nats={"servers": [nats_server.url], "reconnect_time_wait": 0.05},
    )
    client.connect()
    restart = threading.Timer(0.6, nats_server.start)
    try:
        nats_server.stop()
        deadline = time.monotonic() + 5
        while client.is_connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not client.is_connected
        size = 512 * 1024
        while size >= 1:  # fill the reconnect buffer to the last byte
            try:
                client.publish("junk.fill", b"x" * size)
            except PublishError as exc:
                assert exc.retryable
                size //= 2
        with pytest.raises(PublishError) as refused:
            client.publish("junk.fill", b"x")
        assert refused.value.retryable

        restart.start()
        t0 = time.monotonic()
        cid = client.set_motd(SAMPLE_CHANNEL, "sent once")
        elapsed = time.monotonic() - t0
        restart.join()
        assert elapsed >= 0.2, "the first attempt cannot have succeeded"
        client.flush(5)
    finally:
        restart.cancel()
        if restart.is_alive():
            restart.join()
        client.disconnect()
    bodies = [json.loads(data) for data in asyncio.run(_stream_messages(nats_server.url, False))]
    assert [b["correlation_id"] for b in bodies] == [cid]
    assert bodies[0]["data"] == {"motd": "sent once"}
