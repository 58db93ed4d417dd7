"""kryten-py's module-level key-value helpers (``kryten.kv_store``), blocking.

Where kryten-py's helpers take nats-py objects, these take what kryten-sync hands out:

- :func:`get_kv_store` and :func:`get_or_create_kv_store` take a connected
  :class:`~kryten_sync.KrytenClient` as ``nats_client`` (kryten-py: a nats-py client) and
  return the client's :class:`~kryten_sync.KeyValueStore` for the bucket;
- :func:`kv_get`, :func:`kv_put`, :func:`kv_delete`, :func:`kv_keys` and
  :func:`kv_get_all` take such a store as ``kv_store`` (kryten-py: a nats-py ``KeyValue``).

Behaviour is kryten-py's: the bucket helpers log on ``logger`` and raise; the others never
raise, they log the failure (when a ``logger`` is given) and return the default, False,
``[]`` or ``{}``. Values are stored as kryten-py stores them (:func:`encode_value`) and read
back as bytes, or parsed JSON with ``parse_json`` (a value that is not JSON reads as the
default).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from .errors import BucketNotFoundError
from .raw import encode_json, encode_payload

#: kryten-py's default ``max_value_size`` for a bucket it creates: 1 MiB.
DEFAULT_MAX_VALUE_SIZE = 1024 * 1024


class Bucket(Protocol):
    """What the value helpers use of a bucket (a :class:`~kryten_sync.KeyValueStore`)."""

    def get(self, key: str) -> Any: ...  # bytes, or None if there is no such key

    def put(self, key: str, value: bytes) -> object: ...

    def delete(self, key: str) -> object: ...

    def keys(self) -> list[str]: ...

    def get_all(self) -> dict[str, Any]: ...  # key -> bytes


class BucketSource(Protocol):
    """What the bucket helpers use of a client (a :class:`~kryten_sync.KrytenClient`)."""

    def get_kv_store(self, bucket: str, /) -> Any: ...

    def get_or_create_kv_store(
        self, bucket: str, /, *, description: str | None, max_value_size: int
    ) -> Any: ...


def encode_value(value: object, as_json: bool = False) -> bytes:
    """A value as kryten-py's ``kv_put`` stores it: JSON with ``as_json`` (any JSON value,
    compact, no NaN), else bytes as they are, a str as UTF-8 and anything else as
    ``str(value)`` in UTF-8. Raises KrytenValidationError for what cannot be encoded."""
    if as_json:
        return encode_json(value, "kv value")
    if isinstance(value, bytes):
        return value
    return encode_payload(value if isinstance(value, str) else str(value), "kv value")


def decode_value(
    raw: bytes | None,
    key: str,
    default: Any = None,
    parse_json: bool = False,
    logger: logging.Logger | None = None,
) -> Any:
    """What kryten-py's ``kv_get`` makes of a stored value: ``default`` for a missing key
    (None) or, with ``parse_json``, a value that is not JSON; an empty value as it is."""
    if raw is None:
        if logger:
            logger.debug("Key not found in KV store: %s (returning default)", key)
        return default
    if parse_json and raw:
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            if logger:
                logger.error("Failed to parse JSON for key %s: %s", key, exc)
            return default
    return raw


# --- buckets ------------------------------------------------------------------------------


def get_kv_store(
    nats_client: BucketSource, bucket_name: str, logger: logging.Logger | None = None
) -> Any:
    """The client's store for an existing bucket; logs and raises (BucketNotFoundError)
    if there is none: this helper never creates one."""
    try:
        store = nats_client.get_kv_store(bucket_name)
    except Exception as exc:
        if logger:
            logger.error(
                "KV bucket '%s' does not exist. Ensure kryten-robot is running "
                "and has created the bucket: %s",
                bucket_name,
                exc,
            )
        raise
    if logger:
        logger.debug("Accessed KV bucket: %s", bucket_name)
    return store


def get_or_create_kv_store(
    nats_client: BucketSource,
    bucket_name: str,
    description: str | None = None,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    logger: logging.Logger | None = None,
) -> Any:
    """The client's store for ``bucket_name``: an existing bucket is bound as it is
    (whatever its configuration), a missing one is created with ``description``
    (default ``"Kryten {bucket_name}"``) and ``max_value_size``."""
    try:
        store = nats_client.get_kv_store(bucket_name)
    except BucketNotFoundError:
        store = nats_client.get_or_create_kv_store(
            bucket_name,
            description=description or f"Kryten {bucket_name}",
            max_value_size=max_value_size,
        )
        if logger:
            logger.info("Created KV bucket: %s", bucket_name)
        return store
    if logger:
        logger.debug("Bound to existing KV bucket: %s", bucket_name)
    return store


# --- values -------------------------------------------------------------------------------


def kv_get(
    kv_store: Bucket,
    key: str,
    default: Any = None,
    parse_json: bool = False,
    logger: logging.Logger | None = None,
) -> Any:
    """The value of ``key`` as bytes (parsed JSON with ``parse_json``); ``default`` if the
    key is missing, the value is not JSON (``parse_json``) or the read fails."""
    try:
        raw = kv_store.get(key)
    except Exception as exc:
        if logger:
            logger.error("Failed to get key %s: %s", key, exc)
        return default
    return decode_value(raw, key, default, parse_json, logger)


def kv_put(
    kv_store: Bucket,
    key: str,
    value: Any,
    as_json: bool = False,
    logger: logging.Logger | None = None,
) -> bool:
    """Store ``value`` (see :func:`encode_value`); True if stored, False if not."""
    try:
        kv_store.put(key, encode_value(value, as_json))
    except Exception as exc:
        if logger:
            logger.error("Failed to put key %s: %s", key, exc)
        return False
    if logger:
        logger.debug("Stored key %s in KV store", key)
    return True


def kv_delete(kv_store: Bucket, key: str, logger: logging.Logger | None = None) -> bool:
    """Delete ``key``; True if done (also when there was no such key), False if not."""
    try:
        kv_store.delete(key)
    except Exception as exc:
        if logger:
            logger.error("Failed to delete key %s: %s", key, exc)
        return False
    if logger:
        logger.debug("Deleted key %s from KV store", key)
    return True


def kv_keys(kv_store: Bucket, logger: logging.Logger | None = None) -> list[str]:
    """The bucket's keys; ``[]`` if it is empty or the read fails."""
    try:
        return list(kv_store.keys())
    except Exception as exc:
        if logger:
            logger.error("Failed to get keys: %s", exc)
        return []


def kv_get_all(
    kv_store: Bucket, parse_json: bool = False, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """Every key with its value as :func:`kv_get` reads it, read in one pass; keys whose
    value reads as None (with ``parse_json``: not JSON, or JSON ``null``) are left out;
    ``{}`` if the read fails."""
    try:
        values = kv_store.get_all()
    except Exception as exc:
        if logger:
            logger.error("Failed to get keys: %s", exc)
        return {}
    result: dict[str, Any] = {}
    for key, raw in values.items():
        value = decode_value(raw, key, None, parse_json, logger)
        if value is not None:
            result[key] = value
    return result


__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "Bucket",
    "BucketSource",
    "decode_value",
    "encode_value",
    "get_kv_store",
    "get_or_create_kv_store",
    "kv_delete",
    "kv_get",
    "kv_get_all",
    "kv_keys",
    "kv_put",
]
