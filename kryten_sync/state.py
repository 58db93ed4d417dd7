"""The bridge's channel state in JetStream key-value buckets (docs/protocol.md section 5).

The bridge keeps one set of buckets per channel, named with the channel exactly as it
was configured (case kept): ``kryten_{channel}_playlist`` (keys ``items``, a JSON array,
and ``current``, a JSON object), ``kryten_{channel}_userlist`` (``users``),
``kryten_{channel}_emotes`` (``list``) and ``kryten_{channel}_state`` (``motd``, ``css``,
``js``: raw UTF-8 strings, not JSON). :class:`ChannelState` reads them into typed models
that are also readable like the dicts kryten-py returns (``items[0]["uid"]``,
``current.get("title")``); a key (or bucket) the bridge has not written yet reads as an
empty value.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._mapping import MappingAccess
from .errors import KrytenValidationError
from .events import ChannelUser, Emote, PlaylistItem, UserMeta, UserProfile
from .kv import KeyValueFeature, is_bucket_name
from .stats import RateLimitedLog

if TYPE_CHECKING:
    from .config import KrytenConfig

_log = RateLimitedLog(logging.getLogger("kryten_sync.state"))
M = TypeVar("M", bound=BaseModel)


class _StateModel(MappingAccess):
    # Unknown keys are kept (``model.model_extra``, or as attributes), never an error.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class CurrentMedia(_StateModel):
    """The playing media as the bridge stores it (``current`` in the playlist bucket).

    ``uid`` may be stale: the bridge keeps the uid of the last ``setCurrent`` across a
    later ``changeMedia``. Use :meth:`ChannelState.get_state_current_uid` when the uid
    matters.
    """

    id: str
    type: str
    title: str = ""
    seconds: float = 0.0
    """Length in seconds (0 for live streams)."""
    uid: int | None = None
    """The playlist uid, if the bridge stored one (possibly stale)."""
    current_time: float | None = Field(None, alias="currentTime")
    paused: bool | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


def state_bucket_name(channel: str, kind: str) -> str:
    """``kryten_{channel}_{kind}``, raising KrytenValidationError if that is not a valid
    bucket name (letters, digits, ``-`` and ``_`` only)."""
    bucket = f"kryten_{channel}_{kind}"
    if not is_bucket_name(bucket):
        raise KrytenValidationError(
            f"channel {channel!r} cannot name a key-value bucket ({bucket!r}): bucket names "
            "allow only letters, digits, '-' and '_'"
        )
    return bucket


class ChannelState:
    """Typed readers of the bridge's state buckets, through key-value access (the
    client's ``get_state_*`` methods delegate here).

    ``channel`` is matched against the configured channels after normalisation and the
    configured spelling is used (the bridge names buckets with it, case kept); a channel
    that is not configured is used exactly as given; None means the first configured
    channel. ``domain`` is accepted as in kryten-py; the buckets are per channel. All
    methods block (``timeout``, where kryten-py has one, bounds the read); an unwritten key
    or bucket reads as empty, a value the bridge cannot have written (bad JSON, wrong
    shape) is logged and read as empty too.
    """

    __slots__ = ("config", "kv")

    def __init__(self, kv: KeyValueFeature, config: KrytenConfig) -> None:
        self.kv = kv
        self.config = config

    # --- plumbing -------------------------------------------------------------------

    def _state_bucket(self, channel: str | None, kind: str, domain: str | None = None) -> str:
        return state_bucket_name(self.config.target(channel, domain)[1], kind)

    def _state_json(self, bucket: str, key: str, kind: type, timeout: float | None = None) -> Any:
        """The JSON value of ``key``, or None if unwritten, not JSON or not a ``kind``."""
        raw: bytes | None = self.kv.kv_get(bucket, key, timeout=timeout)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            _log.limited(
                f"json-{bucket}-{key}", "state %s/%s is not JSON: %r", bucket, key, raw[:80]
            )
            return None
        if value is None:
            return None
        if not isinstance(value, kind):
            _log.limited(
                f"shape-{bucket}-{key}",
                "state %s/%s is a %s, expected a %s",
                bucket,
                key,
                type(value).__name__,
                kind.__name__,
            )
            return None
        return value

    def _state_list(
        self, bucket: str, key: str, model: type[M], timeout: float | None = None
    ) -> list[M]:
        rows = self._state_json(bucket, key, list, timeout)
        result: list[M] = []
        for index, row in enumerate(rows or ()):
            try:
                result.append(model.model_validate(row))
            except ValidationError as exc:
                _log.limited(
                    f"row-{bucket}-{key}",
                    "state %s/%s[%d] skipped: %s",
                    bucket,
                    key,
                    index,
                    _first_error(exc),
                )
        return result

    def _state_text(self, channel: str | None, key: str, domain: str | None, timeout: float) -> str:
        bucket = self._state_bucket(channel, "state", domain)
        raw: bytes | None = self.kv.kv_get(bucket, key, timeout=timeout)
        return "" if raw is None else raw.decode("utf-8", errors="replace")

    # --- playlist -------------------------------------------------------------------

    def get_state_playlist_items(
        self, channel: str | None = None, *, domain: str | None = None
    ) -> list[PlaylistItem]:
        """The playlist (``kryten_{channel}_playlist`` / ``items``); ``[]`` if unwritten."""
        bucket = self._state_bucket(channel, "playlist", domain)
        return self._state_list(bucket, "items", PlaylistItem)

    def get_state_current_media(
        self, channel: str | None = None, *, domain: str | None = None
    ) -> CurrentMedia | None:
        """The playing media (``kryten_{channel}_playlist`` / ``current``); None if
        unwritten or empty. Its ``uid`` may be stale: see :meth:`get_state_current_uid`."""
        bucket = self._state_bucket(channel, "playlist", domain)
        current = self._state_json(bucket, "current", dict)
        if not current:
            return None
        try:
            return CurrentMedia.model_validate(current)
        except ValidationError as exc:
            _log.limited(
                f"row-{bucket}-current", "state %s/current unusable: %s", bucket, _first_error(exc)
            )
            return None

    def get_state_current_uid(
        self, channel: str | None = None, *, domain: str | None = None
    ) -> str | None:
        """The playlist uid of the playing media as a string (kryten-py's type), or None
        if unknown.

        The stored ``current.uid`` can be stale, so the playing media's ``id``/``type``
        are looked up in the playlist: the matching item's uid is returned (the one equal
        to ``current.uid`` if the media is queued more than once, else the first). If no
        item matches, None, unless the playlist is unwritten or empty, in which case
        ``current.uid`` is all there is and is returned as stored.
        """
        current = self.get_state_current_media(channel, domain=domain)
        if current is None:
            return None
        items = self.get_state_playlist_items(channel, domain=domain)
        matches = [
            item.uid
            for item in items
            if item.media.id == current.id and item.media.type == current.type
        ]
        uid: int | None
        if matches:
            uid = current.uid if current.uid in matches else matches[0]
        else:
            uid = current.uid if not items else None
        return None if uid is None else str(uid)

    # --- users, emotes, channel texts -----------------------------------------------

    def get_state_userlist(
        self, channel: str | None = None, *, domain: str | None = None
    ) -> list[ChannelUser]:
        """The users in the channel (``kryten_{channel}_userlist`` / ``users``)."""
        bucket = self._state_bucket(channel, "userlist", domain)
        return self._state_list(bucket, "users", ChannelUser)

    def get_state_emotes(
        self, channel: str | None = None, *, domain: str | None = None, timeout: float = 5.0
    ) -> list[Emote]:
        """The channel's emotes (``kryten_{channel}_emotes`` / ``list``)."""
        bucket = self._state_bucket(channel, "emotes", domain)
        return self._state_list(bucket, "list", Emote, timeout)

    def get_state_motd(
        self, channel: str | None = None, *, domain: str | None = None, timeout: float = 5.0
    ) -> str:
        """The message of the day (raw HTML); ``""`` if unwritten."""
        return self._state_text(channel, "motd", domain, timeout)

    def get_state_css(
        self, channel: str | None = None, *, domain: str | None = None, timeout: float = 5.0
    ) -> str:
        """The channel CSS; ``""`` if unwritten."""
        return self._state_text(channel, "css", domain, timeout)

    def get_state_js(
        self, channel: str | None = None, *, domain: str | None = None, timeout: float = 5.0
    ) -> str:
        """The channel JavaScript; ``""`` if unwritten."""
        return self._state_text(channel, "js", domain, timeout)

    # The names kryten-py uses.
    get_state_channel_css = get_state_css
    get_state_channel_js = get_state_js


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "value"
    return f"{where}: {err['msg']}"


__all__ = [
    "ChannelState",
    "ChannelUser",
    "CurrentMedia",
    "Emote",
    "UserMeta",
    "UserProfile",
    "state_bucket_name",
]
