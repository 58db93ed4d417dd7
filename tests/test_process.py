"""Whole-process behaviour: exit, fork, signals and run(), seen from outside.

Each test writes a small script to ``tmp_path``, runs it with ``sys.executable`` against a
real nats-server and checks the outcome from this process: exit code and time, the lines
the script printed, and what a separate nats-py subscriber (its own connection, on its
own thread) received. Times are measured from a line the script prints (with its
``time.time()``) to the moment the process exited, so interpreter start-up is excluded.
Scenario numbers refer to SCENARIOS.md.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from tests._nats import AsyncNats, NatsServer, env_with_repo
from tests.bridge_format import CHAT_MSG, envelope, subject

CHAT_SUBJECT = "kryten.commands.cytube.lounge.chat"

# Imported by every child script; the config arrives as JSON in argv[1].
PRELUDE = """\
import json, os, signal, sys, threading, time
from kryten_sync.client import KrytenClient
from kryten_sync.errors import ClientClosedError, ForkedProcessError, NotConnectedError

CFG = json.loads(sys.argv[1])
# Ctrl-C raises KeyboardInterrupt as in a terminal, even when pytest itself was started
# as a background job (which inherits SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)

def say(*parts):
    # One write(2) per line: a forked child shares this pipe, lines must not interleave.
    os.write(1, (" ".join(map(str, parts)) + "\\n").encode())
"""


def config(url: str, **settings: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "nats": {"servers": [url]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        "chat_min_delay": 0,
    }
    cfg.update(settings)
    return cfg


# -- the child process ---------------------------------------------------------------


class Child:
    """A running child script: its stdout/stderr lines and the time it exited."""

    def __init__(self, tmp_path: Path, body: str, cfg: dict[str, Any]) -> None:
        script = tmp_path / "child.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_with_repo(),
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self.exit_time: float | None = None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def _wait(self) -> None:
        self.proc.wait()
        self.exit_time = time.time()

    def report(self) -> str:
        with self._changed:
            out, err = "\n".join(self.out), "\n".join(self.err)
        return f"\nexit code: {self.proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def wait_line(self, prefix: str, timeout: float = 10.0) -> str:
        """The first stdout line starting with ``prefix`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.out:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.exit_time is not None and not self._reading()):
                    break
                self._changed.wait(min(remaining, 0.05))
        pytest.fail(f"no line starting with {prefix!r} within {timeout} s" + self.report())

    def _reading(self) -> bool:
        return any(r.is_alive() for r in self._readers)

    def stamp(self, prefix: str) -> float:
        """The ``time.time()`` the child printed as the last field of its ``prefix`` line."""
        return float(self.wait_line(prefix, 0).split()[-1])

    def wait_exit(self, timeout: float = 10.0) -> float:
        """Wait for the process to end; return the wall-clock time it exited at."""
        self._waiter.join(timeout)
        if self.exit_time is None:
            self.kill()
            pytest.fail(f"child still running after {timeout} s" + self.report())
        for reader in self._readers:
            reader.join(5)
        return self.exit_time

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._waiter.join(5)
        for reader in self._readers:
            reader.join(5)

    def stderr(self) -> str:
        return "\n".join(self.err)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    children: list[Child] = []

    def start(body: str, cfg: dict[str, Any]) -> Child:
        child = Child(tmp_path, body, cfg)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        for stream in (child.proc.stdout, child.proc.stderr):
            if stream is not None:
                stream.close()


# -- an independent subscriber (plain nats-py on its own loop thread) ----------------


class Subscriber(AsyncNats):
    """Collects ``(subject, data)`` of the subjects given, in arrival order."""

    def __init__(self, url: str, *subjects: str) -> None:
        self._cond = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        super().__init__(url, connect_timeout=5, max_reconnect_attempts=0)
        self.subscribe(*subjects, cb=self._record, pending_msgs_limit=1_000_000)

    def _record(self, msg: Msg) -> None:
        with self._cond:
            self.messages.append((msg.subject, msg.data))
            self._cond.notify_all()

    def of(self, subj: str) -> list[bytes]:
        with self._cond:
            return [data for s, data in self.messages if s == subj]

    def wait_count(self, subj: str, count: int, timeout: float = 5.0) -> list[bytes]:
        """Wait until ``count`` messages arrived on ``subj`` (or the timeout), return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([1 for s, _ in self.messages if s == subj]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return self.of(subj)


@pytest.fixture
def subscribe(shared_server: NatsServer) -> Iterator[Any]:
    subs: list[Subscriber] = []

    def make(*subjects: str) -> Subscriber:
        sub = Subscriber(shared_server.url, *subjects)
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        sub.close()


def timing(what: str, seconds: float) -> None:
    """Shown with ``pytest -s``: the measured times, to see the margins."""
    print(f"[timing] {what}: {seconds * 1000:.1f} ms")


def assert_clean_stderr(child: Child) -> None:
    err = child.stderr()
    for bad in (
        "Task was destroyed but it is pending",
        "Task exception was never retrieved",
        "was never awaited",
        "Traceback",
    ):
        assert bad not in err, f"{bad!r} on stderr" + child.report()


# -- scenarios 1 and 10: exit without disconnect still delivers everything ------------

FORGETFUL_SCRIPT = """\
client = KrytenClient(CFG)
client.connect()
for i in range(1000):
    client.send_chat("lounge", f"chat {i}")
    client.publish("proc.raw", f"raw {i}")
say("END", time.time())
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_script_without_disconnect_exits_fast_and_delivers_all(
    shared_server: NatsServer, subscribe: Any, spawn: Any, host: str
) -> None:
    sub = subscribe(CHAT_SUBJECT, "proc.raw")
    child = spawn(FORGETFUL_SCRIPT, config(f"nats://{host}:{shared_server.port}"))
    exited = child.wait_exit(10)
    end = child.stamp("END")
    assert child.proc.returncode == 0, child.report()
    timing(f"scenario 1 ({host}) END -> exit", exited - end)
    assert exited - end < 2.0, (
        f"exit took {exited - end:.2f} s after the last line" + child.report()
    )

    chats = sub.wait_count(CHAT_SUBJECT, 1000)
    raws = sub.wait_count("proc.raw", 1000)
    assert [json.loads(c)["data"]["message"] for c in chats] == [
        f"chat {i}" for i in range(1000)
    ], f"{len(chats)}/1000 chat commands" + child.report()
    assert [r.decode() for r in raws] == [f"raw {i}" for i in range(1000)], (
        f"{len(raws)}/1000 raw publishes" + child.report()
    )
    assert json.loads(chats[0])["action"] == "chat"
    assert_clean_stderr(child)


# -- scenario 2: a handler stuck in sleep(60) does not hold exit -----------------------

STUCK_HANDLER_SCRIPT = """\
from tests.bridge_format import CHAT_MSG, envelope, subject

client = KrytenClient(CFG)
started = threading.Event()

@client.on("chatMsg")
def stuck(event):
    started.set()
    time.sleep(60)

client.connect()
client.publish(subject("lounge", "chatMsg"), envelope("chatMsg", CHAT_MSG))
if not started.wait(5):
    say("HANDLER NEVER STARTED")
    sys.exit(3)
for i in range(100):
    client.publish("proc.stuck", f"{i}")
say("END", time.time())
"""


def test_stuck_handler_does_not_hold_exit(
    shared_server: NatsServer, subscribe: Any, spawn: Any
) -> None:
    sub = subscribe("proc.stuck")
    child = spawn(STUCK_HANDLER_SCRIPT, config(shared_server.url, exit_timeout=1.0))
    exited = child.wait_exit(10)
    end = child.stamp("END")
    assert child.proc.returncode == 0, child.report()
    timing("scenario 2 END -> exit", exited - end)
    assert exited - end < 1.0 + 1.0, f"exit took {exited - end:.2f} s" + child.report()
    got = sub.wait_count("proc.stuck", 100)
    assert [g.decode() for g in got] == [str(i) for i in range(100)], child.report()


# -- scenario 8: fork after connect ------------------------------------------------------

FORK_SCRIPT = """\
client = KrytenClient(CFG)
client.connect()
client.subscribe("proc.echo", lambda msg: msg.respond(msg.data))
client.flush()
assert client.request("proc.echo", {"n": 0}, timeout=5) == {"n": 0}

pid = os.fork()
if pid == 0:
    calls = [
        ("publish", lambda: client.publish("proc.fork.old", b"must not arrive")),
        ("request", lambda: client.request("proc.echo", {"n": 1}, timeout=5)),
        ("send_chat", lambda: client.send_chat("lounge", "must not arrive")),
    ]
    for name, call in calls:
        t0 = time.perf_counter()
        try:
            call()
            outcome = "no-error"
        except BaseException as exc:
            outcome = type(exc).__name__
        say("CHILD-CALL", name, outcome, f"{(time.perf_counter() - t0) * 1000:.2f}")
    fresh = KrytenClient(CFG)
    fresh.connect()
    say("CHILD-NEW-REQUEST", json.dumps(fresh.request("proc.echo", {"n": 2}, timeout=5)))
    fresh.publish("proc.fork.child", b"from child")
    fresh.flush()
    fresh.disconnect()
    say("CHILD-END", time.time())
    sys.exit(0)

say("PARENT-REQUEST", json.dumps(client.request("proc.echo", {"n": 3}, timeout=5)))
deadline = time.monotonic() + 8
status = None
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    say("CHILD-HUNG")
say("CHILD-EXIT", os.waitstatus_to_exitcode(status) if status is not None else "?", time.time())
say("PARENT-REQUEST-AFTER", json.dumps(client.request("proc.echo", {"n": 4}, timeout=5)))
client.publish("proc.fork.parent", b"from parent")
client.flush()
client.disconnect()
say("END", time.time())
"""


def test_fork_child_gets_error_parent_keeps_working(
    shared_server: NatsServer, subscribe: Any, spawn: Any
) -> None:
    sub = subscribe("proc.fork.>")
    child = spawn(FORK_SCRIPT, config(shared_server.url))
    child.wait_exit(15)
    report = child.report()
    assert child.proc.returncode == 0, report
    for name in ("publish", "request", "send_chat"):
        _, _, outcome, ms = child.wait_line(f"CHILD-CALL {name} ", 0).split()
        timing(f"scenario 8 {name} in the forked child", float(ms) / 1000)
        assert outcome == "ForkedProcessError", f"{name} in the forked child" + report
        assert float(ms) < 50, f"{name} took {ms} ms in the forked child" + report
    assert child.wait_line("CHILD-NEW-REQUEST", 0) == 'CHILD-NEW-REQUEST {"n": 2}', report
    assert child.wait_line("PARENT-REQUEST ", 0) == 'PARENT-REQUEST {"n": 3}', report
    assert child.wait_line("PARENT-REQUEST-AFTER", 0) == 'PARENT-REQUEST-AFTER {"n": 4}', report
    assert "CHILD-HUNG" not in child.out, report
    exit_line = child.wait_line("CHILD-EXIT", 0).split()
    assert exit_line[1] == "0", report
    # The forked child ended (normally, exit hooks included) promptly after its last line.
    timing("scenario 8 forked child END -> exit", float(exit_line[2]) - child.stamp("CHILD-END"))
    assert float(exit_line[2]) - child.stamp("CHILD-END") < 2.0, report

    sub.wait_count("proc.fork.parent", 1)
    sub.wait_count("proc.fork.child", 1)
    time.sleep(0.1)  # anything stray from the forked child's old client would be here now
    assert sorted(sub.messages) == [
        ("proc.fork.child", b"from child"),
        ("proc.fork.parent", b"from parent"),
    ], report
    assert_clean_stderr(child)


# -- scenario 9: exit while a user thread is blocked in request(timeout=30) ------------

BLOCKED_THREAD_SCRIPT = """\
client = KrytenClient(CFG)
client.connect()
arrived = threading.Event()
client.subscribe("proc.silent", lambda msg: arrived.set())  # never answers
client.flush()

def blocked():
    t0 = time.monotonic()
    try:
        client.request("proc.silent", {"q": 1}, timeout=30)
        outcome = "returned"
    except BaseException as exc:
        outcome = type(exc).__name__
    say("THREAD", outcome, f"{time.monotonic() - t0:.3f}", time.time())

threading.Thread(target=blocked, name="user-thread").start()  # not a daemon
if not arrived.wait(5):
    say("REQUEST NEVER ARRIVED")
    sys.exit(3)
time.sleep(0.05)  # the request is now in flight in the thread
say("END", time.time())
"""


def test_exit_wakes_thread_blocked_in_request(shared_server: NatsServer, spawn: Any) -> None:
    child = spawn(BLOCKED_THREAD_SCRIPT, config(shared_server.url))
    exited = child.wait_exit(10)
    end = child.stamp("END")
    report = child.report()
    timing("scenario 9 END -> exit", exited - end)
    assert exited - end < 3.0, f"exit took {exited - end:.2f} s" + report
    assert child.proc.returncode == 0, report
    _, outcome, waited, woke = child.wait_line("THREAD", 0).split()
    assert outcome == "ClientClosedError", report
    assert float(woke) >= end, "the request ended before the script did" + report
    assert float(waited) < 5, report


# -- scenario 16: Ctrl-C while blocked in request(timeout=30) --------------------------

SIGINT_REQUEST_SCRIPT = """\
import asyncio

client = KrytenClient(CFG)
client.connect()
client.subscribe("proc.silent", lambda msg: say("BLOCKED"))  # never answers
client.subscribe("proc.echo", lambda msg: msg.respond(msg.data))
client.flush()
loop = client._conn.loop.loop
nc = client._conn.nc

async def _tasks():
    # The publisher's confirmation task follows the traffic and ends by itself.
    return sum(t.get_name() != "kryten-sync-confirm" for t in asyncio.all_tasks())

def tasks():
    return asyncio.run_coroutine_threadsafe(_tasks(), loop).result(5)

# A first request sets up nats-py's shared reply subscription (one more task for good).
assert client.request("proc.echo", {"n": 0}, timeout=5) == {"n": 0}
baseline = tasks()
try:
    client.request("proc.silent", {"q": 1}, timeout=30)
    say("RESULT returned")
except KeyboardInterrupt:
    say("KI", time.time())
except BaseException as exc:
    say("RESULT", type(exc).__name__)

# The in-flight request must be cancelled: its task gone, nats-py's reply future dropped.
# (Quick when idle; the generous bound is for loaded CI machines. Not cancelled, both
# would stay for the request's 30 s.)
t_ki = time.monotonic()
deadline = t_ki + 3
while time.monotonic() < deadline and (tasks() != baseline or nc._resp_map):
    time.sleep(0.01)
say("CANCELLED-AFTER", time.monotonic() - t_ki)
say("TASKS", baseline, tasks())
say("INFLIGHT", len(nc._resp_map))
say("NEXT", json.dumps(client.request("proc.echo", {"n": 1}, timeout=5)))
client.disconnect()
say("END", time.time())
"""


def test_sigint_interrupts_request_and_cancels_it(shared_server: NatsServer, spawn: Any) -> None:
    child = spawn(SIGINT_REQUEST_SCRIPT, config(shared_server.url))
    child.wait_line("BLOCKED")
    sent = time.time()
    child.proc.send_signal(signal.SIGINT)
    child.wait_exit(10)
    report = child.report()
    assert child.proc.returncode == 0, report
    delay = child.stamp("KI") - sent
    timing("scenario 16 SIGINT -> KeyboardInterrupt", delay)
    assert 0 <= delay < 0.5, f"KeyboardInterrupt after {delay:.3f} s" + report
    timing("scenario 16 KeyboardInterrupt -> request cancelled", child.stamp("CANCELLED-AFTER"))
    _, before, after = child.wait_line("TASKS", 0).split()
    assert before == after, "the request's task is still on the loop" + report
    assert child.wait_line("INFLIGHT", 0) == "INFLIGHT 0", report
    assert child.wait_line("NEXT", 0) == 'NEXT {"n": 1}', report
    assert_clean_stderr(child)


# -- run(): ended by signals, stop() from another thread, stop() from a handler --------

RUN_SIGNAL_SCRIPT = """\
client = KrytenClient(CFG)
client.connect()
for i in range(200):
    client.publish("proc.run", f"{i}")

def announce():
    # READY once run() has put its own handlers in place of the defaults.
    while (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
           or signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        time.sleep(0.005)
    say("READY")

threading.Thread(target=announce, daemon=True).start()
client.run()
say("RETURNED", time.time())
try:
    client.publish("proc.run", b"after run")
    say("AFTER no-error")
except Exception as exc:
    say("AFTER", type(exc).__name__)
say("CONNECTED", client.is_connected)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_returns_on_signal_and_disconnects(
    shared_server: NatsServer, subscribe: Any, spawn: Any, signum: signal.Signals
) -> None:
    sub = subscribe("proc.run")
    child = spawn(RUN_SIGNAL_SCRIPT, config(shared_server.url))
    child.wait_line("READY")
    sent = time.time()
    child.proc.send_signal(signum)
    exited = child.wait_exit(10)
    report = child.report()
    assert child.proc.returncode == 0, report
    returned = child.stamp("RETURNED")
    timing(f"run() {signum.name} -> returned", returned - sent)
    assert returned - sent < 1.0, f"run() returned {returned - sent:.2f} s after" + report
    assert exited - returned < 1.0, report
    assert child.wait_line("AFTER", 0) == "AFTER NotConnectedError", report
    assert child.wait_line("CONNECTED", 0) == "CONNECTED False", report
    sub.wait_count("proc.run", 200)
    time.sleep(0.05)  # nothing more may follow ("after run" must not have been sent)
    assert [g.decode() for g in sub.of("proc.run")] == [str(i) for i in range(200)], report
    assert_clean_stderr(child)


RUN_STOP_THREAD_SCRIPT = """\
client = KrytenClient(CFG)
client.connect()

def stopper():
    time.sleep(0.3)
    say("STOP", time.time())
    client.stop()

threading.Thread(target=stopper).start()
client.run()
say("RETURNED", time.time())
client.publish("proc.stop", b"still usable")
client.disconnect()
say("END", time.time())
"""


def test_run_returns_when_another_thread_stops_it(
    shared_server: NatsServer, subscribe: Any, spawn: Any
) -> None:
    sub = subscribe("proc.stop")
    child = spawn(RUN_STOP_THREAD_SCRIPT, config(shared_server.url))
    exited = child.wait_exit(10)
    report = child.report()
    assert child.proc.returncode == 0, report
    delay = child.stamp("RETURNED") - child.stamp("STOP")
    timing("run() stop() from a thread -> returned", delay)
    assert 0 <= delay < 0.5, f"run() returned {delay:.3f} s after stop()" + report
    assert exited - child.stamp("END") < 1.0, report
    assert sub.wait_count("proc.stop", 1) == [b"still usable"], report
    assert_clean_stderr(child)


RUN_STOP_HANDLER_SCRIPT = """\
client = KrytenClient(CFG)

@client.on("chatMsg")
def on_chat(event):
    say("HANDLER", event.username, time.time())
    client.stop()

client.connect()
say("READY")
client.run()
say("RETURNED", time.time())
client.disconnect()
say("END", time.time())
"""


def test_run_returns_when_a_handler_stops_it(
    shared_server: NatsServer, subscribe: Any, spawn: Any
) -> None:
    bridge = subscribe()  # a plain connection playing the bridge
    child = spawn(RUN_STOP_HANDLER_SCRIPT, config(shared_server.url))
    child.wait_line("READY")
    bridge.publish(subject("lounge", "chatMsg"), envelope("chatMsg", CHAT_MSG))
    exited = child.wait_exit(10)
    report = child.report()
    assert child.proc.returncode == 0, report
    assert child.wait_line("HANDLER", 0).split()[1] == "alice", report
    delay = child.stamp("RETURNED") - child.stamp("HANDLER")
    timing("run() stop() from a handler -> returned", delay)
    assert 0 <= delay < 0.5, f"run() returned {delay:.3f} s after the handler's stop()" + report
    assert exited - child.stamp("END") < 1.0, report
    assert_clean_stderr(child)
