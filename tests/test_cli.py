"""The ``kryten-sync`` command line, run as real subprocesses against a real nats-server.

The other side is a FakeBridge in this process. Each CLI run pays the interpreter's
start-up and imports (about a second here), so independent runs start together.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from kryten_sync import COMMANDS
from kryten_sync.testing import FakeBridge, ReceivedCommand
from tests._nats import NatsServer, env_with_repo

CLI = [sys.executable, "-m", "kryten_sync"]


def cli_env(**extra: str) -> dict[str, str]:
    env = env_with_repo()
    env.pop("KRYTEN_CONFIG", None)
    env.update(extra)
    return env


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
    )


def run_all(
    *argvs: list[str], env: dict[str, str] | None = None, timeout: float = 30
) -> list[subprocess.CompletedProcess[str]]:
    """Run several CLI invocations at once; their results in the same order."""
    procs = [start(*argv, env=env) for argv in argvs]
    results = []
    for argv, proc in zip(argvs, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        results.append(subprocess.CompletedProcess([*CLI, *argv], proc.returncode, out, err))
    return results


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_all(list(args), env=env)[0]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kryten-sync: error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def fake(shared_server: NatsServer) -> Iterator[FakeBridge]:
    with FakeBridge(shared_server.url, domain="cytu.be", channel="lounge") as bridge:
        yield bridge


@pytest.fixture
def bridge(fake: FakeBridge) -> FakeBridge:
    fake.clear()
    return fake


def by_correlation_id(fake: FakeBridge, ids: list[str]) -> list[ReceivedCommand]:
    """The commands the fake received with these ids, in the same order."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = {c.correlation_id: c for c in list(fake.commands)}
        if all(i in seen for i in ids):
            return [seen[i] for i in ids]
        time.sleep(0.02)
    raise AssertionError(f"commands missing: {ids} vs {[c.correlation_id for c in fake.commands]}")


# --------------------------------------------------------------------------- commands


def test_send_reaches_the_bridge_as_a_chat_command(
    shared_server: NatsServer, bridge: FakeBridge
) -> None:
    result = run("send", "lounge", "hello from the shell", "--nats", shared_server.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    command = bridge.wait_for_command("chat")
    assert command.data == {"message": "hello from the shell"}
    assert command.problems == []
    assert result.stdout.strip() == command.correlation_id
    assert command.subject == "kryten.commands.cytube.lounge.chat"


def test_cmd_reads_typed_arguments_from_the_signature(
    shared_server: NatsServer, bridge: FakeBridge
) -> None:
    url = ["--nats", shared_server.url]
    cases: list[tuple[list[str], str, dict[str, object]]] = [
        (["delete_media", "lounge", "42"], "delete", {"uid": 42}),
        (["set_temp", "lounge", "7", "--is-temp", "false"], "setTemp", {"uid": 7, "temp": False}),
        (
            ["set_options", "lounge", '{"allow_voteskip": false, "pagetitle": "Hi"}'],
            "setOptions",
            {"options": {"allow_voteskip": False, "pagetitle": "Hi"}},
        ),
        (
            ["queue_media", "cytu.be/lounge", "yt", "abc", "--position", "next", "--temp", "true"],
            "queue",
            {"type": "yt", "id": "abc", "pos": "next", "temp": True},
        ),
        (["move_media", "lounge", "3", "append"], "move", {"uid": 3, "after": "append"}),
        (
            ["new_poll", "lounge", "Best?", '["tea", "coffee"]', "--timeout", "2.5"],
            "newPoll",
            {"title": "Best?", "options": ["tea", "coffee"], "obscured": False, "timeout": 2.5},
        ),
        (
            ["kick_user", "lounge", "bob", "--reason", "spam"],
            "kick",
            {"username": "bob", "reason": "spam"},
        ),
    ]
    results = run_all(*(["cmd", *argv, *url] for argv, _, _ in cases))
    for result in results:
        assert result.returncode == 0, (result.args, result.stderr)
    commands = by_correlation_id(bridge, [r.stdout.strip() for r in results])
    for (argv, action, data), command in zip(cases, commands, strict=True):
        assert (command.action, command.data) == (action, data), argv
        assert command.problems == [], (argv, command.problems)


def test_cmd_validation_errors_exit_1_with_one_line_before_connecting() -> None:
    nowhere = ["--nats", "nats://127.0.0.1:1"]  # nothing listens: no connection is tried
    rank, blank = run_all(
        ["cmd", "set_channel_rank", "lounge", "bob", "9", *nowhere],
        ["send", "lounge", "   ", *nowhere],
    )
    assert rank.returncode == 1
    assert "set_channel_rank: rank must be <= 5, got 9" in one_error_line(rank)
    assert blank.returncode == 1
    assert "send_chat: message must not be empty" in one_error_line(blank)


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"nats": {"servers": ["nats://127.0.0.1:4222"]}, "channels": []}')
    cases = {
        "expected an integer, got 'abc'": ["cmd", "delete_media", "lounge", "abc"],
        "expected true or false": ["cmd", "set_temp", "lounge", "1", "--is-temp", "maybe"],
        "did you mean 'delete_media'": ["cmd", "delet_media", "lounge", "1"],
        "expected a JSON object": ["cmd", "set_options", "lounge", "[1, 2]"],
        "required: MESSAGE": ["send", "lounge"],
        "which channel?": ["ping"],
        "cannot be combined": ["--config", str(config), "send", "lounge", "hi", "--nats", "x"],
    }
    results = run_all(*cases.values())
    for (expected, argv), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 2, (argv, result.stderr)
        assert expected in one_error_line(result), argv


# --------------------------------------------------------------------------- tail


class Lines:
    """A pipe read line by line on a thread, so that a test can wait with a timeout."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put("<EOF>")

    def next(self, timeout: float = 10) -> str:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None

    def rest(self) -> list[str]:
        """The remaining lines (call after the process ended)."""
        self._thread.join(5)
        lines = []
        while not self._queue.empty():
            lines.append(self._queue.get())
        return [line for line in lines if line != "<EOF>"]


def test_tail_prints_events_and_exits_0_on_ctrl_c(
    shared_server: NatsServer, bridge: FakeBridge
) -> None:
    url = ["--nats", shared_server.url]
    procs = [
        start("tail", "lounge", "--json", *url),
        start("tail", "cytu.be/lounge", "--event", "chatmsg", *url),
    ]
    try:
        (as_json, chat_only) = [Lines(p.stdout) for p in procs]
        errors = [Lines(p.stderr) for p in procs]
        for err in errors:
            assert "tailing" in err.next(30)  # subscribed: nothing is missed from now on
        bridge.emit("addUser", {"name": "alice", "rank": 1})
        sent = bridge.emit("chatMsg", {"username": "alice", "msg": "it&#39;s me", "meta": {}})
        joined, chat = json.loads(as_json.next()), json.loads(as_json.next())
        assert joined["event_name"] == "addUser"
        assert joined["payload"] == {"name": "alice", "rank": 1}
        assert chat["payload"] == sent["payload"]
        assert chat["correlation_id"] == sent["correlation_id"]
        envelope_keys = {"event_name", "payload", "channel", "domain", "timestamp"}
        assert set(chat) == {*envelope_keys, "correlation_id"}
        line = chat_only.next()
        assert line.endswith("  <alice> it's me"), line  # the join was filtered out
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc, err in zip(procs, errors, strict=True):
            assert proc.wait(10) == 0
            assert err.rest() == []
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- queries


def test_ping_and_services_print_the_bridge_answers(
    shared_server: NatsServer, bridge: FakeBridge
) -> None:
    bridge.services = {
        "services": [{"name": "echo", "version": "1.0"}],
        "count": 1,
        "active_count": 1,
    }
    url = ["--nats", shared_server.url]
    ping, services, elsewhere = run_all(
        ["ping", "--channel", "cytu.be/lounge", *url],
        ["services", "lounge", *url],
        ["ping", "other-channel", "--request-timeout", "0.5", *url],
    )
    assert ping.returncode == 0, ping.stderr
    answer = json.loads(ping.stdout)
    assert answer["pong"] is True and answer["version"] == bridge.version
    assert services.returncode == 0, services.stderr
    assert json.loads(services.stdout) == bridge.services
    assert elsewhere.returncode == 1
    assert "'system.ping' got no reply within 0.5 s" in one_error_line(elsewhere)


def test_kv_put_get_ls_round_trip(shared_server: NatsServer) -> None:
    url = ["--nats", shared_server.url]
    put = run("kv", "put", "cli_bucket", "greeting", "hello, wörld", "--create", *url)
    assert put.returncode == 0, put.stderr
    assert int(put.stdout) >= 1
    get, ls, missing = run_all(
        ["kv", "get", "cli_bucket", "greeting", *url],
        ["kv", "ls", "cli_bucket", *url],
        ["kv", "get", "cli_bucket", "nope", *url],
    )
    assert (get.returncode, get.stdout) == (0, "hello, wörld\n"), get.stderr
    assert (ls.returncode, ls.stdout) == (0, "greeting\n"), ls.stderr
    assert missing.returncode == 1
    assert "no key 'nope' in bucket 'cli_bucket'" in one_error_line(missing)


def test_config_file_from_the_environment(
    shared_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    config = tmp_path / "kryten.json"
    config.write_text(
        json.dumps(
            {
                "nats": {"servers": ["${TEST_NATS_URL}"]},
                "channels": [{"domain": "cytu.be", "channel": "lounge"}],
            }
        )
    )
    env = cli_env(KRYTEN_CONFIG=str(config), TEST_NATS_URL=shared_server.url)
    send, ping = run_all(["send", "lounge", "configured"], ["ping"], env=env)
    assert send.returncode == 0, send.stderr
    assert bridge.wait_for_command("chat").data == {"message": "configured"}
    assert ping.returncode == 0, ping.stderr


# --------------------------------------------------------------------------- config check


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "nats:\n  servers: [nats://127.0.0.1:4222]\n"
        "channels:\n  - {domain: cytu.be, channel: lounge}\n"
    )
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "nats": {"servers": ["http://example.com"], "sever": 1},
                "channels": [{"domain": "cytu.be", "channel": "  "}],
                "log_level": "LOUD",
            }
        )
    )
    ok, problems, missing = run_all(
        ["config", "check", str(good)],
        ["config", "check", str(bad)],
        ["config", "check", str(tmp_path / "none.json")],
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "ok\n", "")
    assert problems.returncode == 1
    listed = problems.stdout.splitlines()
    paths = [line.removeprefix(f"{bad}: ").split(":")[0] for line in listed]
    assert sorted(paths) == ["channels[0].channel", "log_level", "nats.servers[0]", "nats.sever"]
    assert one_error_line(problems) == "kryten-sync: error: 4 problems"  # file named once
    assert missing.returncode == 1
    assert "not found" in one_error_line(missing)


# --------------------------------------------------------------------------- help


def test_help_of_every_command() -> None:
    commands = [
        [],
        ["demo"],
        ["tail"],
        ["send"],
        ["cmd"],
        ["cmd", "set_temp"],
        ["ping"],
        ["services"],
        ["kv"],
        ["kv", "watch"],
        ["kv", "del"],
        ["config"],
        ["say"],
        ["users"],
        ["playlist"],
        ["now"],
    ]
    # A few at a time: each is an interpreter start-up, and the machine has 2 cores.
    results = [
        result
        for start in range(0, len(commands), 6)
        for result in run_all(*([*c, "--help"] for c in commands[start : start + 6]))
    ]
    for command, result in zip(commands, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith("usage: kryten-sync"), command
        assert result.stderr == ""
    listing = results[commands.index(["cmd"])].stdout
    for method in COMMANDS:
        assert f"\n  {method} CHANNEL" in listing, method
    assert "queue_media CHANNEL MEDIA_TYPE MEDIA_ID [--position {end,next}]" in listing
    set_temp = results[commands.index(["cmd", "set_temp"])].stdout
    assert "Mark playlist item uid temporary" in set_temp
    assert "--is-temp {true,false}" in set_temp
    assert "'setTemp'" in set_temp
    # Examples read as one types them here: JSON and options, not Python.
    assert "(or permanent with --is-temp false)" in set_temp
    assert '(e.g. {"allow_voteskip": false})' in listing
    assert "False" not in listing and "True" not in listing


def test_ctrl_c_while_waiting_is_one_line_and_status_130() -> None:
    """A command stuck in connect (the "server" accepts but never speaks) ends on Ctrl-C
    with one line and status 130, no traceback."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(30)
        proc = start("ping", "lounge", "--nats", f"nats://127.0.0.1:{listener.getsockname()[1]}")
        try:
            connection, _ = listener.accept()  # imports done, now waiting in connect
            with connection:
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    # Only the first line is ours. Under CPU contention the library's loop thread may
    # still print asyncio's "Task was destroyed but it is pending!" for nats-py's
    # connect after an interrupted connect() (reported; LoopThread._finish cancels
    # the tasks it sees once, and nats-py starts another while being cancelled).
    assert err.splitlines()[0] == "kryten-sync: interrupted", err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- mistakes


def test_mistakes_are_refused_with_what_to_use_instead(tmp_path: Path) -> None:
    nowhere = ["--nats", "nats://127.0.0.1:1"]  # refused before connecting
    typo, url, domain_url = run_all(
        ["tail", "lounge", "--event", "chatmsgg", *nowhere],
        ["tail", "https://cytu.be/r/lounge", *nowhere],
        ["send", "lounge", "hi", "--channel", "https://cytu.be/r/lounge", *nowhere],
    )
    assert typo.returncode == 2
    assert (
        "'chatmsgg' is not an event CyTube sends through the bridge; did you mean 'chatMsg'? "
        "(--any-event takes it as it is, for an event of your own)" in one_error_line(typo)
    )
    assert "--any-event" in typo.stderr
    assert url.returncode == 2
    assert (
        "channel 'https://cytu.be/r/lounge' is a web address: use the channel name 'lounge' "
        "(and the domain 'cytu.be')" in one_error_line(url)
    )
    assert domain_url.returncode == 2
    assert "use the channel name 'lounge'" in one_error_line(domain_url)


def test_any_event_tails_a_custom_event(shared_server: NatsServer, bridge: FakeBridge) -> None:
    proc = start(
        "tail", "lounge", "--event", "myBotEvent", "--any-event", "--nats", shared_server.url
    )
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        assert "tailing" in err.next(30)
        bridge.emit("myBotEvent", {"n": 1})
        assert out.next().endswith('  myBotEvent {"n":1}')
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- channel views


@pytest.fixture
def stateful(shared_server: NatsServer) -> Iterator[FakeBridge]:
    """A bridge of channel 'viewed' that keeps the key-value state."""
    with FakeBridge(shared_server.url, channel="viewed", keep_state=True) as bridge:
        yield bridge


def test_users_playlist_and_now_show_the_bridge_state(
    shared_server: NatsServer, stateful: FakeBridge
) -> None:
    song = {"id": "dQw4w9WgXcQ", "type": "yt", "title": "Never Gonna Give You Up", "seconds": 213}
    stateful.emit("addUser", {"name": "alice", "rank": 2, "meta": {"afk": True}})
    stateful.emit("addUser", {"name": "bob", "rank": 1})
    stateful.emit("queue", {"item": {"uid": 7, "temp": True, "queueby": "bob", "media": song}})
    stateful.emit("changeMedia", {**song, "currentTime": 0, "paused": False})
    url = ["--nats", shared_server.url]
    users, playlist, now, as_json, nothing = run_all(
        ["users", "viewed", *url],
        ["playlist", "viewed", *url],
        ["now", "viewed", *url],
        ["users", "viewed", "--json", *url],
        ["users", "nobody-here", *url],
    )
    assert (users.returncode, users.stderr) == (0, "")
    assert users.stdout == "2 users in viewed\n  alice  rank 2  (afk)\n  bob    rank 1\n"
    assert (playlist.returncode, playlist.stderr) == (0, "")
    assert playlist.stdout == (
        "1 item in viewed's playlist\n"
        ">   1. Never Gonna Give You Up (yt:dQw4w9WgXcQ, 3:33) by bob (temporary)\n"
    )
    assert now.stdout == "now playing: Never Gonna Give You Up (yt:dQw4w9WgXcQ, 3:33)\n"
    assert [u["name"] for u in json.loads(as_json.stdout)] == ["alice", "bob"]
    assert nothing.returncode == 1
    assert (
        "no state for channel 'nobody-here': the bucket 'kryten_nobody-here_userlist' does "
        "not exist" in one_error_line(nothing)
    )


def test_colour_only_on_a_terminal_and_never_with_no_color(
    shared_server: NatsServer, stateful: FakeBridge
) -> None:
    import os
    import pty

    stateful.emit("addUser", {"name": "alice", "rank": 2})

    def on_a_terminal(**env: str) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [*CLI, "users", "viewed", "--nats", shared_server.url],
            stdout=follower,
            stderr=subprocess.PIPE,
            env=cli_env(TERM="xterm", **env),
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.wait(30) == 0
        return b"".join(chunks).decode()

    assert "\x1b[1;" in on_a_terminal()  # the name, bold and coloured
    assert "\x1b[" not in on_a_terminal(NO_COLOR="1")
    piped = run("users", "viewed", "--nats", shared_server.url)
    assert "\x1b[" not in piped.stdout and "alice" in piped.stdout


# --------------------------------------------------------------------------- kv


def test_kv_watch_and_del(shared_server: NatsServer) -> None:
    url = ["--nats", shared_server.url]
    assert run("kv", "put", "watched", "a", "1", "--create", *url).returncode == 0
    proc = start("kv", "watch", "watched", "--current", *url)
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        assert "watching watched" in err.next(30)
        assert out.next() == "PUT a = 1"
        put = run("kv", "put", "watched", "b", "two", *url)
        assert put.returncode == 0, put.stderr
        assert out.next() == "PUT b = two"
        delete = run("kv", "del", "watched", "a", *url)
        assert (delete.returncode, delete.stdout, delete.stderr) == (0, "", "")
        assert out.next() == "DEL a"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    missing = run("kv", "get", "watched", "a", *url)
    assert "no key 'a' in bucket 'watched'" in one_error_line(missing)


def test_a_missing_bucket_is_not_a_missing_key(shared_server: NatsServer) -> None:
    url = ["--nats", shared_server.url]
    get, ls, watch, delete = run_all(
        ["kv", "get", "no_such_bucket", "key", *url],
        ["kv", "ls", "no_such_bucket", *url],
        ["kv", "watch", "no_such_bucket", *url],
        ["kv", "del", "no_such_bucket", "key", *url],
    )
    for result in (get, ls, watch, delete):
        assert result.returncode == 1
        line = one_error_line(result)
        assert "bucket 'no_such_bucket' does not exist" in line, line
        assert "no key" not in line
