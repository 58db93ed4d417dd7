"""The examples run as real scripts against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats

from kryten_sync.testing import FakeBridge
from tests import bridge_format
from tests._nats import NatsServer, env_with_repo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start_script(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_with_repo(),
    )


def collect_lines(proc: subprocess.Popen[str]) -> list[str]:
    """Lines the script prints, appended by a reader thread as they come."""
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    threading.Thread(target=reader, daemon=True).start()
    return lines


def publish_until(
    url: str, subject: str, body: bytes, done: list[str], expect: str, timeout: float = 10.0
) -> None:
    """Publish ``body`` every 100 ms until a line containing ``expect`` was printed
    (the script subscribes at some point after start-up; earlier messages are lost)."""

    async def publish() -> None:
        nc = await nats.connect(url)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not any(expect in x for x in done):
                await nc.publish(subject, body)
                await nc.flush()
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    asyncio.run(publish())


def test_print_chat_prints_chat_and_stops_on_ctrl_c() -> None:
    with NatsServer() as server:
        proc = start_script(
            str(EXAMPLES / "print_chat.py"), "--nats", server.url, "--channel", "lounge"
        )
        try:
            lines = collect_lines(proc)
            body = bridge_format.envelope(
                "chatMsg", {"username": "alice", "msg": "hi &lt;there&gt;", "meta": {}}
            )
            publish_until(
                server.url,
                bridge_format.subject("lounge", "chatMsg"),
                body,
                lines,
                "<alice> hi <there>",
            )
            assert any("<alice> hi <there>" in line for line in lines), lines
            proc.send_signal(signal.SIGINT)
            assert proc.wait(5) == 0
            log = proc.stderr.read() if proc.stderr else ""
            # A sign of life by default: where it listens, and the end.
            listening = "listening on cytu.be/lounge with 1 handler (show); Ctrl-C stops"
            assert f"INFO connected to {server.url}, {listening}" in log, log
            assert "INFO disconnected: Received SIGINT" in log, log
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_examples_take_the_same_arguments() -> None:
    scripts = ["print_chat.py", "echo_bot.py", "threaded_app.py"]
    procs = [start_script(str(EXAMPLES / name), "--help") for name in scripts]
    for name, proc in zip(scripts, procs, strict=True):
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (name, err)
        for option in ("--nats URL", "--channel NAME", "--domain DOMAIN"):
            assert option in out, (name, out)


# -- helpers for the examples below ----------------------------------------------------


def chat(user: str, text: str) -> dict[str, object]:
    """A chatMsg payload as CyTube sends it."""
    return {"username": user, "msg": text, "meta": {}, "time": int(time.time() * 1000)}


@contextmanager
def emitting(
    fake: FakeBridge,
    payload: Callable[[int], object],
    interval: float = 0.1,
    event: str = "chatMsg",
) -> Iterator[None]:
    """Emit ``event`` with ``payload(n)`` every ``interval`` seconds while the block runs
    (a subscriber that starts listening at some unknown point still gets events)."""
    stop = threading.Event()

    def loop() -> None:
        n = 0
        while not stop.wait(interval):
            fake.emit(event, payload(n))
            n += 1

    thread = threading.Thread(target=loop, name="test-emitter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def example_env(server: NatsServer, **extra: str) -> dict[str, str]:
    env = env_with_repo()
    env.update(KRYTEN_NATS_URL=server.url, KRYTEN_DOMAIN="cytu.be", KRYTEN_CHANNEL="lounge")
    env.update(extra)
    return env


def wait_for_line(
    lines: list[str], text: str, proc: subprocess.Popen[str], timeout: float = 20.0
) -> None:
    """Wait until the process printed a line containing ``text`` (after it exited, only
    as long as the reader thread may need to catch up)."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if proc.poll() is not None:
            deadline = min(deadline, time.monotonic() + 2)
        if time.monotonic() > deadline:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise AssertionError(f"no line with {text!r}; got {lines}\n{err}")
        time.sleep(0.05)


# -- echo_bot.py -----------------------------------------------------------------------


def test_echo_bot_echoes_and_stops_on_ctrl_c() -> None:
    with NatsServer() as server, FakeBridge(server.url, channel="lounge") as fake:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "echo_bot.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=example_env(server),
        )
        try:
            # The bot subscribes some time after start-up: ask until it answers.
            with emitting(fake, lambda n: chat("alice", "!echo  hello there ")):
                command = fake.wait_for_command("chat", timeout=20)
            assert command.data == {"message": "hello there"}
            assert command.problems == []
            fake.emit("chatMsg", chat("alice", "no command here"))
            fake.emit("chatMsg", chat("alice", "!echo"))  # nothing to echo
            fake.emit("chatMsg", chat("bob", "!echo second"))
            deadline = time.monotonic() + 10
            while not any(c.data == {"message": "second"} for c in fake.commands):
                assert time.monotonic() < deadline, fake.commands
                time.sleep(0.05)
            echoed = {c.data["message"] for c in fake.commands}
            assert echoed == {"hello there", "second"}, echoed
            proc.send_signal(signal.SIGINT)
            assert proc.wait(5) == 0
            log = proc.stderr.read() if proc.stderr else ""
            assert "INFO echoed 'second' for bob" in log, log
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- threaded_app.py -------------------------------------------------------------------


def test_threaded_app_shares_one_client_between_request_threads() -> None:
    with NatsServer() as server, FakeBridge(server.url, channel="lounge") as fake:
        fake.userlist = [{"name": "alice", "rank": 1}, {"name": "bob", "rank": 0}]
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "threaded_app.py"),
                "--nats",
                server.url,
                "--channel",
                "lounge",
                "--requests",
                "6",
            ],
            check=False,
            capture_output=True,
            text=True,
            env=env_with_repo(),
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "6/6 requests served by " in result.stdout, result.stdout
        assert "(6 commands sent)" in result.stdout, result.stdout
        messages = sorted(c.data["message"] for c in fake.commands if c.action == "chat")
        assert messages == sorted(
            f"request {n}: " + ("2 users online" if n % 2 else "bridge 1.12.6 is up")
            for n in range(6)
        )
        assert all(not c.problems for c in fake.commands)
        queries = sorted(r["command"] for r in fake.requests)
        assert queries == ["state.userlist"] * 3 + ["system.ping"] * 3


# -- django_bot/ -----------------------------------------------------------------------

DJANGO_PROJECT = EXAMPLES / "django_bot"


def test_django_bot_stores_chat_through_the_orm_and_answers_count(tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite3"
    with NatsServer() as server, FakeBridge(server.url, channel="lounge") as fake:
        env = example_env(server, KRYTEN_SQLITE_PATH=str(db), KRYTEN_RUN_SECONDS="6")
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=DJANGO_PROJECT,
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "kryten_bot"],
            cwd=DJANGO_PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            lines = collect_lines(proc)
            # printed after connect() and a flush: the server knows the subscription
            wait_for_line(lines, "logging chat of cytu.be/lounge", proc)
            for n in range(5):
                fake.emit("chatMsg", chat("alice" if n % 2 else "bob", f"message {n}"))
            fake.emit("chatMsg", chat("carol", "!count"))
            answer = fake.wait_for_command("chat", timeout=10)
            assert answer.data == {"message": "6 messages logged in lounge"}
            assert answer.problems == []
            fake.emit("chatMsg", chat("carol", "one more"))
            assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""  # timer
            wait_for_line(lines, "stopped; 7 messages in the database", proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT domain, channel, username, message FROM chatlog_chatmessage ORDER BY id"
        ).fetchall()
    assert rows == [
        ("cytu.be", "lounge", "bob", "message 0"),
        ("cytu.be", "lounge", "alice", "message 1"),
        ("cytu.be", "lounge", "bob", "message 2"),
        ("cytu.be", "lounge", "alice", "message 3"),
        ("cytu.be", "lounge", "bob", "message 4"),
        ("cytu.be", "lounge", "carol", "!count"),
        ("cytu.be", "lounge", "carol", "one more"),
    ]


# -- notebook.ipynb in a real Jupyter kernel -------------------------------------------

NOTEBOOK = EXAMPLES / "notebook.ipynb"
KERNEL_NAME = "kryten-sync-test"


def run_notebook(nb: Any, workdir: Path, env: dict[str, str], timeout: float = 60) -> Any:
    """Execute ``nb`` top to bottom in a fresh ipykernel running *this* interpreter.

    The kernel spec is written to ``workdir``, so nothing depends on (or changes) the
    user's Jupyter setup: ``pip install -e '.[dev]'`` is enough.
    """
    from jupyter_client.kernelspec import KernelSpecManager  # all in the dev extras
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    spec_dir = workdir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "kryten-sync tests",
                "language": "python",
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(workdir / "kernels")])
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    env = {**env, "IPYTHONDIR": str(workdir / "ipython"), "JUPYTER_PLATFORM_DIRS": "1"}
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        allow_errors=True,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=env)
    finally:
        # nbclient only shuts down a kernel whose manager it created itself; given ours,
        # it leaves the kernel running until pytest exits.
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def output_text(output: Any) -> str:
    if output.output_type == "stream":
        return str(output.text)
    if output.output_type == "error":
        return "\n".join([output.ename, output.evalue, *output.traceback])
    return str(output.get("data", {}).get("text/plain", ""))


def notebook_problems(nb: Any) -> tuple[list[str], str]:
    """The errors of the executed notebook and the text of all its outputs."""
    errors = [
        f"cell {index}: {output.ename}: {output.evalue}"
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    text = "\n".join(
        output_text(output)
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    return errors, text


def test_notebook_runs_top_to_bottom_in_a_real_kernel(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        "save the example notebook without outputs"
    )
    # Run the connect cell twice, as someone re-running it would (scenario 19): the
    # last cell then proves that the first client was closed too.
    connect = next(i for i, cell in enumerate(nb.cells) if "client.connect()" in cell.source)
    nb.cells.insert(connect + 1, nbformat.v4.new_code_cell(nb.cells[connect].source))
    with NatsServer() as server, FakeBridge(server.url, channel="lounge") as fake:
        fake.userlist = [{"name": "alice", "rank": 1}, {"name": "bob", "rank": 0}]
        fake.motd = "<b>welcome</b>"
        with emitting(fake, lambda n: chat("alice", f"message {n}")):
            run_notebook(nb, tmp_path, example_env(server))
        sent = fake.wait_for_command("chat", timeout=5)
    errors, text = notebook_problems(nb)
    assert errors == [], text
    assert "event loop is already running" not in text
    assert sent.data == {"message": "hello from Jupyter"}
    assert "bridge version: 1.12.6" in text
    assert "2 users: alice, bob" in text
    assert "MOTD: <b>welcome</b>" in text
    assert "<alice> message" in text
    last = "".join(output_text(output) for output in nb.cells[-1].outputs)
    assert last.strip() == "kryten-sync threads left: []", text


RERUN_SETUP = """\
import gc, os, threading, time
from kryten_sync import KrytenClient

config = {"nats": {"servers": [os.environ["KRYTEN_NATS_URL"]]},
          "channels": [{"domain": "cytu.be", "channel": "lounge"}]}

def kryten_threads():
    gc.collect()
    time.sleep(0.3)
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("kryten-sync"))
"""
RERUN_CONNECT = "client = KrytenClient(config)\nclient.connect()"
RERUN_COUNT = "print('threads:', len(kryten_threads()))"


def test_rerunning_a_plain_connect_cell_keeps_threads_bounded(tmp_path: Path) -> None:
    """Scenario 19 with the obvious cell (no clean-up of its own) re-run five times: the
    earlier client must be closed (or named in a warning) and the threads stay bounded."""
    import nbformat

    new_cell = nbformat.v4.new_code_cell
    cells = [new_cell(RERUN_SETUP)]
    for _ in range(5):
        cells += [new_cell(RERUN_CONNECT), new_cell(RERUN_COUNT)]
    cells.append(new_cell("client.disconnect()\nprint('left:', kryten_threads())"))
    nb = nbformat.v4.new_notebook(cells=cells)
    with NatsServer() as server:
        run_notebook(nb, tmp_path, example_env(server))
    errors, text = notebook_problems(nb)
    assert errors == [], text
    assert "event loop is already running" not in text
    counts = [
        int(output_text(output).split()[1])
        for cell in nb.cells
        if cell.source == RERUN_COUNT
        for output in cell.outputs
    ]
    assert len(counts) == 5, text
    warned = "KrytenClient" in "".join(
        output_text(output)
        for cell in nb.cells
        if cell.source == RERUN_CONNECT
        for output in cell.outputs
    )
    assert counts[-1] <= counts[0], (
        f"kryten-sync threads after each re-run of the connect cell: {counts} "
        f"(earlier client {'named in a warning' if warned else 'neither closed nor named'})"
    )
    last = "".join(output_text(output) for output in nb.cells[-1].outputs)
    assert last.strip() == "left: []", text
