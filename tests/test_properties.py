"""Properties over generated input (hypothesis): envelopes, config dicts and command
arguments raise only the documented errors, and whatever is accepted is usable.

Bounded: each property runs a fixed number of examples without a per-example deadline
(the machine is shared), derandomised so a run is repeatable; together they take
seconds.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from typing import Any

import nats.aio.client
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryten_sync import KrytenConfig, KrytenValidationError, MalformedEventError, commands
from kryten_sync.events import parse_envelope
from kryten_sync.raw import encode_payload, utc_timestamp
from kryten_sync.subjects import check_subject

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values ------------------------------------------------------------------------------------

text = st.text(max_size=40)  # any code points, surrogates included
names = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True),
    text,
    st.sampled_from(["lounge", "Lounge", "my-channel", "a b", "a\tb", "a\x0bb", "", "x" * 31]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
anything = st.one_of(
    json_values,
    st.floats(),  # NaN and infinities too
    st.binary(max_size=8),
    st.tuples(st.integers()),
    st.sets(st.integers(), max_size=2),
    st.builds(object),
)

# -- envelopes ------------------------------------------------------------------------------------

event_names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
timestamps = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(lambda d: d.isoformat()),
    st.just(utc_timestamp()),
)
envelopes = st.fixed_dictionaries(
    {
        "event_name": event_names,
        "payload": json_values,
        "channel": text,
        "domain": text,
        "timestamp": timestamps,
        "correlation_id": st.one_of(st.none(), text),
    }
)


def _broken(envelope: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**envelope, key: value}


@PROPERTY
@given(st.one_of(st.binary(max_size=200), text))
def test_parse_envelope_raises_only_malformed_event_error_on_any_bytes(data: Any) -> None:
    with contextlib.suppress(MalformedEventError):
        parse_envelope(data)


@PROPERTY
@given(
    envelopes,
    st.sampled_from(["event_name", "payload", "channel", "domain", "timestamp", "correlation_id"]),
    anything,
    st.booleans(),
)
def test_parse_envelope_raises_only_malformed_event_error_on_any_json(
    envelope: dict[str, Any], key: str, value: Any, drop: bool
) -> None:
    doc = {k: v for k, v in envelope.items() if k != key} if drop else _broken(envelope, key, value)
    try:
        data = json.dumps(doc).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return  # not JSON at all: covered by the bytes property
    with contextlib.suppress(MalformedEventError):
        parse_envelope(data)


@PROPERTY
@given(envelopes, st.booleans())
def test_a_valid_envelope_round_trips(envelope: dict[str, Any], compact: bool) -> None:
    try:
        body = json.dumps(
            envelope, ensure_ascii=not compact, separators=(",", ":") if compact else None
        ).encode()
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be UTF-8: not a message anyone can send
    raw = parse_envelope(body)
    assert raw.event_name == envelope["event_name"]
    assert raw.payload == envelope["payload"]
    assert (raw.channel, raw.domain) == (envelope["channel"], envelope["domain"])
    assert raw.correlation_id == (envelope["correlation_id"] or "")


# -- config dicts ------------------------------------------------------------------------------

_NATS_KEYS = list(KrytenConfig.model_fields["nats"].annotation.model_fields)  # type: ignore[union-attr]
_TOP_KEYS = list(KrytenConfig.model_fields)


SERVERS = ["h:1", "nats://u:p@h:4222", "tls://h", "ws://h:80/x", "http://h", "h:0", "h:99999"]


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), text), anything, max_size=6)


configs = st.fixed_dictionaries(
    {},
    optional={
        "nats": st.one_of(
            _section(_NATS_KEYS),
            st.fixed_dictionaries({"servers": st.one_of(st.lists(text, max_size=3), text)}),
            st.fixed_dictionaries(
                {"servers": st.lists(st.sampled_from(SERVERS), min_size=1, max_size=3)},
                optional=dict.fromkeys(("password", "token", "connect_timeout"), anything),
            ),
            anything,
        ),
        "channels": st.one_of(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({"domain": names, "channel": names}),
                    _section(["domain", "channel"]),
                ),
                max_size=3,
            ),
            anything,
        ),
        "service": st.one_of(
            _section(["name", "version", "health_port", "metrics_port"]), anything
        ),
        "metrics": st.one_of(_section(["port", "host"]), anything),
        "retry_attempts": anything,
        "log_level": anything,
        "shutdown_timeout": anything,
    },
)


valid_configs = st.fixed_dictionaries(
    {
        "nats": st.fixed_dictionaries(
            {"servers": st.lists(st.sampled_from(SERVERS[:4]), min_size=1, max_size=3)}
        ),
        "channels": st.lists(
            st.fixed_dictionaries(
                {
                    "domain": st.sampled_from(["cytu.be", "example.com:8443"]),
                    "channel": st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True),
                }
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with one setting replaced by anything (often still valid)."""
    config: dict[str, Any] = draw(valid_configs)
    section = draw(st.sampled_from(["", "nats", "channel"]))
    target = (
        config if section == "" else config["nats"] if section == "nats" else config["channels"][0]
    )
    keys = {"": _TOP_KEYS, "nats": _NATS_KEYS, "channel": ["domain", "channel"]}[section]
    target[draw(st.one_of(st.sampled_from(keys), text))] = draw(
        st.one_of(anything, st.integers(-5, 70000), st.floats(-1, 1e6), names)
    )
    return config


@pytest.mark.filterwarnings("ignore::kryten_sync.ConfigWarning")  # unknown keys, not strict
@PROPERTY
@given(
    st.one_of(configs, mutated_configs(), st.dictionaries(text, anything, max_size=4)),
    st.booleans(),
)
def test_config_from_dict_raises_only_validation_error(data: dict[str, Any], strict: bool) -> None:
    try:
        config = KrytenConfig.from_dict(data, strict=strict)
    except KrytenValidationError:
        return
    # Accepted: every channel becomes a valid subject, and the config dumps.
    for channel in config.channels:
        check_subject(f"kryten.events.cytube.{channel.channel.lower()}.>")
    json.loads(config.model_dump_json())


# -- command arguments ---------------------------------------------------------------------------

_ARG = st.one_of(
    anything,
    text,
    st.integers(min_value=-2, max_value=10**6),
    st.sampled_from(["end", "next", "prepend", "append", "yt", "gi", "12"]),
    st.lists(text, max_size=3),
    st.dictionaries(text, json_scalars, max_size=3),
)


def _arity(method: str) -> tuple[int, list[str]]:
    """Positional parameters after ``channel`` (required and optional)."""
    params = list(inspect.signature(commands.BUILDERS[method]).parameters.values())[1:]
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    return len(positional), [p.name for p in positional]


@pytest.mark.parametrize("method", sorted(commands.BUILDERS))
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_command_builders_raise_only_validation_error_and_what_they_accept_is_sendable(
    method: str, data: st.DataObject
) -> None:
    count, _ = _arity(method)
    channel = data.draw(names, label="channel")
    args = data.draw(st.lists(_ARG, min_size=0, max_size=count), label="args")
    domain = data.draw(st.one_of(st.none(), names), label="domain")
    try:
        command = commands.build(method, channel, *args, domain=domain)
    except KrytenValidationError:
        return
    except TypeError as exc:
        # Too few positional arguments is a programming error Python reports itself.
        assert "missing" in str(exc) and "argument" in str(exc), exc
        return
    body = command.body("c0ffee", utc_timestamp())
    payload = encode_payload(body, "command")  # raises nothing: the builder checked it
    subject = check_subject(command.subject)
    nats.aio.client._validate_subject(subject, strict=True)  # what nats-py would refuse
    decoded, problems = commands.parse(subject, payload)
    assert problems == [], problems
    assert decoded["data"] == json.loads(json.dumps(command.data))
    for value in _floats(command.data):
        assert math.isfinite(value)


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []
