"""kryten-py's module-level key-value helpers (kryten_sync.kv_store), on a real JetStream
server: what they store, what they read back, and that the value helpers never raise."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import nats.js.api
import pytest

from kryten_sync import (
    BucketNotFoundError,
    KeyValueStore,
    KrytenClient,
    KrytenValidationError,
    get_kv_store,
    get_or_create_kv_store,
    kv_delete,
    kv_get,
    kv_get_all,
    kv_keys,
    kv_put,
)
from kryten_sync.kv_store import DEFAULT_MAX_VALUE_SIZE, encode_value
from tests._helpers import make_config
from tests._nats import AsyncNats, NatsServer

_names = itertools.count()


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with KrytenClient(make_config(shared_server.url)) as c:
        yield c


@pytest.fixture
def bucket() -> str:
    return f"helpers_{next(_names)}"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, "test.kv")
    return logging.getLogger("test.kv")


def test_encode_value_follows_kryten_py() -> None:
    assert encode_value({"a": [1, 2]}, as_json=True) == b'{"a":[1,2]}'
    assert encode_value(5, as_json=True) == b"5"
    assert encode_value("héllo", as_json=True) == '"héllo"'.encode()
    assert encode_value(None, as_json=True) == b"null"
    assert encode_value("héllo") == "héllo".encode()
    assert encode_value(b"\x00raw") == b"\x00raw"
    assert encode_value(42) == b"42"
    assert encode_value({"a": 1}) == b"{'a': 1}"  # str(value), as kryten-py stores it
    with pytest.raises(KrytenValidationError):
        encode_value(float("nan"), as_json=True)
    with pytest.raises(KrytenValidationError):
        encode_value({1, 2}, as_json=True)


def test_get_or_create_then_round_trips(
    client: KrytenClient, bucket: str, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    store = get_or_create_kv_store(client, bucket, logger=log)
    assert isinstance(store, KeyValueStore) and store.bucket == bucket
    assert f"Created KV bucket: {bucket}" in caplog.text
    assert kv_put(store, "count", 41, as_json=True, logger=log) is True
    assert kv_put(store, "name", "Alice", logger=log) is True
    assert kv_put(store, "config", {"on": True}, as_json=True, logger=log) is True
    assert kv_put(store, "raw", b"\xff\x00", logger=log) is True
    assert kv_put(store, "number", 7, logger=log) is True
    assert kv_put(store, "empty", b"", logger=log) is True

    assert kv_get(store, "count", parse_json=True, logger=log) == 41
    assert kv_get(store, "name", logger=log) == b"Alice"
    assert kv_get(store, "config", default={}, parse_json=True) == {"on": True}
    assert kv_get(store, "raw") == b"\xff\x00"
    assert kv_get(store, "number", parse_json=True) == 7  # stored as "7"
    assert kv_get(store, "empty", default="d", parse_json=True) == b""  # kryten-py: as is
    assert kv_get(store, "missing", default="d", logger=log) == "d"
    # The bytes are what the client itself reads.
    assert client.kv_get(bucket, "config") == b'{"on":true}'

    assert kv_keys(store, logger=log) == ["config", "count", "empty", "name", "number", "raw"]
    assert kv_get_all(store) == {
        "config": b'{"on":true}',
        "count": b"41",
        "empty": b"",
        "name": b"Alice",
        "number": b"7",
        "raw": b"\xff\x00",
    }
    # parse_json: values that are not JSON are left out, the empty one kept as it is.
    assert kv_get_all(store, parse_json=True, logger=log) == {
        "config": {"on": True},
        "count": 41,
        "empty": b"",
        "number": 7,
    }
    assert "Failed to parse JSON for key name" in caplog.text

    assert kv_delete(store, "name", logger=log) is True
    assert kv_delete(store, "never-there", logger=log) is True
    assert kv_get(store, "name", default=None) is None
    assert "name" not in kv_keys(store)

    # Bound again: the existing bucket, as it is.
    again = get_or_create_kv_store(client, bucket, logger=log)
    assert again.bucket == bucket and kv_get(again, "count", parse_json=True) == 41
    assert f"Bound to existing KV bucket: {bucket}" in caplog.text
    assert get_kv_store(client, bucket, logger=log).bucket == bucket


def test_a_bucket_made_with_kryten_pys_defaults_is_bound_as_it_is(
    shared_server: NatsServer, client: KrytenClient, bucket: str
) -> None:
    with AsyncNats(shared_server.url) as nc:
        config = nats.js.api.KeyValueConfig(
            bucket=bucket, description=f"Kryten {bucket}", max_value_size=DEFAULT_MAX_VALUE_SIZE
        )
        nc.call(nc.nc.jetstream().create_key_value(config=config))
    store = get_or_create_kv_store(client, bucket)
    assert kv_put(store, "k", [1], as_json=True)
    assert kv_get(store, "k", parse_json=True) == [1]


def test_created_buckets_have_kryten_pys_configuration(
    shared_server: NatsServer, client: KrytenClient, bucket: str
) -> None:
    get_or_create_kv_store(client, bucket, description="Mine", max_value_size=2048)
    with AsyncNats(shared_server.url) as nc:
        status = nc.call(nc.nc.jetstream().stream_info(f"KV_{bucket}"))
    assert status.config.description == "Mine"
    assert status.config.max_msg_size == 2048
    get_or_create_kv_store(client, f"{bucket}_d")
    with AsyncNats(shared_server.url) as nc:
        status = nc.call(nc.nc.jetstream().stream_info(f"KV_{bucket}_d"))
    assert status.config.description == f"Kryten {bucket}_d"
    assert status.config.max_msg_size == DEFAULT_MAX_VALUE_SIZE


def test_get_kv_store_never_creates_and_raises_with_a_log(
    client: KrytenClient, bucket: str, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(BucketNotFoundError):
        get_kv_store(client, bucket, logger=log)
    assert f"KV bucket '{bucket}' does not exist" in caplog.text
    with pytest.raises(BucketNotFoundError):
        client.get_kv_store(bucket)  # still not there


def test_value_helpers_report_failures_instead_of_raising(
    shared_server: NatsServer, bucket: str, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with KrytenClient(make_config(shared_server.url)) as c:
        store = get_or_create_kv_store(c, bucket)
        kv_put(store, "k", "v")
        # A write to a bucket deleted meanwhile, a value that cannot be encoded, a key
        # the server would refuse.
        with AsyncNats(shared_server.url) as nc:
            nc.call(nc.nc.jetstream().delete_key_value(bucket))
        assert kv_put(store, "k", "v", logger=log) is False
        assert kv_put(store, "k", float("nan"), as_json=True, logger=log) is False
        assert kv_put(store, "bad key", "v", logger=log) is False
        assert kv_delete(store, "k", logger=log) is False
        assert kv_get(store, "bad key", default="d", logger=log) == "d"
    # Disconnected: every helper answers, none raises.
    assert kv_get(store, "k", default="d", logger=log) == "d"
    assert kv_put(store, "k", "v", logger=log) is False
    assert kv_delete(store, "k", logger=log) is False
    assert kv_keys(store, logger=log) == []
    assert kv_get_all(store, logger=log) == {}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(m.startswith("Failed to put key k") for m in errors), errors
    assert any(m.startswith("Failed to delete key k") for m in errors), errors
    assert any(m.startswith("Failed to get key bad key") for m in errors), errors
    assert any(m.startswith("Failed to get keys") for m in errors), errors
