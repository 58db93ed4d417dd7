"""Write docs/compat.md: every public member of kryten-py 0.17.5's KrytenClient and how
kryten_sync.KrytenClient answers a call written for it.

Reads the recorded API (tests/data/kryten_py_0_17_5_api.json, see
scripts/record_kryten_py_api.py). For each method it builds kryten-py's calls (every
parameter passed positionally where kryten-py allows it, every one by keyword, and the
required ones alone) and binds them on kryten_sync's signature. The status:

- ``same``: the same parameters (names, order, kinds, defaults);
- ``extended``: kryten-py's parameters unchanged, plus parameters of kryten-sync's own
  (keyword-only, or trailing with defaults), or a required one that became optional;
- ``differs``: the calls bind, but the result or the behaviour differs (``NOTES``).

Run from the repository root: ``python scripts/compat_table.py > docs/compat.md``.
tests/test_kryten_py_compat.py checks that the committed file is this script's output.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "tests" / "data" / "kryten_py_0_17_5_api.json"
P = inspect.Parameter

#: How a member behaves differently, or what to know about it: (differs?, text).
NOTES: dict[str, tuple[bool, str]] = {
    "add_media": (
        False,
        "waits for the bridge's `addvideo` reply and returns it with `success` and `uid` "
        "at the top level; `queue_media` is the form that does not wait",
    ),
    "channels": (
        False,
        "`ChannelInfo` (= `ChannelStatus`): kryten-py's fields and `model_dump()`, plus "
        "`token`, `received`, `malformed`, `pending`, `dropped`",
    ),
    "disconnect": (False, "`timeout` bounds the drain"),
    "economy_request": (False, "no reply in time raises `KrytenTimeoutError`, a `TimeoutError`"),
    "export_emotes": (False, "as `get_state_emotes`"),
    "get_all_profiles": (
        True,
        "a timeout or a bridge failure raises (kryten-py returns `{}`): an unreachable "
        "bridge is not an empty channel",
    ),
    "get_banlist": (
        False,
        '`{"banlist": envelope}`; the bans are `["banlist"]["payload"]`. The same holds '
        "for `get_channel_ranks` (`ranks`), `get_chan_log` (`log`) and "
        "`get_library_search` (`results`)",
    ),
    "get_kv_bucket": (True, "as `get_kv_store`"),
    "get_kv_store": (
        True,
        "returns a thread-safe `KeyValueStore` (`get`, `put`, `delete`, `keys`, "
        "`get_all`, `watch`), not nats-py's `KeyValue`, whose coroutines need the "
        "client's event loop",
    ),
    "get_or_create_kv_bucket": (False, "as `get_or_create_kv_store`"),
    "get_or_create_kv_store": (
        False,
        "binds an existing bucket as kryten-py does, unless a setting requested here "
        "(`history`, `ttl`, a `max_value_size` other than 1 MiB) differs: "
        "`BucketConfigError`",
    ),
    "get_state_current_media": (
        False,
        "a `CurrentMedia` model, readable as the dict kryten-py returns "
        '(`current["title"]`, `.get(...)`); `None` if unwritten',
    ),
    "get_state_current_uid": (
        False,
        "the uid of the playlist entry playing now (the stored `current.uid` can be "
        "stale), as a `str` like kryten-py's",
    ),
    "get_state_emotes": (
        True,
        "read from the bridge's `kryten_{channel}_emotes` bucket (kryten-py asks "
        "`state.emotes`); `Emote` models readable as dicts; `[]` if unwritten",
    ),
    "get_state_playlist_items": (
        False,
        '`PlaylistItem` models readable as dicts (`items[0]["uid"]`); `[]` when the '
        "bucket is missing (kryten-py raises)",
    ),
    "get_user": (
        True,
        "a timeout or a bridge failure raises (kryten-py returns `None`); a user without "
        "`profile` gets the reply's `data.profile`",
    ),
    "get_user_level": (False, "never raises, as kryten-py"),
    "get_user_profile": (False, "`None` on any failure, as kryten-py"),
    "health": (
        False,
        "every kryten-py field, plus kryten-sync's counters; `channels` holds "
        '`ChannelStatus` objects that are also the `"domain/channel"` strings kryten-py '
        "returns; `model_dump()` gives kryten-py's shape",
    ),
    "jump_to": (False, "the uid is sent as a string of digits, as the bridge requires"),
    "kv_delete": (True, "errors raise (kryten-py logs and swallows them)"),
    "kv_get": (
        True,
        "an invalid key raises, and so does a value that is not JSON under `parse_json` "
        "(kryten-py returns the default); a missing bucket reads as the default "
        "(kryten-py raises)",
    ),
    "kv_get_all": (True, "a value that is not JSON under `parse_json` raises"),
    "kv_keys": (False, "sorted; a missing bucket gives `[]`"),
    "kv_put": (
        True,
        "returns the revision; errors raise (kryten-py swallows them: a lost write looks "
        "like a success); a dict or list is stored as JSON even without `as_json`, and "
        "None or other objects are refused (kryten-py stores their Python repr)",
    ),
    "lifecycle": (
        True,
        "always the client's `ServiceLifecycle` (kryten-py: `None` before connect or "
        "without `service`); `is_running` tells whether it announces a service",
    ),
    "nats_request": (
        False,
        "no reply in time raises `KrytenTimeoutError` (a `TimeoutError`), no subscriber "
        "`NoRespondersError`",
    ),
    "on": (False, "handlers are plain functions on worker threads (an `async def` is refused)"),
    "on_group_restart": (
        False,
        "returns the callback (a decorator) and works before connect and without "
        "`service` (kryten-py raises `RuntimeError`)",
    ),
    "publish": (False, "returns once handed to the connection; `flush()` waits for the server"),
    "run": (
        False,
        "connects first if needed (kryten-py raises); in the main thread SIGINT/SIGTERM "
        "end it and disconnect",
    ),
    "safe_set_channel_rank": (
        True,
        "needs rank 3, CyTube's default (kryten-py asks 4); `rank` must be 1-5",
    ),
    "safe_set_options": (True, "needs rank 2, CyTube's default (kryten-py asks 3)"),
    "send_command": (
        False,
        "`meta` names the channel as configured; `service_request` is the form that "
        "waits for a reply",
    ),
    "set_channel_rank": (True, "`rank` must be 1-5: CyTube refuses to set a rank below 1"),
    "set_emotes": (
        True,
        "the bridge has no `setEmotes`: sent as `removeEmote` for each current emote not "
        "kept and `updateEmote` for each given one; returns the last correlation id",
    ),
    "stop": (False, "returns at once"),
    "subscribe": (
        False,
        "the handler is a plain function on the subscription's own thread; it gets a "
        "`Message` (`subject`, `data`, `reply`, `headers`, `json()`, `respond()`)",
    ),
    "subscribe_request_reply": (
        False,
        "the handler is a plain function on the subscription's thread; its return value "
        'is the JSON reply, an exception is answered `{"error": "Internal error"}`',
    ),
    "unban": (False, "without `name`, the banned name is looked up in the ban list first"),
}

# Members whose calls are async-only in kryten-py; their sync counterparts.
ASYNC_ONLY = {"__aenter__": "`with KrytenClient(...)`", "__aexit__": "`with KrytenClient(...)`"}


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "method", "property", "constructor"
    signature: str
    status: str
    calls: int  # call forms that bind
    total: int  # call forms tried
    note: str


def load_api() -> dict[str, Any]:
    api: dict[str, Any] = json.loads(API.read_text(encoding="utf-8"))
    return api


def client_api() -> dict[str, Any]:
    client: dict[str, Any] = load_api()["names"]["KrytenClient"]
    return client


def _placeholder(name: str) -> object:
    return f"<{name}>"


def calls(
    parameters: list[dict[str, Any]],
) -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """kryten-py's calls of a method: every parameter positionally where it may be, every
    one by keyword, and the required ones alone."""
    positional: list[Any] = []
    by_position: dict[str, Any] = {}
    by_keyword: dict[str, Any] = {}
    required_args: list[Any] = []
    required_kwargs: dict[str, Any] = {}
    only_positional: list[Any] = []
    for param in parameters:
        value, kind = _placeholder(param["name"]), param["kind"]
        if kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            continue
        if kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"):
            positional.append(value)
            if kind == "POSITIONAL_ONLY":
                only_positional.append(value)
            else:
                by_keyword[param["name"]] = value
            if not param["has_default"]:
                required_args.append(value)
        else:
            by_position[param["name"]] = value
            by_keyword[param["name"]] = value
            if not param["has_default"]:
                required_kwargs[param["name"]] = value
    yield "positional", tuple(positional), by_position
    yield "keyword", tuple(only_positional), by_keyword
    yield "required", tuple(required_args), required_kwargs


def binds(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _extends(theirs: list[dict[str, Any]], ours: inspect.Signature) -> tuple[bool, bool]:
    """``(same, extended)``: the parameters are identical; or kryten-py's keep their
    order, kinds and defaults (a required one may have become optional) among ours."""
    params = list(ours.parameters.values())
    simple = [
        (p.name, p.kind.name, p.default if p.default is not P.empty else "<required>")
        for p in params
    ]
    wanted = [
        (t["name"], t["kind"], t["default"] if t["has_default"] else "<required>") for t in theirs
    ]
    if simple == wanted:
        return True, False
    by_name = {p.name: p for p in params}
    order = [p.name for p in params]
    last = -1
    for t in theirs:
        p = by_name.get(t["name"])
        if p is None:
            return False, False
        index = order.index(p.name)
        if t["kind"] == "POSITIONAL_OR_KEYWORD":
            if p.kind is not P.POSITIONAL_OR_KEYWORD or index < last:
                return False, False
            last = index
        elif p.kind not in (P.KEYWORD_ONLY, P.POSITIONAL_OR_KEYWORD):
            return False, False
        if t["has_default"] and (p.default is P.empty or p.default != t["default"]):
            return False, False
    theirs_names = {t["name"] for t in theirs}
    extras_ok = all(
        p.default is not P.empty or p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
        for p in params
        if p.name not in theirs_names
    )
    return False, extras_ok


def rows(client: object) -> list[Row]:
    """One row per public member of kryten-py's KrytenClient, the constructor first."""
    api = client_api()
    cls = type(client)
    result: list[Row] = []
    ctor = inspect.signature(cls)
    forms = list(calls(api["constructor"]["parameters"]))
    ok = sum(binds(ctor, a, k) for _, a, k in forms)
    same, extended = _extends(api["constructor"]["parameters"], ctor)
    status = "same" if same else "extended" if extended else "differs"
    result.append(
        Row(
            "KrytenClient",
            "constructor",
            api["constructor"]["signature"],
            status,
            ok,
            len(forms),
            "",
        )
    )
    for name, member in sorted(api["members"].items()):
        differs, note = NOTES.get(name, (False, ""))
        if member["kind"] == "property":
            present = isinstance(inspect.getattr_static(cls, name, None), property)
            status = "differs" if differs or not present else "same"
            if name == "channels" and present:
                status = "extended"
            result.append(Row(name, "property", "(property)", status, int(present), 1, note))
            continue
        method = getattr(client, name, None)
        if method is None:
            result.append(Row(name, "method", member["signature"], "missing", 0, 3, note))
            continue
        signature = inspect.signature(method)
        forms = list(calls(member["parameters"]))
        ok = sum(binds(signature, a, k) for _, a, k in forms)
        same, extended = _extends(member["parameters"], signature)
        if ok < len(forms):
            status = "missing"
        elif differs:
            status = "differs"
        else:
            status = "same" if same else "extended" if extended else "differs"
        result.append(Row(name, "method", member["signature"], status, ok, len(forms), note))
    return result


def _sync_signature(signature: str) -> str:
    """kryten-py's signature text without the return annotation."""
    depth = 0
    for index, char in enumerate(signature):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char == ")":
            return signature[: index + 1]
    return signature


def render(client: object) -> str:
    table = rows(client)
    methods = [r for r in table if r.kind != "property"]
    props = [r for r in table if r.kind == "property"]
    forms = sum(r.total for r in methods)
    bound = sum(r.calls for r in methods)
    counts = {s: sum(r.status == s for r in table) for s in ("same", "extended", "differs")}
    lines = [
        "# kryten-py compatibility",
        "",
        "<!-- Generated by scripts/compat_table.py from tests/data/kryten_py_0_17_5_api.json;",
        "     tests/test_kryten_py_compat.py checks it. Do not edit by hand. -->",
        "",
        "Code written for kryten-py 0.17.5 ports to kryten-sync by deleting `async`/`await`",
        "(and `async with` becomes `with`). For every public member of kryten-py's",
        "`KrytenClient` this table says how kryten-sync's answers the same call.",
        "",
        f"- **{bound}/{forms} calls bind** ({len(methods) - 1} methods and the constructor, "
        "each called with every parameter positionally where kryten-py allows it, with "
        "every parameter by keyword, and with the required ones alone); "
        f"{sum(r.calls for r in props)}/{len(props)} properties exist.",
        f"- {counts['same']} same, {counts['extended']} extended, "
        f"{counts['differs']} differ (in result or behaviour, for the reason given).",
        "- Inherently async, so not carried over: `await` itself, and "
        + ", ".join(f"`{name}`" for name in sorted(ASYNC_ONLY))
        + " (use `with KrytenClient(...) as client:`).",
        "",
        "What holds for every row: the methods block their caller (with a finite timeout)",
        "and are safe to call from any thread; handlers and callbacks are plain functions",
        "run on worker threads. Commands go to the bridge's command subjects",
        "(`kryten.commands.cytube.{channel}.{action}`, docs/protocol.md section 2), with",
        "the keys the bridge expects, and their arguments are checked before sending",
        "(`KrytenValidationError`, a `ValueError`). A failure the bridge reports raises",
        "`BridgeError`, a `ValueError` as in kryten-py; a timeout `KrytenTimeoutError`, a",
        "`TimeoutError`. Results kryten-py gives as dicts are dicts here, or typed models",
        'that read like those dicts (`result["uid"]`, `.get(...)`).',
        "",
        "| member | kryten-py signature | status | notes |",
        "|---|---|---|---|",
    ]
    for row in table:
        signature = _sync_signature(row.signature).replace("|", "\\|")
        note = row.note.replace("|", "\\|")
        lines.append(f"| `{row.name}` | `{signature}` | {row.status} | {note} |")
    return "\n".join(lines) + "\n"


def sample_client() -> Any:
    """A kryten_sync client to inspect (never connected)."""
    sys.path.insert(0, str(ROOT))
    from kryten_sync import KrytenClient  # noqa: PLC0415 - after the path is set

    return KrytenClient(
        {
            "nats": {"servers": ["nats://127.0.0.1:4222"]},
            "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        }
    )


def main(write: Callable[[str], object] = sys.stdout.write) -> None:
    write(render(sample_client()))


if __name__ == "__main__":
    main()
