"""The in-process loopback NATS server, checked against a real nats-server.

Each behaviour test runs twice, once on a real nats-server and once on the loopback
server, through the same raw nats-py client, and must see the same thing there: the
loopback server is right where it acts like the real one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import nats.errors
import pytest
from nats.aio.msg import Msg

from kryten_sync import KrytenClient, KrytenError
from kryten_sync.testing import FakeBridge
from kryten_sync.tools.loopback import LoopbackServer, subject_matches
from tests._helpers import make_config, wait_until
from tests._nats import AsyncNats, NatsServer


@pytest.fixture(params=["nats-server", "loopback"])
def url(request: pytest.FixtureRequest, shared_server: NatsServer) -> Iterator[str]:
    if request.param == "nats-server":
        yield shared_server.url
        return
    with LoopbackServer() as server:
        yield server.url


class Inbox:
    """Messages a raw client received, by subscription label."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, str, bytes, dict[str, str] | None]] = []

    def cb(self, label: str) -> Any:
        def record(msg: Msg) -> None:
            with self.lock:
                self.got.append((label, msg.subject, msg.data, msg.headers))

        return record

    def labels(self) -> list[tuple[str, str]]:
        with self.lock:
            return sorted((label, subject) for label, subject, _, _ in self.got)


def test_subject_matches() -> None:
    assert subject_matches("a.b", "a.b")
    assert not subject_matches("a.b", "a.b.c")
    assert subject_matches("a.*", "a.b")
    assert not subject_matches("a.*", "a.b.c")
    assert not subject_matches("a.*", "a")
    assert subject_matches("a.>", "a.b.c")
    assert not subject_matches("a.>", "a")
    assert subject_matches(">", "a")
    assert subject_matches("*.b.>", "x.b.c.d")
    assert not subject_matches("*.b.>", "x.c.d")


def test_wildcards_and_queue_groups(url: str) -> None:
    inbox = Inbox()
    with AsyncNats(url) as sub, AsyncNats(url) as pub:
        for label, subject in [("star", "t.*"), ("tail", "t.>"), ("exact", "t.a.b"), ("all", ">")]:
            sub.subscribe(subject, cb=inbox.cb(label))
        sub.subscribe("q", cb=inbox.cb("g1"), queue="workers")
        sub.subscribe("q", cb=inbox.cb("g2"), queue="workers")
        sub.subscribe("q", cb=inbox.cb("plain"))
        pub.publish_many([("t.a", b"1"), ("t.a.b", b"2"), ("t.a.b.c", b"3"), ("x", b"4")])
        pub.publish_many([("q", str(i).encode()) for i in range(20)])
        wait_until(lambda: len(inbox.got) >= 9 + 40, 5, "every delivery")
        time.sleep(0.05)  # nothing more may come
        labels = inbox.labels()
    plain = [(label, s) for label, s in labels if label not in ("g1", "g2", "plain", "all")]
    assert plain == [
        ("exact", "t.a.b"),
        ("star", "t.a"),
        ("tail", "t.a"),
        ("tail", "t.a.b"),
        ("tail", "t.a.b.c"),
    ]
    assert [s for label, s in labels if label == "all"] == sorted(
        ["t.a", "t.a.b", "t.a.b.c", "x", *["q"] * 20]
    )
    assert [label for label, _ in labels].count("plain") == 20
    group = [label for label, _ in labels if label in ("g1", "g2")]
    assert len(group) == 20, "each message reaches exactly one member of the queue group"


def test_request_reply_headers_and_no_responders(url: str) -> None:
    with AsyncNats(url) as server_side, AsyncNats(url) as nc:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"pong:" + msg.data + (msg.headers or {}).get("X-K", "").encode())

        server_side.call(server_side.nc.subscribe("svc", cb=answer))
        server_side.flush()
        reply = nc.call(nc.nc.request("svc", b"ping", timeout=2, headers={"X-K": "v"}))
        assert reply.data == b"pong:pingv"
        with pytest.raises(nats.errors.NoRespondersError):
            nc.call(nc.nc.request("nobody.home", b"?", timeout=2))


def test_unsubscribe_after_a_number_of_messages(url: str) -> None:
    inbox = Inbox()
    with AsyncNats(url) as sub, AsyncNats(url) as pub:

        async def on_msg(msg: Msg) -> None:
            inbox.cb("s")(msg)

        subscription = sub.call(sub.nc.subscribe("limited", cb=on_msg))
        sub.call(subscription.unsubscribe(limit=2))
        sub.flush()
        pub.publish_many([("limited", b"x")] * 5)
        time.sleep(0.1)
        sub.flush()
    assert len(inbox.got) == 2


def test_the_client_and_a_fake_bridge_run_on_it_unchanged() -> None:
    with (
        LoopbackServer() as server,
        FakeBridge(server.url) as fake,
        KrytenClient(make_config(server.url)) as client,
    ):
        seen: list[str] = []
        client.on("chatMsg", handler=lambda e: seen.append(e.username))
        fake.emit("chatMsg", {"username": "bob", "msg": "hi"})
        wait_until(lambda: seen == ["bob"], 5, "the event")
        client.send_chat("lounge", "hello")
        assert fake.wait_for_command("chat").data == {"message": "hello"}
        assert client.get_version() == fake.version
        assert client.health().connected


def test_tap_sees_each_publish_before_the_publishers_flush_returns() -> None:
    seen: list[tuple[str, str, bytes | None, bytes]] = []
    with LoopbackServer(tap=lambda *m: seen.append(m)) as server, AsyncNats(server.url) as nc:
        nc.call(nc.nc.publish("a.b", b"one", reply="r.1"))
        nc.call(nc.nc.publish("a.c", b"two", headers={"K": "v"}))
        nc.flush()
        assert [(s, r, p) for s, r, _, p in seen] == [("a.b", "r.1", b"one"), ("a.c", "", b"two")]
        assert seen[1][2] is not None and b"K: v" in seen[1][2]


def test_stop_and_start_again_on_the_same_url() -> None:
    server = LoopbackServer().start()
    try:
        url = server.url
        with AsyncNats(url) as nc:
            nc.flush()
        server.stop()
        assert not server.running
        with pytest.raises((nats.errors.NoServersError, OSError)):
            AsyncNats(url, connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False)
        server.start()
        assert server.url == url
        with AsyncNats(url) as nc:
            nc.flush()
    finally:
        server.close()
    assert not server.running
    with pytest.raises(KrytenError, match="closed"):
        server.start()


def test_stop_closes_client_connections() -> None:
    closed = threading.Event()

    async def on_closed() -> None:
        closed.set()

    server = LoopbackServer().start()
    try:
        nc = AsyncNats(server.url, allow_reconnect=False, closed_cb=on_closed)
        try:
            server.stop()
            assert closed.wait(5), "the client was not disconnected"
        finally:
            nc.close()
    finally:
        server.close()


def test_a_payload_over_max_payload_is_refused(url: str) -> None:
    with AsyncNats(url) as nc:
        max_payload = nc.nc.max_payload
        with pytest.raises(nats.errors.MaxPayloadError):
            nc.call(nc.nc.publish("big", b"x" * (max_payload + 1)))


def test_protocol_errors_end_the_connection_with_err() -> None:
    with LoopbackServer() as server:
        for line in (b"PUB big 2000000\r\n", b"BOGUS\r\n", b"PUB x y\r\n", b"CONNECT {\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"CONNECT {}\r\n" + line)
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
            assert data.startswith(b"INFO "), data
            assert b"\r\n-ERR '" in data, data
