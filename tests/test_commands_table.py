"""The command table and builders against protocol section 2, the samples and the checks."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kryten_sync import _validate, commands
from kryten_sync.commands import BUILDERS, COMMANDS, Command, CommandSpec, build, parse
from kryten_sync.errors import KrytenValidationError
from kryten_sync.subjects import normalize_token
from tests.command_samples import SAMPLE_CHANNEL, SAMPLES, iter_samples

# Part of the repository, so a plain clone can run this test.
PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

METHODS = sorted(COMMANDS)


# --- parsing PROTOCOL.md section 2 ----------------------------------------------------


@dataclass(frozen=True)
class DocCommand:
    """One method as a row of the section 2 table describes it."""

    method: str
    params: tuple[tuple[str, str | None], ...]  # (name, default as written, or None)
    action: str
    keys: tuple[str, ...]
    optional_keys: tuple[str, ...]
    row: str


def _split_top_level(text: str, sep: str = " / ") -> list[str]:
    """Split on ``sep`` outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    i = 0
    while i < len(text):
        if depth == 0 and text.startswith(sep, i):
            parts.append(current.strip())
            current = ""
            i += len(sep)
            continue
        char = text[i]
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
        i += 1
    parts.append(current.strip())
    return parts


def _parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    params: list[tuple[str, str | None]] = []
    for raw in filter(None, (p.strip() for p in text.split(","))):
        name, eq, default = raw.partition("=")
        params.append((name.strip(), default.strip() if eq else None))
    return tuple(params)


def _parse_row(cells: list[str], row: str) -> list[DocCommand]:
    method_cell, action_cell, data_cell = cells
    parts = _split_top_level(method_cell)
    names: list[str] = []
    params: list[str | None] = []  # None: not given in this part
    for part in parts:
        match = re.fullmatch(r"(\w+)(?:\((.*)\))?", part)
        assert match, f"cannot parse method {part!r} in row {row!r}"
        names.append(match.group(1))
        params.append(match.group(2))
    # "(...)" repeats the previous part's parameters; a bare name takes the next ones.
    for i, p in enumerate(params):
        if p == "...":
            params[i] = params[i - 1]
    for i in range(len(params) - 1, -1, -1):
        if params[i] is None:
            following = [p for p in params[i + 1 :] if p is not None]
            assert following, f"no parameters for {names[i]} in row {row!r}"
            params[i] = following[0]

    actions = re.findall(r"`([^`]+)`", action_cell)
    assert len(actions) == len(names), f"actions {actions} vs methods {names} in {row!r}"

    braces = re.findall(r"`\{([^`]*)\}`", data_cell)
    optional = tuple(re.findall(r"plus `(\w+)` only when given", data_cell))
    commands = []
    for i, name in enumerate(names):
        parsed = _parse_params(params[i] or "")
        if braces:
            assert len(braces) in (1, len(names)), f"data {braces} vs methods in {row!r}"
            brace = braces[i] if len(braces) == len(names) else braces[0]
            keys = tuple(k.strip() for k in brace.split(",") if k.strip())
        else:
            assert data_cell.startswith("all "), f"cannot parse data cell of {row!r}"
            keys = tuple(p for p, _ in parsed)
            words = {"six": 6}
            count = words.get(data_cell.split()[1])
            assert count is None or count == len(keys), row
        commands.append(DocCommand(name, parsed, actions[i], keys, optional, row))
    return commands


def parse_protocol_commands(text: str) -> dict[str, DocCommand]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("## 2.")]
    assert len(starts) == 1, "PROTOCOL.md has no single '## 2.' section"
    start = starts[0] + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    table = [line.strip() for line in lines[start:end] if line.strip().startswith("|")]
    assert len(table) > 2, "no command table in section 2"
    assert re.fullmatch(r"\|(\s*-+\s*\|)+", table[1].replace(" ", "")), table[1]
    result: dict[str, DocCommand] = {}
    for row in table[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3, f"expected 3 cells in {row!r}"
        for command in _parse_row(cells, row):
            assert command.method not in result, f"{command.method} listed twice"
            result[command.method] = command
    return result


@pytest.fixture(scope="module")
def doc() -> dict[str, DocCommand]:
    if not PROTOCOL_MD.is_file():
        pytest.fail(f"protocol document not found at {PROTOCOL_MD}")
    return parse_protocol_commands(PROTOCOL_MD.read_text(encoding="utf-8"))


def test_doc_and_table_list_the_same_methods(doc: dict[str, DocCommand]) -> None:
    assert len(COMMANDS) == 40
    assert sorted(doc) == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_spec_matches_doc_row(doc: dict[str, DocCommand], method: str) -> None:
    assert method in doc, f"{method} is not in PROTOCOL.md section 2"
    row = doc[method]
    spec = COMMANDS[method]
    assert spec.method == method
    assert spec.action == row.action, row.row
    assert spec.keys == row.keys, row.row
    assert spec.optional_keys == row.optional_keys, row.row


@pytest.mark.parametrize("method", METHODS)
def test_signature_matches_doc_row(doc: dict[str, DocCommand], method: str) -> None:
    row = doc[method]
    params = list(inspect.signature(BUILDERS[method]).parameters.values())
    kind = inspect.Parameter
    assert params[0].name == "channel"
    assert params[0].kind is kind.POSITIONAL_OR_KEYWORD
    assert params[0].default is kind.empty
    assert params[-1].name == "domain"
    assert params[-1].kind is kind.KEYWORD_ONLY
    assert params[-1].default is None
    middle = params[1:-1]
    assert [p.name for p in middle] == [name for name, _ in row.params], row.row
    for param, (name, default) in zip(middle, row.params, strict=True):
        assert param.kind is kind.POSITIONAL_OR_KEYWORD, name
        if default is None:
            assert param.default is kind.empty, f"{method}({name}) should have no default"
        else:
            expected = ast.literal_eval(default)
            assert param.default == expected, f"{method}({name}) default"
            assert type(param.default) is type(expected), f"{method}({name}) default type"


def test_parser_handles_shared_rows() -> None:
    text = (
        "## 2. Commands\n\n| method | action | data |\n|---|---|---|\n"
        "| a / b(x, y=1) | `A` / `B` | `{x}` |\n"
        "| c(u) / d(...) | `C` / `D` | `{u}` plus `why` only when given |\n"
        "| e(p) / f(q) | `E` / `F` | `{p}` / `{q}`; note |\n"
        "| g(m, n=False) | `G` | all two |\n"
        "## 3. next\n| z() | `Z` | `{}` |\n"
    )
    parsed = parse_protocol_commands(text)
    assert sorted(parsed) == ["a", "b", "c", "d", "e", "f", "g"]
    assert parsed["a"].params == (("x", None), ("y", "1"))
    assert parsed["a"].keys == ("x",)
    assert parsed["d"].params == (("u", None),)
    assert parsed["d"].optional_keys == ("why",)
    assert parsed["f"].keys == ("q",)
    assert parsed["g"].keys == ("m", "n")


# --- the table itself -----------------------------------------------------------------


def test_table_is_read_only_and_specs_frozen() -> None:
    with pytest.raises(TypeError):
        COMMANDS["x"] = COMMANDS["send_chat"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        COMMANDS["send_chat"].action = "say"  # type: ignore[misc]


def test_table_entries_are_consistent() -> None:
    actions = [spec.action for spec in COMMANDS.values()]
    assert len(set(actions)) == len(actions)
    # What CyTube receives as chat (the bridge turns kick/ban/mutes into "/kick name").
    assert {m for m, s in COMMANDS.items() if s.rate_limited} == {
        "send_chat",
        "send_pm",
        "kick_user",
        "ban_user",
        "mute_user",
        "shadow_mute_user",
        "unmute_user",
    }
    for method, spec in COMMANDS.items():
        assert isinstance(spec, CommandSpec)
        assert spec.method == method
        assert isinstance(spec.min_rank, float)
        assert spec.min_rank in {0.0, 1.0, 1.5, 2.0, 3.0, 4.0}
        assert not set(spec.keys) & set(spec.optional_keys)


# --- the table of builders -------------------------------------------------------------


def test_builders_match_the_table() -> None:
    assert list(BUILDERS) == list(COMMANDS)
    for method, builder in BUILDERS.items():
        assert builder.__name__ == method
        assert getattr(commands, method) is builder
    with pytest.raises(TypeError):
        BUILDERS["x"] = BUILDERS["send_chat"]  # type: ignore[index]


def test_build_refuses_an_unknown_method() -> None:
    with pytest.raises(KrytenValidationError) as info:
        build("send_chta", "lounge", "hi")
    assert str(info.value) == "build: unknown command method 'send_chta'; did you mean 'send_chat'?"
    with pytest.raises(KrytenValidationError) as info:
        build("zzz", "lounge")
    assert str(info.value) == "build: unknown command method 'zzz'"


def test_command_is_frozen_data() -> None:
    command = commands.send_chat("lounge", "hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.channel = "other"  # type: ignore[misc]
    assert command == Command(COMMANDS["send_chat"], "lounge", {"message": "hi"})
    assert command.domain is None


# --- the builders give exactly the samples ----------------------------------------------


def _assert_same_types(actual: Any, expected: Any, path: str = "data") -> None:
    assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: key order"
        for key in expected:
            _assert_same_types(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list):
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same_types(a, e, f"{path}[{i}]")


def test_every_method_has_samples() -> None:
    assert sorted(SAMPLES) == METHODS
    for method, samples in SAMPLES.items():
        assert samples, method
        spec = COMMANDS[method]
        seen_optional: set[str] = set()
        for _, _, expected in samples:
            assert json.loads(json.dumps(expected)) == expected
            assert list(expected)[: len(spec.keys)] == list(spec.keys), method
            extra = list(expected)[len(spec.keys) :]
            assert extra == [k for k in spec.optional_keys if k in extra], method
            seen_optional.update(extra)
        assert seen_optional == set(spec.optional_keys), f"{method}: sample every optional key"


_SAMPLE_CASES = list(iter_samples())
_SAMPLE_IDS = [f"{method}-{i}" for method, samples in SAMPLES.items() for i in range(len(samples))]


@pytest.mark.parametrize(("method", "args", "kwargs", "expected"), _SAMPLE_CASES, ids=_SAMPLE_IDS)
def test_sample_builds_exact_data(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    command = build(method, SAMPLE_CHANNEL, *args, **kwargs)
    spec = COMMANDS[method]
    assert command.spec is spec
    assert command.channel == SAMPLE_CHANNEL
    assert command.domain is None
    assert command.data == expected
    _assert_same_types(command.data, expected)
    assert command.subject == f"kryten.commands.cytube.test-channel.{normalize_token(spec.action)}"
    body = command.body("cid-1", "2024-05-01T12:00:00+00:00")
    assert list(body) == ["action", "data", "correlation_id", "timestamp"]
    assert body == {
        "action": spec.action,
        "data": expected,
        "correlation_id": "cid-1",
        "timestamp": "2024-05-01T12:00:00+00:00",
    }
    assert parse(command.subject, json.dumps(body).encode()) == (body, [])


@pytest.mark.parametrize(("method", "args", "kwargs", "expected"), _SAMPLE_CASES, ids=_SAMPLE_IDS)
def test_builder_is_pure(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    # No client exists here: a builder that needed one, or sent anything, could not run.
    first = BUILDERS[method](SAMPLE_CHANNEL, *args, **kwargs)
    second = BUILDERS[method](SAMPLE_CHANNEL, *args, **kwargs)
    assert first == second
    assert first is not second
    assert first.data == expected


@pytest.mark.parametrize("method", METHODS)
def test_domain_is_passed_through(method: str) -> None:
    args, kwargs, expected = SAMPLES[method][0]
    command = BUILDERS[method]("lounge", *args, **kwargs, domain="cytu.be")
    assert (command.channel, command.data, command.domain) == ("lounge", expected, "cytu.be")
    assert list(command.body("cid", "now")) == ["action", "data", "correlation_id", "timestamp"]


def test_mutable_arguments_are_copied() -> None:
    options = {"chat_antiflood_params": {"burst": 4, "sustained": 1}}
    poll_options = ["a", "b"]
    permissions = {"ban": 2}
    built = [
        commands.set_options("c", options),
        commands.new_poll("c", "t", poll_options),
        commands.set_permissions("c", permissions),
    ]
    options["chat_antiflood_params"]["burst"] = 99
    poll_options.append("c")
    permissions["ban"] = 3
    assert built[0].data == {"options": {"chat_antiflood_params": {"burst": 4, "sustained": 1}}}
    assert built[1].data["options"] == ["a", "b"]
    assert built[2].data == {"permissions": {"ban": 2}}


# --- validation -----------------------------------------------------------------------

_NAN = float("nan")
_INF = float("inf")

# (method, args after channel, kwargs, argument the message must name)
VALIDATION_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("send_chat", ("",), {}, "message"),
    ("send_chat", (" \t\n",), {}, "message"),
    ("send_chat", (123,), {}, "message"),
    ("send_chat", (None,), {}, "message"),
    ("send_pm", ("", "hi"), {}, "username"),
    ("send_pm", ("alice", ""), {}, "message"),
    ("send_pm", ("alice", 5), {}, "message"),
    ("queue_media", ("", "id"), {}, "media_type"),
    ("queue_media", ("yt", ""), {}, "media_id"),
    ("queue_media", ("yt", 5), {}, "media_id"),
    ("queue_media", ("yt", "id", "start"), {}, "position"),
    ("queue_media", ("yt", "id", 3), {}, "position"),
    ("queue_media", ("yt", "id", "end", "yes"), {}, "temp"),
    ("queue_media", ("yt", "id"), {"temp": 1}, "temp"),
    ("delete_media", (-1,), {}, "uid"),
    ("delete_media", ("5",), {}, "uid"),
    ("delete_media", (True,), {}, "uid"),
    ("delete_media", (1.0,), {}, "uid"),
    ("move_media", ("7", 3), {}, "uid"),
    ("move_media", (7, "middle"), {}, "position"),
    ("move_media", (7, "3"), {}, "position"),
    ("move_media", (7, -2), {}, "position"),
    ("move_media", (7, True), {}, "position"),
    ("move_media", (7, None), {}, "position"),
    ("jump_to", (-1,), {}, "uid"),
    ("jump_to", ("12a",), {}, "uid"),
    ("jump_to", ("",), {}, "uid"),
    ("jump_to", ("-3",), {}, "uid"),
    ("jump_to", (" 12",), {}, "uid"),
    ("jump_to", ("\u0661\u0662",), {}, "uid"),  # Arabic-Indic digits
    ("jump_to", (True,), {}, "uid"),
    ("jump_to", (1.5,), {}, "uid"),
    ("set_temp", (None,), {}, "uid"),
    ("set_temp", (5, "yes"), {}, "is_temp"),
    ("set_temp", (5, 0), {}, "is_temp"),
    ("seek", (-1,), {}, "time_seconds"),
    ("seek", (-0.5,), {}, "time_seconds"),
    ("seek", (_NAN,), {}, "time_seconds"),
    ("seek", (_INF,), {}, "time_seconds"),
    ("seek", ("10",), {}, "time_seconds"),
    ("seek", (True,), {}, "time_seconds"),
    ("kick_user", ("",), {}, "username"),
    ("kick_user", ("bob", 5), {}, "reason"),
    ("ban_user", ("  ",), {}, "username"),
    ("ban_user", ("bob",), {"reason": b"x"}, "reason"),
    ("assign_leader", (None,), {}, "username"),
    ("assign_leader", (7,), {}, "username"),
    ("mute_user", ("",), {}, "username"),
    ("shadow_mute_user", ("",), {}, "username"),
    ("unmute_user", (None,), {}, "username"),
    ("set_motd", (None,), {}, "motd"),
    ("set_channel_css", ("a" * (20 * 1024 + 1),), {}, "css"),
    ("set_channel_css", ("\u00e9" * (10 * 1024 + 1),), {}, "css"),  # 2 bytes each
    ("set_channel_css", (b"body{}",), {}, "css"),
    ("set_channel_js", ("x" * (20 * 1024 + 1),), {}, "js"),
    ("set_channel_js", (None,), {}, "js"),
    ("set_options", ([("a", 1)],), {}, "options"),
    ("set_options", ("a=1",), {}, "options"),
    ("set_options", ({1: "x"},), {}, "options"),
    ("set_options", ({"a": object()},), {}, "options"),
    ("set_options", ({"a": _NAN},), {}, "options"),
    ("set_permissions", ("x",), {}, "permissions"),
    ("set_permissions", ({"ban": "2"},), {}, "permissions"),
    ("set_permissions", ({"ban": True},), {}, "permissions"),
    ("set_permissions", ({"ban": _INF},), {}, "permissions"),
    ("set_permissions", ({2: 2},), {}, "permissions"),
    ("update_emote", ("", "img"), {}, "name"),
    ("update_emote", ("n", ""), {}, "image"),
    ("update_emote", ("n", "i", 5), {}, "source"),
    ("remove_emote", ("",), {}, "name"),
    ("add_filter", ("", "x", "g", "r"), {}, "name"),
    ("add_filter", ("n", "", "g", "r"), {}, "source"),
    ("add_filter", ("n", "x", "q", "r"), {}, "flags"),
    ("add_filter", ("n", "x", "gg", "r"), {}, "flags"),
    ("add_filter", ("n", "x", None, "r"), {}, "flags"),
    ("add_filter", ("n", "x", "g", None), {}, "replace"),
    ("add_filter", ("n", "x", "g", "r", "no"), {}, "filterlinks"),
    ("add_filter", ("n", "x", "g", "r", False, 1), {}, "active"),
    ("update_filter", (" ", "x", "g", "r"), {}, "name"),
    ("update_filter", ("n", "x", "g", "r"), {"active": None}, "active"),
    ("remove_filter", ("",), {}, "name"),
    ("new_poll", ("t", []), {}, "options"),
    ("new_poll", ("t", "abc"), {}, "options"),
    ("new_poll", ("t", None), {}, "options"),
    ("new_poll", ("t", {"a", "b"}), {}, "options"),
    ("new_poll", ("t", ["a", 2]), {}, "options[1]"),
    ("new_poll", ("t", ["a", ""]), {}, "options[1]"),
    ("new_poll", ("t", ["a" * 256]), {}, "options[0]"),
    ("new_poll", ("x" * 256, ["a"]), {}, "title"),
    ("new_poll", (5, ["a"]), {}, "title"),
    ("new_poll", ("t", ["a"], "no"), {}, "obscured"),
    ("new_poll", ("t", ["a"], False, -1), {}, "timeout"),
    ("new_poll", ("t", ["a"]), {"timeout": True}, "timeout"),
    ("new_poll", ("t", ["a"]), {"timeout": _INF}, "timeout"),
    ("vote", (-1,), {}, "option"),
    ("vote", ("1",), {}, "option"),
    ("vote", (False,), {}, "option"),
    ("set_channel_rank", ("alice", 0), {}, "rank"),
    ("set_channel_rank", ("alice", 6), {}, "rank"),
    ("set_channel_rank", ("alice", -1), {}, "rank"),
    ("set_channel_rank", ("alice", 2.0), {}, "rank"),
    ("set_channel_rank", ("alice", True), {}, "rank"),
    ("set_channel_rank", ("", 2), {}, "username"),
    ("unban", ("12", "x"), {}, "ban_id"),
    ("unban", (-1, "x"), {}, "ban_id"),
    ("unban", (12, ""), {}, "name"),
    ("read_chan_log", (0,), {}, "count"),
    ("read_chan_log", (-5,), {}, "count"),
    ("read_chan_log", ("100",), {}, "count"),
    ("read_chan_log", (True,), {}, "count"),
    ("search_library", ("",), {}, "query"),
    ("search_library", (None,), {}, "query"),
    ("search_library", ("q", ""), {}, "source"),
    ("delete_from_library", ("",), {}, "media_id"),
    ("delete_from_library", (5,), {}, "media_id"),
]


def _check_refused(call: Callable[[], Command], method: str, argument: str) -> None:
    with pytest.raises(KrytenValidationError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{method}: "), message
    assert argument in message, message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "argument"),
    VALIDATION_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(VALIDATION_CASES)],
)
def test_validation_error(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], argument: str
) -> None:
    _check_refused(lambda: BUILDERS[method]("lounge", *args, **kwargs), method, argument)


def test_every_method_with_arguments_has_a_validation_case() -> None:
    covered = {case[0] for case in VALIDATION_CASES}
    with_args = {m for m in METHODS if len(inspect.signature(BUILDERS[m]).parameters) > 2}
    assert with_args <= covered


@pytest.mark.parametrize("bad_channel", ["", "...", "*>", "?!", 42, None])
@pytest.mark.parametrize("method", METHODS)
def test_bad_channel_is_refused(method: str, bad_channel: Any) -> None:
    args, kwargs, _ = SAMPLES[method][0]
    _check_refused(lambda: BUILDERS[method](bad_channel, *args, **kwargs), method, "channel")


@pytest.mark.parametrize("bad_domain", ["", "  ", 5, b"cytu.be"])
@pytest.mark.parametrize("method", METHODS)
def test_bad_domain_is_refused(method: str, bad_domain: Any) -> None:
    args, kwargs, _ = SAMPLES[method][0]
    _check_refused(
        lambda: BUILDERS[method]("lounge", *args, **kwargs, domain=bad_domain), method, "domain"
    )


def test_boundaries_are_accepted() -> None:
    commands.set_channel_css("c", "\u00e9" * (10 * 1024))  # exactly 20 KiB as UTF-8
    commands.set_channel_js("c", "x" * (20 * 1024))
    commands.new_poll("c", "x" * 255, ["y" * 255])
    commands.set_channel_rank("c", "a", 5)
    commands.read_chan_log("c", 1)
    commands.seek("c", 0)
    assert commands.jump_to("c", "0").data == {"uid": "0"}


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        ("1", {}, "must be a number, got str"),
        (True, {}, "must be a number, got bool"),
        (_NAN, {"finite": False}, "must be finite, got nan"),
        (_INF, {}, "must be finite, got inf"),
        (-1, {"minimum": 0}, "must not be negative, got -1"),
        (0, {"minimum": 0, "exclusive_minimum": True}, "must be positive, got 0"),
        (0.5, {"minimum": 1}, "must be >= 1, got 0.5"),
        (1, {"minimum": 1, "exclusive_minimum": True}, "must be > 1, got 1"),
    ],
)
def test_require_number_refuses(value: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(KrytenValidationError) as info:
        _validate.require_number("f", "x", value, **options)
    assert str(info.value) == f"f: x {message}"


def test_require_number_returns_the_value_unchanged() -> None:
    assert type(_validate.require_number("f", "x", 3, minimum=0)) is int
    assert _validate.require_number("f", "x", _INF, finite=False) == _INF
    assert _validate.require_number("f", "x", 0.1, minimum=0, exclusive_minimum=True) == 0.1


# --- the _make guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("send_chat", {}),
        ("send_chat", {"msg": "hi"}),
        ("send_chat", {"message": "hi", "meta": {}}),
        ("kick_user", {"reason": "x"}),
        ("kick_user", {"username": "a", "reason": "x", "extra": 1}),
        ("clear_playlist", {"x": 1}),
    ],
)
def test_command_guard_rejects_wrong_keys(method: str, data: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match=method):
        commands._make(method, "lounge", None, **data)


def test_command_guard_rejects_unknown_method() -> None:
    with pytest.raises(RuntimeError, match="no_such"):
        commands._make("no_such", "lounge", None)


def test_make_orders_keys_as_the_protocol() -> None:
    kick = commands._make("kick_user", "lounge", None, reason="r", username="u")
    add = commands._make("queue_media", "lounge", None, temp=True, pos="end", id="i", type="yt")
    assert list(kick.data) == ["username", "reason"]
    assert list(add.data) == ["type", "id", "pos", "temp"]


# --- docstrings and annotations -------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_docstring_names_rank(method: str) -> None:
    doc = inspect.getdoc(BUILDERS[method])
    assert doc, f"{method} has no docstring"
    assert f"rank {COMMANDS[method].min_rank:g}" in doc, doc
    assert "correlation id" not in doc, "a builder sends nothing: it has no correlation id"


@pytest.mark.parametrize("method", METHODS)
def test_annotations_are_complete(method: str) -> None:
    function = BUILDERS[method]
    hints = typing.get_type_hints(function)
    names = list(inspect.signature(function).parameters)
    assert set(hints) == {*names, "return"}, method
    assert hints["return"] is Command
    assert hints["channel"] is str
    assert hints["domain"] == str | None
