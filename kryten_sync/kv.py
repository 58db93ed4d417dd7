"""JetStream key-value access (the bridge's state buckets are read through it: state.py).

:class:`KeyValueFeature` is a connection feature (:mod:`kryten_sync._core.feature`); the client's
``kv_*`` methods delegate to it. Every blocking method runs one coroutine on the
connection's loop. Bucket handles (nats-py ``KeyValue`` objects: a bucket name and a
JetStream context, nothing tied to one socket) are cached per connection, so they outlive
nats-py's reconnects; a new ``connect()`` starts a new cache.

A watch is an ordered JetStream push consumer feeding its own :class:`Worker` thread (one
per watch, entries in stream order). nats-py notices a consumer lost in a server restart
only after missing heartbeats (10-20 s), so the watch re-creates its consumer itself
after each reconnect, starting after the last stream sequence it delivered: nothing is
repeated, and nothing is lost while the server keeps the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import nats.errors
import nats.js.errors as jse
from nats.js import api
from nats.js.kv import KeyValue

from ._core.feature import AttachedFeature, Link
from ._core.workers import Worker, check_sync_callable
from ._validate import fail, require_int, require_number, require_text
from .errors import (
    BucketConfigError,
    BucketNotFoundError,
    KeyValueError,
    KrytenConnectionError,
    KrytenError,
    KrytenValidationError,
    LoopDiedError,
    NotConnectedError,
)
from .kv_store import DEFAULT_MAX_VALUE_SIZE, encode_value
from .raw import encode_json
from .stats import HandlerStats

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

T = TypeVar("T")

KvOperation = Literal["PUT", "DEL", "PURGE"]
KvHandler = Callable[["KvEntry"], None]

# Used with fullmatch: "$" would also match before a trailing newline.
_BUCKET_RE = re.compile(r"[a-zA-Z0-9_-]+")
_KEY_RE = re.compile(r"[-/_=.a-zA-Z0-9]+")
_STREAM_IN_USE = 10058  # JetStream: stream name already in use with a different configuration
_CONSUMER_INACTIVE = 60.0  # server removes a watch consumer nobody listens to after this


# --------------------------------------------------------------------------- errors


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class KvEntry:
    """One change seen by :meth:`KeyValueFeature.kv_watch`."""

    bucket: str
    key: str
    value: bytes | None
    """The new value (``None`` for ``DEL`` and ``PURGE``)."""
    revision: int
    """The stream sequence of the change (increases with every change in the bucket)."""
    operation: KvOperation
    created: datetime | None = None
    """When the server stored the change."""

    def text(self) -> str | None:
        """The value decoded as UTF-8 (None for deletes)."""
        return None if self.value is None else self.value.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The value parsed as JSON (None for deletes); ValueError if it is not JSON."""
        return None if self.value is None else json.loads(self.value)


def _check_bucket(bucket: object) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
        raise KrytenValidationError(
            f"invalid key-value bucket name {bucket!r}: use letters, digits, '-' and '_'"
        )
    return bucket


def is_bucket_name(name: str) -> bool:
    """Whether ``name`` is a valid bucket name (letters, digits, ``-`` and ``_``)."""
    return _BUCKET_RE.fullmatch(name) is not None


def _valid_key(key: str) -> bool:
    return bool(_KEY_RE.fullmatch(key)) and not key.startswith(".") and not key.endswith(".")


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _valid_key(key):
        raise KrytenValidationError(
            f"invalid key-value key {key!r}: use letters, digits and '-/_=.' (no '.' at either end)"
        )
    return key


def _check_pattern(pattern: object) -> str:
    """A key, or a subject-style pattern of key tokens with ``*`` and a final ``>``."""
    if isinstance(pattern, str) and pattern:
        tokens = pattern.split(".")
        if all(
            tok == "*" or (tok == ">" and i == len(tokens) - 1) or (tok and _KEY_RE.fullmatch(tok))
            for i, tok in enumerate(tokens)
        ):
            return pattern
    raise KrytenValidationError(
        f"invalid key pattern {pattern!r}: a key, or '.'-separated key tokens with '*' "
        "for one token and a final '>' for the rest"
    )


def _decode_json(raw: bytes, bucket: str, key: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise KeyValueError(
            f"value of {key!r} in bucket {bucket!r} is not JSON: {raw[:60]!r} "
            "(read it with parse_json=False)",
            bucket=bucket,
        ) from exc


def _kv_error(exc: Exception, what: str, bucket: str) -> Exception:
    """The kryten-sync error for a JetStream error; others are left to Connection.call."""
    if isinstance(exc, jse.BucketNotFoundError):
        return BucketNotFoundError(f"{what}: bucket {bucket!r} does not exist", bucket=bucket)
    if isinstance(exc, nats.errors.NoRespondersError | jse.ServiceUnavailableError):
        return KrytenConnectionError(
            f"{what}: JetStream is not available on the NATS server (is it started with "
            "JetStream enabled?)"
        )
    if isinstance(exc, jse.InvalidKeyError | jse.InvalidBucketNameError):
        return KrytenValidationError(f"{what}: invalid key or bucket name")
    if isinstance(exc, jse.APIError):
        detail = exc.description or type(exc).__name__
        return KeyValueError(f"{what}: {detail} (JetStream error {exc.err_code})", bucket=bucket)
    return exc


async def _guarded(coro: Coroutine[Any, Any, T], what: str, bucket: str) -> T:
    try:
        return await coro
    except (KrytenError, asyncio.CancelledError):
        raise
    except Exception as exc:
        err = _kv_error(exc, what, bucket)
        if err is exc:
            raise
        raise err from exc


def _describe(field: str, value: object) -> str:
    if field == "ttl":
        return "none" if value is None else f"{value:g} s"
    if field == "max_value_size" and value == -1:
        return "unlimited"
    return str(value)


def _differences(
    cfg: api.StreamConfig, history: int | None, ttl: float | None, max_value_size: int | None
) -> dict[str, tuple[object, object]]:
    """The requested settings (None: not requested) that differ from ``cfg``."""
    have_ttl = cfg.max_age or None
    have_size = cfg.max_msg_size if cfg.max_msg_size and cfg.max_msg_size > 0 else -1
    diffs: dict[str, tuple[object, object]] = {}
    if history is not None and cfg.max_msgs_per_subject != history:
        diffs["history"] = (cfg.max_msgs_per_subject, history)
    if ttl is not None and (have_ttl is None or not math.isclose(have_ttl, ttl, abs_tol=1e-6)):
        diffs["ttl"] = (have_ttl, ttl)
    if max_value_size is not None and have_size != max_value_size:
        diffs["max_value_size"] = (have_size, max_value_size)
    return diffs


def kv_value(value: Any, as_json: bool, where: str) -> bytes:
    """The bytes the client's ``kv_put`` stores: kryten-py's rules
    (:func:`~kryten_sync.kv_store.encode_value`: any JSON value as JSON with ``as_json``, a
    str as UTF-8, bytes as they are, a number as ``str(value)``), except that a dict or
    list is stored as JSON even without ``as_json``, and other values (None, tuples,
    objects) are refused: kryten-py would store their Python repr, which no reader can
    parse."""
    if as_json or isinstance(value, dict | list):
        return encode_json(value, where)
    if isinstance(value, bytes | bytearray | memoryview | str | int | float):
        return encode_value(bytes(value) if isinstance(value, bytearray | memoryview) else value)
    raise KrytenValidationError(
        f"{where} must be bytes, str, a number, or a dict or list (stored as JSON), got "
        f"{type(value).__name__}; pass as_json=True to store any JSON value"
    )


# --------------------------------------------------------------------------- loop side


class _KvState:
    """Key-value state of one connection; used on its loop thread only."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.js: JetStreamContext = link.nc.jetstream(timeout=link.config.request_timeout)
        self.buckets: dict[str, KeyValue] = {}
        self.watches: set[_Watch] = set()

    async def bind(self, bucket: str, *, missing_ok: bool = False) -> KeyValue | None:
        """The cached handle of ``bucket``; None (missing_ok) or BucketNotFoundError if
        the bucket does not exist."""
        kv = self.buckets.get(bucket)
        if kv is None:
            try:
                kv = await self.js.key_value(bucket)
            except jse.BucketNotFoundError:
                if missing_ok:
                    return None
                raise BucketNotFoundError(
                    f"key-value bucket {bucket!r} does not exist", bucket=bucket
                ) from None
            self.buckets[bucket] = kv
        return kv

    async def bind_existing(self, bucket: str) -> KeyValue:
        return cast(KeyValue, await self.bind(bucket))

    async def read(
        self, bucket: str, op: Callable[[KeyValue], Coroutine[Any, Any, T]], empty: T
    ) -> T:
        """Run a read; ``empty`` if the bucket does not exist (also when it was deleted
        after its handle was cached)."""
        for _ in range(2):
            kv = await self.bind(bucket, missing_ok=True)
            if kv is None:
                return empty
            try:
                return await op(kv)
            except jse.NotFoundError:  # the stream is gone: forget the handle, look again
                self.buckets.pop(bucket, None)
        return empty

    async def publish(self, bucket: str, op: Callable[[KeyValue], Coroutine[Any, Any, T]]) -> T:
        """Run a write; if no stream took it, re-bind once (the cached handle may name a
        bucket deleted since, or JetStream was not ready yet) and retry."""
        kv = await self.bind_existing(bucket)
        try:
            return await op(kv)
        except jse.NoStreamResponseError:
            self.buckets.pop(bucket, None)
        return await op(await self.bind_existing(bucket))

    def add_watch(self, watch: _Watch) -> None:
        self.watches.add(watch)

    def restart_watches(self) -> None:
        """After a reconnect, re-create the watches' consumers: nats-py's ordered
        consumer notices a consumer lost in a server restart only after missed
        heartbeats (about 15 s)."""
        for watch in list(self.watches):
            watch.restart()


def _entry(bucket: str, prefix: str, msg: Msg, seq: int) -> KvEntry | None:
    headers = msg.headers or {}
    op = headers.get("KV-Operation")
    if op is None and "Nats-Marker-Reason" in headers:
        # nats-server 2.11+ marks server-side removals with this header instead.
        op = {"MaxAge": "PURGE", "Purge": "PURGE", "Remove": "DEL"}.get(
            headers["Nats-Marker-Reason"]
        )
        if op is None:
            return None
    operation: KvOperation = "DEL" if op == "DEL" else "PURGE" if op == "PURGE" else "PUT"
    created: datetime | None = None
    with contextlib.suppress(Exception):
        created = msg.metadata.timestamp
    return KvEntry(
        bucket=bucket,
        key=msg.subject[len(prefix) :],
        value=msg.data if operation == "PUT" else None,
        revision=seq,
        operation=operation,
        created=created,
    )


async def _latest(state: _KvState, bucket: str) -> dict[str, bytes]:
    """The current value of every key (deleted keys left out), in one pass.

    Not nats-py's ``watchall()``/``keys()``: they take "caught up" from the consumer's
    ``num_pending``, which is already 0 when the server has sent every message but the
    client has not read them yet (measured: 1 read in 12 of a bucket just written came
    back empty). Each message's own ``num_pending`` says reliably which one is last.
    """
    stream = f"KV_{bucket}"
    info = await state.js.stream_info(stream)
    if info.state.messages == 0:
        return {}
    prefix = f"$KV.{bucket}."
    sub = await state.js.subscribe(
        prefix + ">",
        stream=stream,
        ordered_consumer=True,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT),
    )
    result: dict[str, bytes] = {}
    try:
        while True:
            msg = await sub.next_msg(timeout=state.link.config.request_timeout)
            entry = _entry(bucket, prefix, msg, msg.metadata.sequence.stream)
            if entry is not None and entry.operation == "PUT":
                result[entry.key] = entry.value or b""
            if msg.metadata.num_pending == 0:
                return result
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


class _Watch:
    """One kv_watch: its consumer (re-created after reconnects) and worker thread."""

    def __init__(
        self,
        state: _KvState,
        bucket: str,
        pattern: str,
        handler: KvHandler,
        include_current: bool,
    ) -> None:
        self.state = state
        self.link = state.link
        self.bucket = bucket
        self.pattern = pattern
        self.handler = handler
        self.include_current = include_current
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."
        self.subject = self.prefix + pattern
        self.stats = HandlerStats()
        self.worker: Worker[KvEntry] | None = None
        self.sub: JetStreamContext.PushSubscription | None = None
        self.last_seq = 0  # stream sequence of the last entry handed to the worker
        self.snapshot_end = 0  # include_current: stream's last sequence when started
        self.stopped = False
        self.restart_wanted = False
        self.restarting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            info = await self.state.js.stream_info(self.stream)
        except jse.NotFoundError:
            self.state.buckets.pop(self.bucket, None)
            raise BucketNotFoundError(
                f"key-value bucket {self.bucket!r} does not exist", bucket=self.bucket
            ) from None
        if self.include_current:
            self.snapshot_end = info.state.last_seq
        else:
            self.last_seq = info.state.last_seq
        self.worker = self.link.start_worker(f"kv-{self.bucket}", self._process)
        try:
            self.sub = await self._subscribe()
        except BaseException:
            await self.link.astop_worker(self.worker, None)
            raise
        self.state.add_watch(self)

    async def _subscribe(self) -> JetStreamContext.PushSubscription:
        if self.include_current and self.last_seq < self.snapshot_end:
            # The first values may not all have been delivered: ask for them again
            # (the ones already delivered are skipped by sequence).
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
        else:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last_seq + 1,
            )
        return await self.state.js.subscribe(
            self.subject,
            stream=self.stream,
            cb=self._on_msg,
            config=config,
            ordered_consumer=True,
            inactive_threshold=_CONSUMER_INACTIVE,
        )

    async def _on_msg(self, msg: Msg) -> None:
        worker = self.worker
        if self.stopped or worker is None:
            return
        seq = msg.metadata.sequence.stream
        if seq <= self.last_seq:
            return  # already delivered (an older consumer, or a re-sent snapshot)
        entry = _entry(self.bucket, self.prefix, msg, seq)
        if entry is not None and not await worker.put(entry):
            return  # worker shut down: not delivered
        self.last_seq = seq
        if msg.metadata.num_pending == 0:
            self.snapshot_end = 0  # caught up: the first values are all delivered

    def _process(self, entry: KvEntry) -> None:
        self.link.invoke(self.handler, entry, self.stats)

    def restart(self) -> None:
        """Re-create the consumer after the last delivered sequence (loop thread)."""
        if self.stopped:
            return
        self.restart_wanted = True
        if self.restarting is None or self.restarting.done():
            self.restarting = asyncio.get_running_loop().create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        delay = 0.05
        while self.restart_wanted and not self.stopped and not self.link.closing:
            self.restart_wanted = False
            old, self.sub = self.sub, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.unsubscribe()
            try:
                self.sub = await self._subscribe()
            except Exception as exc:
                self.restart_wanted = True
                self.link.log.limited(
                    f"kv-watch-{id(self)}",
                    "key-value watch on %s cannot resume yet: %r",
                    self.subject,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def stop(self, caller: threading.Thread) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.restarting is not None:
            self.restarting.cancel()
        self.state.watches.discard(self)
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.worker is not None:
            await self.link.astop_worker(self.worker, caller)


# --------------------------------------------------------------------------- handles


class KvWatch:
    """A running :meth:`KeyValueFeature.kv_watch`; :meth:`stop` ends it.

    Also a context manager. Disconnecting the client ends every watch.
    """

    __slots__ = ("_link", "_watch")

    def __init__(self, link: Link, watch: _Watch) -> None:
        self._link = link
        self._watch = watch

    def __repr__(self) -> str:
        state = "active" if self.active else "stopped"
        return f"<KvWatch {self.bucket}/{self.pattern} {state}>"

    @property
    def bucket(self) -> str:
        return self._watch.bucket

    @property
    def pattern(self) -> str:
        """The watched key or key pattern."""
        return self._watch.pattern

    @property
    def stats(self) -> HandlerStats:
        """Handler calls, errors and latency of this watch."""
        return self._watch.stats

    @property
    def active(self) -> bool:
        return not self._watch.stopped and not self._link.closing

    def stop(self) -> None:
        """Stop delivering (entries already queued are still handled, within
        ``shutdown_timeout``). Idempotent; callable from any thread, the handler too."""
        watch = self._watch
        if watch.stopped:
            return
        caller = threading.current_thread()
        timeout = self._link.config.shutdown_timeout + self._link.config.request_timeout
        try:
            self._link.call(watch.stop(caller), f"stop watching {watch.subject!r}", timeout)
        except (NotConnectedError, LoopDiedError):
            watch.stopped = True  # the connection, and the watch with it, is gone

    def __enter__(self) -> KvWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KeyValueStore:
    """A bound bucket: thin sugar over the client's ``kv_*`` methods (same semantics)."""

    __slots__ = ("_kv", "bucket")

    def __init__(self, kv: KeyValueFeature, bucket: str) -> None:
        self._kv = kv
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"<KeyValueStore {self.bucket!r}>"

    def get(self, key: str, default: Any = None, parse_json: bool = False) -> Any:
        """See :meth:`KeyValueFeature.kv_get`."""
        return self._kv.kv_get(self.bucket, key, default, parse_json)

    def put(self, key: str, value: Any, as_json: bool = False) -> int:
        """See :meth:`KeyValueFeature.kv_put`."""
        return self._kv.kv_put(self.bucket, key, value, as_json)

    def delete(self, key: str) -> None:
        """See :meth:`KeyValueFeature.kv_delete`."""
        self._kv.kv_delete(self.bucket, key)

    def keys(self) -> list[str]:
        """See :meth:`KeyValueFeature.kv_keys`."""
        return self._kv.kv_keys(self.bucket)

    def get_all(self, parse_json: bool = False) -> dict[str, Any]:
        """See :meth:`KeyValueFeature.kv_get_all`."""
        return self._kv.kv_get_all(self.bucket, parse_json)

    def watch(
        self, key_or_pattern: str, handler: KvHandler, *, include_current: bool = False
    ) -> KvWatch:
        """See :meth:`KeyValueFeature.kv_watch`."""
        return self._kv.kv_watch(
            self.bucket, key_or_pattern, handler, include_current=include_current
        )


# --------------------------------------------------------------------------- the mixin


class KeyValueFeature(AttachedFeature):
    """The key-value feature: blocking JetStream key-value methods (the client's
    ``kv_*`` methods delegate here).

    Parameters and their order are kryten-py's (``bucket_name`` first). Values:
    ``kv_put`` stores by kryten-py's rules (:func:`kv_value`); ``kv_get`` returns bytes
    (or the parsed JSON with ``parse_json=True``). Reads of a missing key or bucket
    return the default; writes to a missing bucket raise :class:`BucketNotFoundError`.
    Unlike kryten-py, errors are raised, not swallowed: an invalid key or bucket name
    (KrytenValidationError), a value that is not JSON under ``parse_json``
    (KeyValueError), a failed write. All methods are thread-safe.
    """

    _state: _KvState | None = None  # of the current connection (loop-owned)

    async def on_open(self, link: Link) -> None:
        await super().on_open(link)
        self._state = _KvState(link)

    def on_reconnect(self, link: Link) -> None:
        if self._state is not None:
            self._state.restart_watches()

    def after_close(self, link: Link) -> None:
        super().after_close(link)
        self._state = None

    def _kv(
        self,
        op: Callable[[_KvState], Coroutine[Any, Any, T]],
        what: str,
        bucket: str,
        link: Link | None = None,
        timeout: float | None = None,
    ) -> T:
        if link is None:
            link = self.require()
        if timeout is None:
            timeout = 2 * link.config.request_timeout + 1.0  # a bind, then the operation
        else:
            timeout = float(
                require_number(what, "timeout", timeout, minimum=0, exclusive_minimum=True)
            )

        async def run() -> T:
            state = self._state
            if state is None:
                raise NotConnectedError(f"{what}: the connection closed")
            return await _guarded(op(state), what, bucket)

        return link.call(run(), what, timeout)

    def _latest(self, bucket: str, what: str) -> dict[str, bytes]:
        """Every key's current value; ``{}`` if the bucket is empty or missing."""
        empty: dict[str, bytes] = {}
        return self._kv(
            lambda st: st.read(bucket, lambda kv: _latest(st, bucket), empty), what, bucket
        )

    # --- buckets --------------------------------------------------------------------

    def get_kv_store(self, bucket_name: str) -> KeyValueStore:
        """Bind an existing bucket; BucketNotFoundError if there is none."""
        bucket = _check_bucket(bucket_name)
        self._kv(lambda st: st.bind_existing(bucket), f"bind bucket {bucket!r}", bucket)
        return KeyValueStore(self, bucket)

    def get_or_create_kv_store(
        self,
        bucket_name: str,
        description: str | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        *,
        history: int | None = None,
        ttl: float | None = None,
    ) -> KeyValueStore:
        """Bind ``bucket_name``, creating it with this configuration if it does not exist.

        ``max_value_size``: bytes (-1: up to the server's max_payload; default 1 MiB as
        kryten-py); ``history``: values kept per key (1-64; 1 when None); ``ttl``: seconds
        a value lives (None: forever). An existing bucket is bound as it is (as kryten-py
        does), unless a setting requested here differs: ``history`` or ``ttl`` when given,
        ``max_value_size`` when not the default. Then BucketConfigError names them
        (``description`` is not compared).
        """
        bucket = _check_bucket(bucket_name)
        where = "get_or_create_kv_store"
        if description is not None:
            require_text(where, "description", description, allow_empty=True)
        if history is not None:
            require_int(where, "history", history, minimum=1, maximum=64)
        if ttl is not None:
            require_number(where, "ttl", ttl, minimum=0, exclusive_minimum=True)
        require_int(where, "max_value_size", max_value_size, minimum=-1)
        if max_value_size == 0:
            fail(where, "max_value_size", "must be -1 (unlimited) or bytes >= 1, got 0")
        ttl = None if ttl is None else float(ttl)
        compared_size = None if max_value_size == DEFAULT_MAX_VALUE_SIZE else max_value_size

        async def get_or_create(st: _KvState) -> None:
            try:
                kv = await st.js.key_value(bucket)
            except jse.BucketNotFoundError:
                config = api.KeyValueConfig(
                    bucket=bucket,
                    description=description,
                    history=1 if history is None else history,
                    ttl=ttl,
                    max_value_size=max_value_size,
                )
                try:
                    st.buckets[bucket] = await st.js.create_key_value(config=config)
                    return
                except jse.BadRequestError as exc:
                    if exc.err_code != _STREAM_IN_USE:
                        raise
                kv = await st.js.key_value(bucket)  # someone else created it meanwhile
            status = await kv.status()
            diffs = _differences(status.stream_info.config, history, ttl, compared_size)
            if diffs:
                listed = ", ".join(
                    f"{name} is {_describe(name, have)} (requested {_describe(name, want)})"
                    for name, (have, want) in diffs.items()
                )
                raise BucketConfigError(
                    f"key-value bucket {bucket!r} exists with a different configuration: "
                    f"{listed}; bind it as it is with get_kv_store({bucket!r})",
                    bucket=bucket,
                    differences=diffs,
                )
            st.buckets[bucket] = kv

        self._kv(get_or_create, f"get or create bucket {bucket!r}", bucket)
        return KeyValueStore(self, bucket)

    # --- reads ----------------------------------------------------------------------

    def kv_get(
        self,
        bucket_name: str,
        key: str,
        default: Any = None,
        parse_json: bool = False,
        *,
        timeout: float | None = None,
    ) -> Any:
        """The value of ``key`` as bytes (parsed JSON with ``parse_json``; a value that
        is not JSON raises KeyValueError); ``default`` if the key or bucket is missing."""
        bucket, key = _check_bucket(bucket_name), _check_key(key)

        async def get(kv: KeyValue) -> bytes | None:
            try:
                entry = await kv.get(key)
            except jse.KeyNotFoundError:  # also deleted keys, and a bucket deleted since
                return None
            return entry.value if entry.value is not None else b""

        raw = self._kv(
            lambda st: st.read(bucket, get, None),
            f"kv_get({bucket!r}, {key!r})",
            bucket,
            timeout=timeout,
        )
        if raw is None:
            return default
        return _decode_json(raw, bucket, key) if parse_json else raw

    def kv_keys(self, bucket_name: str) -> list[str]:
        """The bucket's keys, sorted (deleted keys excluded); ``[]`` if the bucket is
        empty or missing."""
        bucket = _check_bucket(bucket_name)
        return sorted(self._latest(bucket, f"kv_keys({bucket!r})"))

    def kv_get_all(self, bucket_name: str, parse_json: bool = False) -> dict[str, Any]:
        """Every key with its value (bytes, or parsed JSON with ``parse_json``), read in
        one pass; ``{}`` if the bucket is empty or missing."""
        bucket = _check_bucket(bucket_name)
        values = self._latest(bucket, f"kv_get_all({bucket!r})")
        if parse_json:
            return {key: _decode_json(raw, bucket, key) for key, raw in values.items()}
        return dict(values)

    # --- writes ---------------------------------------------------------------------

    def kv_put(self, bucket_name: str, key: str, value: Any, as_json: bool = False) -> int:
        """Store ``value`` (by :func:`kv_value`'s rules; ``as_json`` always writes JSON)
        and return its revision; BucketNotFoundError if the bucket does not exist."""
        bucket, key = _check_bucket(bucket_name), _check_key(key)
        data = kv_value(value, as_json, f"kv_put({bucket!r}, {key!r}): value")
        return self._kv(
            lambda st: st.publish(bucket, lambda kv: kv.put(key, data)),
            f"kv_put({bucket!r}, {key!r})",
            bucket,
        )

    def kv_delete(self, bucket_name: str, key: str) -> None:
        """Delete ``key`` (a no-op if it is not there; watchers see a ``DEL``);
        BucketNotFoundError if the bucket does not exist."""
        bucket, key = _check_bucket(bucket_name), _check_key(key)
        self._kv(
            lambda st: st.publish(bucket, lambda kv: kv.delete(key)),
            f"kv_delete({bucket!r}, {key!r})",
            bucket,
        )

    # --- watching -------------------------------------------------------------------

    def kv_watch(
        self,
        bucket: str,
        key_or_pattern: str,
        handler: KvHandler,
        *,
        include_current: bool = False,
    ) -> KvWatch:
        """Call ``handler(entry: KvEntry)`` for every change (PUT, DEL, PURGE) of a key
        matching ``key_or_pattern`` (``*`` one token, a final ``>`` the rest; ``">"``
        for every key) from now on, or first for each current value with
        ``include_current``.

        The handler runs on the watch's own thread, one change at a time in the order
        the server stored them, guarded like event handlers (errors are logged and go to
        ``on_error``). The watch resumes by itself after reconnects. Returns a handle
        whose ``stop()`` ends it; BucketNotFoundError if the bucket does not exist.
        """
        bucket, pattern = _check_bucket(bucket), _check_pattern(key_or_pattern)
        check_sync_callable(handler, "kv_watch handler")
        link = self.require()

        async def watch(st: _KvState) -> _Watch:
            w = _Watch(st, bucket, pattern, handler, bool(include_current))
            await w.start()
            return w

        what = f"kv_watch({bucket!r}, {pattern!r})"
        return KvWatch(link, self._kv(watch, what, bucket, link))


__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "BucketConfigError",
    "BucketNotFoundError",
    "KeyValueError",
    "KeyValueFeature",
    "KeyValueStore",
    "KvEntry",
    "KvOperation",
    "KvWatch",
    "kv_value",
]
