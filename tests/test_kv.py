"""JetStream key-value access against a real nats-server with JetStream: value round trips,
missing keys and buckets, bucket configuration, watches, and a server restart in the
middle. What the client stored is checked with plain nats-py, independently of it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from kryten_sync import (
    KrytenClient,
    KrytenConnectionError,
    KrytenError,
    KrytenValidationError,
)
from kryten_sync.kv import (
    BucketConfigError,
    BucketNotFoundError,
    KeyValueError,
    KeyValueStore,
    KvEntry,
    KvWatch,
)
from tests._helpers import make_config, wait_until
from tests._nats import NatsServer

_names = itertools.count(1)


def new_bucket() -> str:
    return f"test_kv_{next(_names)}"


def raw_js(url: str, fn: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``fn(js)`` with a plain nats-py JetStream context (a separate connection)."""

    async def main() -> Any:
        nc = await nats.connect(url)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def raw_create(url: str, bucket: str, **config: Any) -> None:
    async def create(js: Any) -> None:
        await js.create_key_value(config=KeyValueConfig(bucket=bucket, **config))

    raw_js(url, create)


def raw_get(url: str, bucket: str, key: str) -> bytes | None:
    async def get(js: Any) -> bytes | None:
        kv: KeyValue = await js.key_value(bucket)
        return (await kv.get(key)).value

    result: bytes | None = raw_js(url, get)
    return result


def raw_put(url: str, bucket: str, *items: tuple[str, bytes]) -> None:
    async def put(js: Any) -> None:
        kv: KeyValue = await js.key_value(bucket)
        for key, value in items:
            await kv.put(key, value)

    raw_js(url, put)


class Recorder:
    """A watch handler that records entries and the threads it ran on."""

    def __init__(self) -> None:
        self.entries: list[KvEntry] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, entry: KvEntry) -> None:
        with self.lock:
            self.entries.append(entry)
            self.threads.add(threading.current_thread().name)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[KvEntry]:
        wait_until(lambda: len(self.entries) >= count, timeout, f"{count} entries")
        return list(self.entries)


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    c = KrytenClient(make_config(shared_server.url))
    c.connect()
    try:
        yield c
    finally:
        c.disconnect()


@pytest.fixture
def store(client: KrytenClient) -> KeyValueStore:
    return client.get_or_create_kv_store(new_bucket())


# --------------------------------------------------------------------------- values


def test_round_trip_of_each_value_type(
    client: KrytenClient, store: KeyValueStore, shared_server: NatsServer
) -> None:
    bucket = store.bucket
    document = {"name": "café", "n": [1, 2.5, None, True], "nested": {"x": "\u2014"}}
    rev1 = client.kv_put(bucket, "dict", document)
    rev2 = client.kv_put(bucket, "list", [1, "two", {"three": 3}])
    rev3 = client.kv_put(bucket, "str", "naïve ☕ text")
    rev4 = client.kv_put(bucket, "bytes", b"\x00\xff\xfe not utf-8")
    rev5 = client.kv_put(bucket, "bytearray", bytearray(b"ba"))
    assert rev1 < rev2 < rev3 < rev4 < rev5

    # Stored as documented: JSON, UTF-8, bytes unchanged (read back with plain nats-py).
    url = shared_server.url
    assert json.loads(raw_get(url, bucket, "dict") or b"") == document
    assert raw_get(url, bucket, "str") == "naïve ☕ text".encode()
    assert raw_get(url, bucket, "bytes") == b"\x00\xff\xfe not utf-8"
    assert raw_get(url, bucket, "bytearray") == b"ba"

    assert client.kv_get(bucket, "dict", parse_json=True) == document
    assert client.kv_get(bucket, "list", parse_json=True) == [1, "two", {"three": 3}]
    assert client.kv_get(bucket, "str") == "naïve ☕ text".encode()
    assert client.kv_get(bucket, "bytes") == b"\x00\xff\xfe not utf-8"
    assert store.get("dict", parse_json=True) == document

    client.kv_put(bucket, "empty", b"")
    assert client.kv_get(bucket, "empty", "default") == b""

    # Overwrite keeps the latest.
    client.kv_put(bucket, "str", "second")
    assert client.kv_get(bucket, "str") == b"second"


@pytest.mark.parametrize(
    "value",
    [
        None,
        ("a", "b"),
        {"a", "b"},
        object(),
        {"bad": object()},
        {"nan": float("nan")},
    ],
    ids=["none", "tuple", "set", "object", "dict-unserialisable", "nan"],
)
def test_put_refuses_other_types(client: KrytenClient, store: KeyValueStore, value: Any) -> None:
    with pytest.raises(KrytenValidationError) as info:
        client.kv_put(store.bucket, "k", value)
    assert "object at 0x" not in str(info.value)
    assert client.kv_get(store.bucket, "k", "unset") == "unset"  # nothing was stored
    assert client.kv_keys(store.bucket) == []


@pytest.mark.parametrize(
    ("value", "as_json", "stored"),
    [
        (42, False, b"42"),
        (1.5, False, b"1.5"),
        (True, False, b"True"),
        ("Alice", False, b"Alice"),
        (b"\x00raw", False, b"\x00raw"),
        ({"a": 1}, False, b'{"a":1}'),
        ({"enabled": True, "max": 100}, True, b'{"enabled":true,"max":100}'),
        (42, True, b"42"),
        ("Alice", True, b'"Alice"'),
        (None, True, b"null"),
        (["a", 1], True, b'["a",1]'),
    ],
)
def test_put_stores_by_kryten_py_rules(
    client: KrytenClient, store: KeyValueStore, value: Any, as_json: bool, stored: bytes
) -> None:
    client.kv_put(store.bucket, "k", value, as_json)
    assert client.kv_get(store.bucket, "k") == stored
    if as_json:
        assert client.kv_get(store.bucket, "k", None, True) == value


def test_parse_json_of_a_non_json_value_raises(client: KrytenClient, store: KeyValueStore) -> None:
    store.put("motd", "<b>not json</b>")
    with pytest.raises(KeyValueError, match="not JSON"):
        store.get("motd", parse_json=True)
    with pytest.raises(KeyValueError, match="'motd'"):
        store.get_all(parse_json=True)
    assert store.get("motd") == b"<b>not json</b>"


def test_invalid_names_are_refused_before_sending(client: KrytenClient) -> None:
    for bucket in ["has.dot", "has space", "", "star*", 5]:
        with pytest.raises(KrytenValidationError, match="bucket"):
            client.kv_get(bucket, "k")  # type: ignore[arg-type]
    for key in ["has space", ".lead", "trail.", "", "a*", "a>b", None]:
        with pytest.raises(KrytenValidationError, match="key"):
            client.kv_put("b", key, "v")  # type: ignore[arg-type]
    for pattern in ["", "a..b", "a.>.b", "a b"]:
        with pytest.raises(KrytenValidationError, match="pattern"):
            client.kv_watch("b", pattern, lambda e: None)


# --------------------------------------------------------------------------- missing


def test_missing_key_or_bucket_reads_default(client: KrytenClient, store: KeyValueStore) -> None:
    assert client.kv_get(store.bucket, "nope") is None
    assert client.kv_get(store.bucket, "nope", default={"d": 1}, parse_json=True) == {"d": 1}
    assert client.kv_get("no_such_bucket", "k", "fallback") == "fallback"
    assert client.kv_keys("no_such_bucket") == []
    assert client.kv_get_all("no_such_bucket") == {}

    store.put("gone", "x")
    store.delete("gone")
    assert store.get("gone", "deleted") == "deleted"
    store.delete("never-there")  # deleting a missing key is fine


def test_writes_and_binds_to_a_missing_bucket_raise(client: KrytenClient) -> None:
    for call in (
        lambda: client.kv_put("no_such_bucket", "k", "v"),
        lambda: client.kv_delete("no_such_bucket", "k"),
        lambda: client.get_kv_store("no_such_bucket"),
        lambda: client.kv_watch("no_such_bucket", ">", lambda e: None),
    ):
        with pytest.raises(BucketNotFoundError, match="no_such_bucket") as info:
            call()
        assert isinstance(info.value, KrytenError)
        assert info.value.bucket == "no_such_bucket"


def test_put_to_a_bucket_deleted_after_binding_raises(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bucket = new_bucket()
    client.get_or_create_kv_store(bucket).put("k", "v")

    async def delete(js: Any) -> None:
        await js.delete_key_value(bucket)

    raw_js(shared_server.url, delete)
    # Reads: the default, although the handle is cached; writes and watches raise.
    assert client.kv_get(bucket, "k", "default") == "default"
    assert client.kv_keys(bucket) == []
    assert client.kv_get_all(bucket) == {}
    with pytest.raises(BucketNotFoundError, match=bucket):
        client.kv_put(bucket, "k", "v")
    client.get_or_create_kv_store(bucket)  # recreated: usable again
    client.kv_put(bucket, "k", "again")
    raw_js(shared_server.url, delete)
    with pytest.raises(BucketNotFoundError, match=bucket):
        client.kv_watch(bucket, ">", lambda e: None)


def test_without_jetstream_the_error_says_so() -> None:
    with NatsServer() as server:
        c = KrytenClient(make_config(server.url))
        c.connect()
        try:
            for call in (
                lambda: c.kv_get("b", "k"),
                lambda: c.kv_put("b", "k", "v"),
                lambda: c.get_or_create_kv_store("b"),
            ):
                with pytest.raises(KrytenConnectionError, match="JetStream is not available"):
                    call()
        finally:
            c.disconnect()


# --------------------------------------------------------------------------- buckets


def test_get_or_create_creates_with_the_requested_config(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bucket = new_bucket()
    store = client.get_or_create_kv_store(
        bucket, description="test bucket", history=5, ttl=120, max_value_size=4096
    )
    assert store.bucket == bucket

    async def status(js: Any) -> Any:
        return (await (await js.key_value(bucket)).status()).stream_info.config

    cfg = raw_js(shared_server.url, status)
    assert (cfg.max_msgs_per_subject, cfg.max_age, cfg.max_msg_size) == (5, 120.0, 4096)
    assert cfg.description == "test bucket"

    # The same configuration again binds (the description is not compared).
    client.get_or_create_kv_store(bucket, history=5, ttl=120.0, max_value_size=4096)
    client.get_kv_store(bucket).put("k", b"x" * 4096)
    with pytest.raises(KeyValueError, match="size"):
        store.put("k", b"x" * 4097)


def test_get_or_create_refuses_a_conflicting_config(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bucket = new_bucket()
    raw_create(shared_server.url, bucket, history=3, max_value_size=1024)
    with pytest.raises(BucketConfigError) as info:
        client.get_or_create_kv_store(bucket, max_value_size=-1, history=1, ttl=30)
    err = info.value
    assert err.bucket == bucket
    assert err.differences == {
        "history": (3, 1),
        "ttl": (None, 30.0),
        "max_value_size": (1024, -1),
    }
    text = str(err)
    assert bucket in text
    assert "history is 3 (requested 1)" in text
    assert "ttl is none (requested 30 s)" in text
    assert "max_value_size is 1024 (requested unlimited)" in text

    # Bound as it is, or with the matching configuration.
    client.get_kv_store(bucket).put("k", "v")
    client.get_or_create_kv_store(bucket, history=3, max_value_size=1024)


def test_settings_not_requested_are_not_compared(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bucket = new_bucket()
    raw_create(shared_server.url, bucket, history=3, max_value_size=1024, ttl=60)
    client.get_or_create_kv_store(bucket)  # bound as it is, as kryten-py does
    client.get_or_create_kv_store(bucket, "described", history=3)
    with pytest.raises(BucketConfigError) as info:
        client.get_or_create_kv_store(bucket, None, 2048)
    assert info.value.differences == {"max_value_size": (1024, 2048)}


def test_buckets_are_created_with_kryten_py_defaults(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bucket = new_bucket()
    client.get_or_create_kv_store(bucket, "a bucket")

    async def config(js: Any) -> tuple[int, int, str]:
        info = await js.stream_info(f"KV_{bucket}")
        cfg = info.config
        return cfg.max_msg_size, cfg.max_msgs_per_subject, cfg.description

    assert raw_js(shared_server.url, config) == (1024 * 1024, 1, "a bucket")
    assert client.get_or_create_kv_store(bucket, max_value_size=1024 * 1024).bucket == bucket


def test_existing_bucket_with_default_config_is_bound(
    client: KrytenClient, shared_server: NatsServer
) -> None:
    bucket = new_bucket()
    raw_create(shared_server.url, bucket)
    raw_put(shared_server.url, bucket, ("from-elsewhere", b"1"))
    store = client.get_or_create_kv_store(bucket)
    assert store.get("from-elsewhere") == b"1"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"history": 0}, "history"),
        ({"history": 65}, "history"),
        ({"history": True}, "history"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"max_value_size": 0}, "max_value_size"),
        ({"max_value_size": -2}, "max_value_size"),
        ({"description": 5}, "description"),
    ],
)
def test_get_or_create_validates_its_arguments(
    client: KrytenClient, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(KrytenValidationError, match=match):
        client.get_or_create_kv_store(new_bucket(), **kwargs)


def test_keys_and_get_all(client: KrytenClient, store: KeyValueStore) -> None:
    assert store.keys() == []
    assert store.get_all() == {}
    store.put("b", {"v": 2})
    store.put("a", [1])
    store.put("c.d", "text")
    store.put("gone", "x")
    store.delete("gone")
    assert client.kv_keys(store.bucket) == ["a", "b", "c.d"]
    assert client.kv_get_all(store.bucket) == {"a": b"[1]", "b": b'{"v":2}', "c.d": b"text"}
    store.put("c.d", '"json text"')
    assert store.get_all(parse_json=True) == {"a": [1], "b": {"v": 2}, "c.d": "json text"}


def test_concurrent_puts_from_many_threads(client: KrytenClient, store: KeyValueStore) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                store.put(f"t{n}.k{i}", {"n": n, "i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    values = store.get_all(parse_json=True)
    assert len(values) == 160
    assert values["t7.k19"] == {"n": 7, "i": 19}


# --------------------------------------------------------------------------- watches


def test_watch_delivers_puts_and_deletes_in_order_on_a_worker_thread(
    client: KrytenClient, store: KeyValueStore, shared_server: NatsServer
) -> None:
    store.put("before", "not delivered: the watch starts after it")
    rec = Recorder()
    watch = client.kv_watch(store.bucket, ">", rec)
    assert isinstance(watch, KvWatch) and watch.active
    for i in range(50):
        store.put(f"k{i % 5}", {"i": i})
    store.delete("k1")
    raw_put(shared_server.url, store.bucket, ("from-another-client", b"raw"))

    async def purge(js: Any) -> None:
        await (await js.key_value(store.bucket)).purge("k2")

    raw_js(shared_server.url, purge)
    entries = rec.wait_for(53)
    time.sleep(0.1)
    assert len(rec.entries) == 53

    puts = entries[:50]
    assert [e.json()["i"] for e in puts] == list(range(50))
    assert [e.key for e in puts] == [f"k{i % 5}" for i in range(50)]
    assert all(e.operation == "PUT" and e.bucket == store.bucket for e in puts)
    revisions = [e.revision for e in entries]
    assert revisions == sorted(revisions) and len(set(revisions)) == 53
    assert (entries[50].key, entries[50].operation, entries[50].value) == ("k1", "DEL", None)
    assert (entries[51].key, entries[51].value) == ("from-another-client", b"raw")
    assert (entries[52].key, entries[52].operation, entries[52].value) == ("k2", "PURGE", None)
    assert entries[0].created is not None

    # One thread, not the caller's and not the loop's.
    assert len(rec.threads) == 1
    (name,) = rec.threads
    assert name.startswith("kryten-sync-kv-")
    watch.stop()
    assert not watch.active


def test_watch_pattern_and_include_current(client: KrytenClient, store: KeyValueStore) -> None:
    store.put("user.alice", "1")
    store.put("user.bob", "2")
    store.put("user.alice", "3")
    store.put("other", "x")
    rec_pattern = Recorder()
    rec_current = Recorder()
    client.kv_watch(store.bucket, "user.*", rec_pattern)
    store.watch("user.>", rec_current, include_current=True)

    initial = rec_current.wait_for(2)
    assert [(e.key, e.value) for e in initial] == [("user.bob", b"2"), ("user.alice", b"3")]
    store.put("other", "y")
    store.put("user.carol", "4")
    store.delete("user.bob")
    rec_pattern.wait_for(2)
    rec_current.wait_for(4)
    time.sleep(0.1)
    assert [(e.key, e.operation) for e in rec_pattern.entries] == [
        ("user.carol", "PUT"),
        ("user.bob", "DEL"),
    ]
    assert [e.key for e in rec_current.entries[2:]] == ["user.carol", "user.bob"]


def test_watch_handler_errors_are_guarded(
    client: KrytenClient, store: KeyValueStore, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    hooked: list[tuple[BaseException, Any]] = []
    client.on_error(lambda exc, item: hooked.append((exc, item)))

    def handler(entry: KvEntry) -> None:
        seen.append(entry.key)
        if entry.key == "bad":
            raise RuntimeError("handler failed")

    with caplog.at_level(logging.ERROR, logger="kryten_sync"):
        watch = store.watch(">", handler)
        store.put("bad", "1")
        store.put("good", "2")
        wait_until(lambda: seen == ["bad", "good"], 5, "both entries")
    assert len(hooked) == 1
    assert isinstance(hooked[0][0], RuntimeError)
    assert isinstance(hooked[0][1], KvEntry) and hooked[0][1].key == "bad"
    assert any("handler failed" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert watch.stats.errors == 1 and watch.stats.calls == 2

    with pytest.raises(TypeError, match="async"):

        async def async_handler(entry: KvEntry) -> None:
            pass

        store.watch(">", async_handler)  # type: ignore[arg-type]


def test_watch_stop_from_outside_and_from_its_handler(
    client: KrytenClient, store: KeyValueStore
) -> None:
    rec = Recorder()
    with store.watch(">", rec) as watch:
        store.put("a", "1")
        rec.wait_for(1)
    assert not watch.active
    watch.stop()  # idempotent
    store.put("a", "2")
    time.sleep(0.2)
    assert len(rec.entries) == 1

    stopped = threading.Event()
    calls: list[str] = []
    box: dict[str, KvWatch] = {}

    def stop_self(entry: KvEntry) -> None:
        calls.append(entry.key)
        box["watch"].stop()
        stopped.set()

    box["watch"] = store.watch(">", stop_self)
    store.put("x", "1")
    assert stopped.wait(5)
    store.put("y", "2")
    time.sleep(0.2)
    assert calls == ["x"]


def test_watch_threads_end_at_disconnect(shared_server: NatsServer) -> None:
    c = KrytenClient(make_config(shared_server.url))
    c.connect()
    store = c.get_or_create_kv_store(new_bucket())
    rec = Recorder()
    watch = store.watch(">", rec)
    store.put("a", "1")
    rec.wait_for(1)
    names = set(rec.threads)
    c.disconnect()
    wait_until(
        lambda: not any(t.name in names for t in threading.enumerate()), 5, "watch thread end"
    )
    assert not watch.active
    watch.stop()  # after disconnect: a no-op, no error


# --------------------------------------------------------------------------- reconnect


def test_kv_and_watch_survive_a_server_restart(nats_server: NatsServer) -> None:
    c = KrytenClient(make_config(nats_server.url, nats={"reconnect_time_wait": 0.1}))
    c.connect()
    try:
        store = c.get_or_create_kv_store("restart_bucket", history=3)
        store.put("before", {"n": 0})
        rec = Recorder()
        watch = store.watch(">", rec)
        store.put("k", {"n": 1})
        rec.wait_for(1)
        rec_current = Recorder()  # starts with the current value of k
        store.watch("k", rec_current, include_current=True)
        rec_current.wait_for(1)
        cached = c._kv._state.buckets["restart_bucket"]  # type: ignore[union-attr]
        dropped = threading.Event()
        c.on_disconnect(dropped.set)

        nats_server.stop()
        assert dropped.wait(5)
        nats_server.start()  # same port, same JetStream store directory
        # Written by another client while ours may still be reconnecting.
        raw_put(nats_server.url, "restart_bucket", ("k", b'{"n":2}'), ("k", b'{"n":3}'))
        wait_until(lambda: c.is_connected, 10, "reconnect")

        # Reads and writes through the cached handle.
        assert store.get("before", parse_json=True) == {"n": 0}
        store.put("k", {"n": 4})
        assert store.get("k", parse_json=True) == {"n": 4}
        assert c.kv_keys("restart_bucket") == ["before", "k"]
        assert c._kv._state.buckets["restart_bucket"] is cached  # type: ignore[union-attr]

        # The watch resumed promptly, with nothing lost or repeated.
        entries = rec.wait_for(4, timeout=5)
        time.sleep(0.2)
        assert [e.json()["n"] for e in rec.entries] == [1, 2, 3, 4]
        assert [e.json()["n"] for e in rec_current.wait_for(4)] == [1, 2, 3, 4]
        assert watch.active
        store.delete("k")
        assert rec.wait_for(5)[-1].operation == "DEL"
        assert rec_current.wait_for(5)[-1].operation == "DEL"
        time.sleep(0.1)
        assert len(rec.entries) == len(rec_current.entries) == 5
        assert entries[0].revision < entries[-1].revision
    finally:
        c.disconnect()
