"""Configuration of a kryten-sync client: pydantic models, file loading, env substitution.

Every validation failure raises one :class:`~kryten_sync.errors.KrytenValidationError`
that lists every problem as ``path: message`` (``nats.servers[0]``, ``channels[1].channel``).
Messages never quote input values, so a password can't leak through an error or a log.

Unknown keys are ignored with one :class:`~kryten_sync.errors.ConfigWarning` listing them
(kryten-py ignores them silently), or are errors with ``strict: true``. A key is named
only when it is close to a setting name (a likely typo); any other key could be a
secret pasted in the wrong place and is counted, not shown.
"""

from __future__ import annotations

import difflib
import errno
import inspect
import json
import os
import re
import ssl
import types
import warnings
from collections.abc import Iterable, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from .errors import ConfigWarning, KrytenValidationError
from .subjects import (
    CHANNEL_RULE,
    channel_token,
    normalize_token,
    service_token,
    subject_piece,
    url_problem,
)

_Loc = tuple[str | int, ...]
_Problem = tuple[_Loc, str]

_SCHEMES = ("nats", "tls", "ws", "wss")
_DEFAULT_PORT = 4222
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_ALIASES = {"WARN": "WARNING"}
# JetStream stream and consumer names, NATS queue group names: safe in subjects and files.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME_RULE = "use 1-64 letters, digits, '-' and '_'"


def _format_loc(loc: _Loc) -> str:
    """``("channels", 1, "channel")`` -> ``channels[1].channel``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "config"


def _lines(problems: Iterable[_Problem]) -> list[str]:
    return [f"{_format_loc(loc)}: {message}" for loc, message in problems]


def _error(what: str, problems: list[_Problem], source: str | None) -> KrytenValidationError:
    """One error whose message lists every problem, one per line."""
    lines = _lines(problems)
    where = f" in {source}" if source else ""
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    message = f"invalid {what}{where} ({count}):\n" + "\n".join(f"  {line}" for line in lines)
    error = KrytenValidationError(message, problems=lines)
    # Kept so that an error raised by a nested model's __init__ can be re-rooted.
    error._kryten_problems = problems  # type: ignore[attr-defined]
    return error


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The model class inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list):
        for arg in get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _model_at(model: type[BaseModel], loc: _Loc) -> type[BaseModel] | None:
    """The config model that holds the last key of ``loc``."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is not None and isinstance(part, str):
            field = current.model_fields.get(part)
            current = _unwrap_model(field.annotation) if field is not None else None
    return current


def _suggestion(model: type[BaseModel], loc: _Loc) -> str | None:
    current = _model_at(model, loc)
    key = loc[-1] if loc else ""
    if current is None or not isinstance(key, str):
        return None
    for name, field in current.model_fields.items():
        nested = _unwrap_model(field.annotation)
        if nested is not None and key in nested.model_fields:  # one level too high
            return f"{name}[].{key}" if get_origin(field.annotation) is list else f"{name}.{key}"
    close = difflib.get_close_matches(key, list(current.model_fields), n=1)
    return close[0] if close else None


def _shown_loc(model: type[BaseModel], loc: _Loc) -> _Loc:
    """``loc`` with an unknown last key replaced when it could be a secret (see the
    module docstring)."""
    # Only a likely typo of a setting is shown: a key of lowercase words could still
    # be a passphrase pasted on the wrong line.
    if _suggestion(model, loc) is not None:
        return loc
    return (*loc[:-1], "<key not shown>")


def _unknown_key(model: type[BaseModel], loc: _Loc) -> str:
    """Message for an extra key, suggesting the nearest allowed setting (a likely typo)."""
    close = _suggestion(model, loc)
    return f"unknown setting (did you mean {close!r}?)" if close else "unknown setting"


def _strip_unknown(model: type[BaseModel], data: Any, loc: _Loc, found: list[_Loc]) -> Any:
    """``data`` without the keys ``model`` does not define (recursively, through nested
    models and lists of them); their paths are appended to ``found``."""
    if not isinstance(data, Mapping):
        return data
    kept: dict[Any, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            found.append((*loc, key if isinstance(key, str) else str(key)))
            continue
        nested = _unwrap_model(field.annotation)
        if nested is not None and isinstance(value, list):
            kept[key] = [
                _strip_unknown(nested, item, (*loc, key, index), found)
                for index, item in enumerate(value)
            ]
        elif nested is not None:
            kept[key] = _strip_unknown(nested, value, (*loc, key), found)
        else:
            kept[key] = value
    return kept


def _drop_unknown(
    model: type[BaseModel], data: Mapping[str, Any], what: str, source: str | None
) -> dict[str, Any]:
    """``data`` without unknown keys, which one ConfigWarning lists; with ``strict: true``
    at the top level ``data`` as it is (validation then reports them with the rest)."""
    if data.get("strict") is True:
        return dict(data)
    found: list[_Loc] = []
    kept = _strip_unknown(model, data, (), found)
    if not found:
        return dict(kept)
    problems = [(_shown_loc(model, loc), _unknown_key(model, loc)) for loc in found]
    where = f" in {source}" if source else ""
    listed = "; ".join(_lines(problems))
    warnings.warn(
        f"{what}{where}: ignored {len(found)} unknown setting{'s' if len(found) != 1 else ''}: "
        f"{listed} (set strict: true to make unknown settings errors)",
        ConfigWarning,
        stacklevel=_outside_package(),
    )
    return dict(kept)


def _outside_package() -> int:
    """The ``stacklevel`` of the first caller outside kryten_sync (warnings point there)."""
    package = os.path.dirname(__file__)
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _problems(model: type[BaseModel], exc: ValidationError) -> list[_Problem]:
    """Turn pydantic's errors into ``(loc, message)`` pairs without any input value."""
    result: list[_Problem] = []
    for err in exc.errors(include_url=False):
        loc: _Loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        nested: list[_Problem] | None = getattr(cause, "_kryten_problems", None)
        if nested is not None:
            result.extend((loc + sub_loc, message) for sub_loc, message in nested)
        elif isinstance(cause, BaseException):
            # Our validators' own messages: pydantic would prefix "Value error, ".
            result.append((loc, str(cause)))
        elif err["type"] == "extra_forbidden":
            result.append((_shown_loc(model, loc), _unknown_key(model, loc)))
        else:
            result.append((loc, err["msg"]))
    return result


class _Model(BaseModel):
    """Base of the config models: unknown keys are dropped before validation (a warning,
    or an error with ``strict``); failures are KrytenValidationError."""

    model_config = ConfigDict(extra="forbid")
    _what: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        what = self._what or type(self).__name__
        data = _drop_unknown(type(self), data, what, None)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            # `from None`: pydantic's own message quotes input values (secrets).
            raise _error(what, _problems(type(self), exc), None) from None

    # Marks this __init__ as pydantic's own so nested models are built by pydantic-core,
    # which keeps full error paths (a custom __init__ would be called per nested model).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def _empty_to_none(value: Any) -> Any:
    """An empty string means "not set", so ``${VAR:-}`` can leave an optional setting out."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _split_url(text: str) -> SplitResult:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("invalid host or port (port must be 1-65535)") from None
    return parts


def _normalise_server(value: str) -> str:
    """Check one server URL; a bare ``host[:port]`` becomes ``nats://host:port``."""
    text = value.strip()
    if not text:
        raise ValueError("empty server URL")
    if any(c.isspace() for c in text):
        raise ValueError("server URL contains whitespace")
    bare = "://" not in text
    parts = _split_url(f"nats://{text}" if bare else text)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            "unsupported scheme (use nats://, tls://, ws:// or wss://, or a bare host:port)"
        )
    if not parts.hostname:
        raise ValueError("missing host")
    if parts.port == 0:
        raise ValueError("invalid port (port must be 1-65535)")
    if parts.query or parts.fragment or (scheme in ("nats", "tls") and parts.path not in ("", "/")):
        raise ValueError(f"unexpected path or query in a {scheme}:// URL")
    if bare:
        netloc = parts.netloc if parts.port is not None else f"{parts.netloc}:{_DEFAULT_PORT}"
        return f"nats://{netloc}"
    return scheme + text[len(parts.scheme) :]


def _mask_userinfo(url: str) -> str:
    """The URL with any ``user:password@`` (or token) replaced by ``***@``, for repr."""
    scheme, sep, rest = url.partition("://")
    host, at, tail = rest.rpartition("@")
    if not sep or not at or "/" in host:
        return url
    return f"{scheme}://***@{tail}"


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    return value


def _readable(field: str, path: str) -> None:
    """Raise KrytenValidationError naming ``nats.<field>`` and the path if it can't be read."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _error(
            "NATS settings", [(("nats", field), f"cannot read {path}: {reason}")], None
        ) from None


class _EncryptedKey(Exception):
    """Raised by the key-password callback: an encrypted key would need a password prompt."""


def _no_key_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal and block a service.
    raise _EncryptedKey


_ServerURL = Annotated[str, AfterValidator(_normalise_server)]
_PathStr = Annotated[str, AfterValidator(os.path.expanduser)]


class NatsConfig(_Model):
    """How to reach NATS: servers, authentication, TLS, timeouts, subscription limits."""

    _what: ClassVar[str] = "NATS settings"

    servers: list[_ServerURL] = Field(min_length=1)
    name: str | None = "kryten-sync"
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkeys_seed: _PathStr | None = None
    user_credentials: _PathStr | None = None
    tls_ca: _PathStr | None = None
    tls_cert: _PathStr | None = None
    tls_key: _PathStr | None = Field(None, validate_default=True)
    tls_hostname: str | None = None
    tls_handshake_first: bool = False
    connect_timeout: float = Field(5.0, gt=0)
    # Short: a restarted server is back in well under a second, and every moment
    # disconnected is events never received (core NATS keeps nothing for us).
    reconnect_time_wait: float = Field(0.1, ge=0)
    reconnect_jitter: float = Field(0.1, ge=0)
    reconnect_buffer_size: int = Field(2 * 1024 * 1024, ge=0)
    max_reconnect_attempts: int = Field(-1, ge=-1)
    ping_interval: float = Field(120, gt=0)
    max_outstanding_pings: int = Field(2, ge=1)
    pending_msgs_limit: int = Field(65536, gt=0)
    pending_bytes_limit: int = Field(64 * 1024 * 1024, gt=0)
    drain_timeout: float = Field(5.0, gt=0)

    @field_validator("servers", mode="before")
    @classmethod
    def _servers_from_string(cls, value: Any) -> Any:
        # One string (e.g. from ${NATS_URL}) may hold a comma-separated list.
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "name",
        "user",
        "password",
        "token",
        "nkeys_seed",
        "user_credentials",
        "tls_ca",
        "tls_cert",
        "tls_key",
        "tls_hostname",
        mode="before",
    )
    @classmethod
    def _optional_strings(cls, value: Any) -> Any:
        return _empty_to_none(value)

    @field_validator("tls_key")
    @classmethod
    def _tls_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        # tls_key is validated after tls_cert and also when left out (validate_default).
        if "tls_cert" not in info.data:
            return value  # tls_cert itself is invalid: that error is reported already
        if info.data["tls_cert"] and not value:
            raise ValueError("required when tls_cert is set")
        if value and not info.data["tls_cert"]:
            raise ValueError("set without tls_cert (a client certificate needs both)")
        return value

    @field_serializer("servers")
    def _servers_without_credentials(self, servers: list[str]) -> list[str]:
        # model_dump()/model_dump_json() never show user:password@ or a token; like
        # SecretStr, the dump does not round-trip credentials (connect_options() does).
        return [_mask_userinfo(url) for url in servers]

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # A URL may carry user:password@ or a token: keep it out of repr/str/logs.
        for key, value in super().__repr_args__():
            if key == "servers":
                yield key, [_mask_userinfo(url) for url in value]
            else:
                yield key, value

    @property
    def servers_for_display(self) -> list[str]:
        """``servers`` with any ``user:password@`` or token replaced by ``***@``."""
        return [_mask_userinfo(url) for url in self.servers]

    def tls_context(self) -> ssl.SSLContext | None:
        """An SSLContext from tls_ca/tls_cert/tls_key, or None when none is set.

        Raises KrytenValidationError naming the field and path of a file it can't use.
        """
        if not (self.tls_ca or self.tls_cert or self.tls_key):
            return None
        for field in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, field)
            if path:
                _readable(field, path)
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
        except (ssl.SSLError, OSError) as exc:
            raise _error(
                "NATS settings",
                [(("nats", "tls_ca"), f"no usable CA certificate in {self.tls_ca}: {exc}")],
                None,
            ) from None
        if self.tls_cert:
            try:
                context.load_cert_chain(self.tls_cert, self.tls_key, password=_no_key_password)
            except _EncryptedKey:
                raise _error(
                    "NATS settings",
                    [(("nats", "tls_key"), f"{self.tls_key} is encrypted; use an unencrypted key")],
                    None,
                ) from None
            except (ssl.SSLError, OSError) as exc:
                problem = (
                    f"cannot load the certificate {self.tls_cert} with the key {self.tls_key}: "
                    f"{exc}"
                )
                raise _error("NATS settings", [(("nats", "tls_cert"), problem)], None) from None
        return context

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect()``; settings left unset are omitted.

        Builds the TLS context (see :meth:`tls_context`) and checks that the nkey seed or
        credentials file is readable; raises KrytenValidationError naming the field if not.
        ``max_reconnect_attempts=0`` becomes ``allow_reconnect=False``: nats-py treats 0 as
        "no limit" and would retry forever without pause.
        """
        for field in ("nkeys_seed", "user_credentials"):
            path = getattr(self, field)
            if path:
                _readable(field, path)
                if find_spec("nkeys") is None:
                    raise ImportError(f"nats.{field} needs the nkeys package: pip install nkeys")
        options: dict[str, Any] = {
            "servers": list(self.servers),
            "name": self.name,
            "user": self.user,
            "password": self.password.get_secret_value() if self.password else None,
            "token": self.token.get_secret_value() if self.token else None,
            "nkeys_seed": self.nkeys_seed,
            "user_credentials": self.user_credentials,
            "tls": self.tls_context(),
            "tls_hostname": self.tls_hostname,
            "tls_handshake_first": self.tls_handshake_first,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_time_wait,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": self.max_outstanding_pings,
            "drain_timeout": self.drain_timeout,
            "allow_reconnect": self.max_reconnect_attempts != 0,
        }
        return {key: value for key, value in options.items() if value is not None}


def _refuse_url(value: str, what: str) -> None:
    """A web address (``https://cytu.be/r/lounge``) where a name belongs: say which name."""
    problem = url_problem(value, what)
    if problem is not None:
        raise ValueError(problem)


class ChannelConfig(_Model):
    """One CyTube channel: its domain and name as the bridge was configured (case kept)."""

    _what: ClassVar[str] = "channel settings"

    domain: str
    channel: str

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        _refuse_url(value, "domain")
        if not value.isprintable() or " " in value or "*" in value or ">" in value:
            # It goes into subjects (kryten.user_level.{domain}.{channel}).
            raise ValueError("must not contain whitespace, control characters, '*' or '>'")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        _refuse_url(value, "channel")
        try:
            channel_token(value)
        except KrytenValidationError:
            # The exception quotes the value; config errors never do.
            raise ValueError(f"is not a CyTube channel name: {CHANNEL_RULE}") from None
        return value


class ServiceConfig(_Model):
    """Identity of this service for lifecycle events, heartbeats and discovery."""

    _what: ClassVar[str] = "service settings"

    name: str
    version: str = "1.0.0"
    enable_lifecycle: bool = True
    enable_heartbeat: bool = True
    heartbeat_interval: float = Field(30, gt=0, le=3600)
    enable_discovery: bool = True
    health_port: int | None = Field(None, ge=1, le=65535)
    health_path: Annotated[str, AfterValidator(_url_path)] = "/health"
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_path: Annotated[str, AfterValidator(_url_path)] = "/metrics"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return service_token(value)
        except KrytenValidationError:
            # service_token's message quotes the value; give a value-free one.
            raise ValueError(
                "not a valid subject token (empty, or contains '*', '>', whitespace other "
                "than spaces, or control characters)"
            ) from None

    @field_validator("health_port", "metrics_port", mode="before")
    @classmethod
    def _optional_ports(cls, value: Any) -> Any:
        return _empty_to_none(value)


class MetricsConfig(_Model):
    """The health/metrics endpoints: advertised in lifecycle messages, and served over
    HTTP by kryten-sync only with ``serve: true`` (as in kryten-py, a ``metrics`` section
    alone binds nothing: the bot may serve that port itself). ``port=0`` picks a free
    port when serving."""

    _what: ClassVar[str] = "metrics settings"

    port: int | None = Field(None, ge=0, le=65535)
    serve: bool = False
    host: str = Field("127.0.0.1", min_length=1)
    health_path: Annotated[str, AfterValidator(_url_path)] = "/health"
    metrics_path: Annotated[str, AfterValidator(_url_path)] = "/metrics"


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(_NAME_RULE)
    return value


class EventsConfig(_Model):
    """How events reach the handlers (docs/production.md).

    By default (core mode) a client gets every event of its channels while it is
    connected. ``shared``: the instances of one group split each channel's events.
    ``durable``: events are kept in the JetStream stream ``stream`` (created with these
    bounds if absent) and consumed through one durable consumer per channel and group,
    one event in flight at a time; what is published while the bot is away is delivered
    when it comes back. ``group`` defaults to ``service.name``.
    """

    _what: ClassVar[str] = "event settings"

    durable: bool = False
    shared: bool = False
    group: Annotated[str, AfterValidator(_name)] | None = None
    stream: Annotated[str, AfterValidator(_name)] = "KRYTEN_EVENTS"
    max_age: float = Field(86400.0, gt=0)
    max_bytes: int = Field(1024**3, gt=0)
    max_msgs: int = Field(1_000_000, gt=0)
    replicas: int = Field(1, ge=1, le=5)
    max_deliver: int = Field(5, ge=1, le=1000)
    ack_wait: float = Field(10.0, ge=1, le=3600)
    recent_ids: int = Field(10_000, ge=0, le=1_000_000)

    @field_validator("group", mode="before")
    @classmethod
    def _optional_group(cls, value: Any) -> Any:
        return _empty_to_none(value)


class CommandsConfig(_Model):
    """Confirmed commands (docs/production.md): with ``confirm`` every command method
    waits for the bridge's confirmation on its request path, retrying after
    ``confirm_timeout`` up to ``confirm_attempts`` attempts in all (at least once)."""

    _what: ClassVar[str] = "command settings"

    confirm: bool = False
    confirm_timeout: float | None = Field(None, gt=0)
    confirm_attempts: int = Field(3, ge=1, le=10)
    confirm_retry_delay: float = Field(0.5, ge=0)

    @field_validator("confirm_timeout", mode="before")
    @classmethod
    def _optional_timeout(cls, value: Any) -> Any:
        return _empty_to_none(value)


class KrytenConfig(_Model):
    """Complete configuration of a kryten-sync client."""

    _what: ClassVar[str] = "kryten-sync configuration"

    nats: NatsConfig
    channels: list[ChannelConfig] = Field(min_length=1)
    service: ServiceConfig | None = None
    metrics: MetricsConfig | None = None
    retry_attempts: int = Field(3, ge=0, le=10)
    retry_delay: float = Field(0.5, gt=0)
    request_timeout: float = Field(5.0, gt=0)
    handler_queue_size: int = Field(1000, ge=1)
    max_concurrent_handlers: int = Field(8, ge=1)
    handler_timeout: float = Field(30.0, gt=0)
    shutdown_timeout: float = Field(5.0, gt=0)
    exit_timeout: float = Field(1.0, gt=0)
    chat_burst: int = Field(4, ge=1)
    chat_min_delay: float = Field(1.0, ge=0)
    chat_jitter: float = Field(0.0, ge=0)
    log_level: str = "INFO"
    strict: bool = Field(False, strict=True)
    events: EventsConfig = Field(default_factory=EventsConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        level = _LOG_ALIASES.get(level, level)
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _event_group(self) -> KrytenConfig:
        events = self.events
        if (events.durable or events.shared) and events.group is None:
            where = ("events", "group")
            if self.service is None:
                problem = "required with events.durable or events.shared when no service is set"
                raise _error(self._what, [(where, problem)], None)
            if not _NAME_RE.match(self.service.name):
                problem = f"service.name cannot name the group ({_NAME_RULE}); set events.group"
                raise _error(self._what, [(where, problem)], None)
        return self

    @property
    def event_group(self) -> str | None:
        """The group whose instances split the events (``events.group``, else the
        service name), or None when each instance gets every event (core mode)."""
        events = self.events
        if not (events.durable or events.shared):
            return None
        return events.group or (self.service.name if self.service is not None else None)

    def channel_for(self, channel: str) -> ChannelConfig | None:
        """The configured channel whose normalised token equals ``N(channel)``, if any."""
        wanted = normalize_token(channel)
        if not wanted:
            return None
        for configured in self.channels:
            if normalize_token(configured.channel) == wanted:
                return configured
        return None

    def default_domain(self) -> str:
        """The domain of the first configured channel."""
        return self.channels[0].domain

    def target(self, channel: str | None, domain: str | None = None) -> tuple[str, str]:
        """``(domain, channel)`` as configured for ``channel`` (None: the first configured
        channel); an unconfigured channel is used as given, on the default domain.
        ``domain`` overrides the domain."""
        if domain is not None:
            subject_piece(domain, "domain")
        if channel is None:
            first = self.channels[0]
            return domain or first.domain, first.channel
        channel_token(channel)
        configured = self.channel_for(channel)
        if configured is None:
            return domain or self.default_domain(), channel
        return domain or configured.domain, configured.channel

    def check_command_domain(self, channel: str, domain: str) -> None:
        """Refuse a command ``domain`` this client is not configured for: command subjects
        carry no domain, so such a domain could only be a mistake."""
        wanted = normalize_token(domain)
        domains = {normalize_token(c.domain) for c in self.channels}
        if wanted not in domains:
            raise KrytenValidationError(
                f"domain {domain!r} is not configured (configured: "
                f"{', '.join(sorted({c.domain for c in self.channels}))})"
            )
        name = normalize_token(channel)
        on = [c.domain for c in self.channels if normalize_token(c.channel) == name]
        if on and wanted not in {normalize_token(d) for d in on}:
            raise KrytenValidationError(
                f"channel {channel!r} is configured on {', '.join(on)}, not on {domain!r}"
            )

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str | None = None, strict: bool = False
    ) -> KrytenConfig:
        """Validate a mapping; ``source`` (a file name) is named in error messages.
        ``strict=True`` makes unknown keys errors whatever ``data`` says."""
        if not isinstance(data, Mapping):
            raise _error(
                cls._what,
                [((), f"the top level must be a mapping, not {_kind(data)}")],
                source,
            )
        if strict:
            data = {**data, "strict": True}
        data = _drop_unknown(cls, data, cls._what, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _error(cls._what, _problems(cls, exc), source) from None

    @classmethod
    def from_json(cls, path: str | os.PathLike[str], *, strict: bool = False) -> KrytenConfig:
        """Load a JSON file, substituting ``${VAR}``/``${VAR:-default}`` in string values."""
        file, text = _read(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problem = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            raise KrytenValidationError(f"{file}: {problem}", problems=[problem]) from None
        return cls._from_parsed(data, file, strict)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], *, strict: bool = False) -> KrytenConfig:
        """Load a YAML file (needs PyYAML), substituting ``${VAR}`` in string values."""
        try:
            import yaml  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise ImportError(
                "YAML configuration needs PyYAML: pip install 'kryten-sync[yaml]'"
            ) from exc
        file, text = _read(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # Only the mark and the problem: the snippet yaml prints could hold a secret.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            reason = getattr(exc, "problem", None) or type(exc).__name__
            problem = f"invalid YAML{where}: {reason}"
            raise KrytenValidationError(f"{file}: {problem}", problems=[problem]) from None
        return cls._from_parsed(data, file, strict)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, strict: bool = False) -> KrytenConfig:
        """Load a ``.json``, ``.yaml`` or ``.yml`` file (chosen by suffix)."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return cls.from_json(path, strict=strict)
        if suffix in (".yaml", ".yml"):
            return cls.from_yaml(path, strict=strict)
        raise KrytenValidationError(
            f"{os.fspath(path)}: unsupported configuration file type "
            f"{suffix or '(no suffix)'}: use .json, .yaml or .yml"
        )

    @classmethod
    def coerce(cls, config: KrytenConfig | Mapping[str, Any]) -> KrytenConfig:
        """``config`` itself if it is a KrytenConfig, else validated from a mapping."""
        if isinstance(config, KrytenConfig):
            return config
        if isinstance(config, Mapping):
            return cls.from_dict(config)
        if isinstance(config, str | os.PathLike):
            path = os.fspath(config)
            raise KrytenValidationError(
                f"config must be a KrytenConfig or a mapping, not a {type(config).__name__}; "
                f"to read the file {path!r}, pass KrytenConfig.from_file({path!r})"
            )
        raise KrytenValidationError(
            f"config must be a KrytenConfig or a mapping, not {type(config).__name__}"
        )

    @classmethod
    def _from_parsed(cls, data: Any, file: str, strict: bool) -> KrytenConfig:
        if not isinstance(data, Mapping):
            raise _error(
                cls._what, [((), f"the top level must be a mapping, not {_kind(data)}")], file
            )
        missing: list[_Problem] = []
        data = _substitute(data, (), missing)
        if missing:
            raise _error(cls._what, missing, file)
        return cls.from_dict(data, source=file, strict=strict)


def _kind(value: Any) -> str:
    return "an empty document" if value is None else type(value).__name__


def _read(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The file's name (for messages) and text; FileNotFoundError names a missing file."""
    file = os.fspath(path)
    if not Path(file).exists():
        raise FileNotFoundError(errno.ENOENT, "configuration file not found", file)
    return file, Path(file).read_text(encoding="utf-8-sig")


_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>:-(?P<default>[^}]*))?\}|\$\{"
)


def _substitute(value: Any, loc: _Loc, problems: list[_Problem]) -> Any:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value (not keys).

    Like the shell, ``:-`` also applies when the variable is set but empty. An unset
    variable without a default, or a malformed ``${``, is appended to ``problems``.
    """
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            text = match.group(0)
            if text == "$$":
                return "$"
            name = match.group("name")
            if name is None:
                problems.append((loc, "malformed ${...} reference (write $$ for a literal $)"))
                return text
            current = os.environ.get(name)
            if match.group("sep") is not None and not current:
                return match.group("default")
            if current is None:
                problems.append((loc, f"environment variable {name} is not set"))
                return text
            return current

        return _REFERENCE.sub(expand, value)
    if isinstance(value, Mapping):
        return {key: _substitute(item, (*loc, str(key)), problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, (*loc, index), problems) for index, item in enumerate(value)]
    return value


__all__ = [
    "ChannelConfig",
    "CommandsConfig",
    "EventsConfig",
    "KrytenConfig",
    "MetricsConfig",
    "NatsConfig",
    "ServiceConfig",
]
