from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kryten_sync import KrytenClient
from tests._nats import NatsServer

#: How long processes still running at the end of the session get to exit by themselves.
LEFTOVER_GRACE = 3.0


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server (JetStream on) for one test."""
    with NatsServer(jetstream=True) as server:
        yield server


@pytest.fixture(scope="module")
def shared_server() -> Iterator[NatsServer]:
    """One nats-server for a whole module, for tests that leave no state behind."""
    with NatsServer(jetstream=True) as server:
        yield server


@pytest.fixture
def clients() -> Iterator[list[KrytenClient]]:
    """A list for the clients a test makes; each is disconnected at the end."""
    made: list[KrytenClient] = []
    yield made
    for client in made:
        client.disconnect()


# --- no process may outlive the session -------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of ``pid`` from ``/proc``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and ")", so split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def live_descendants(root: int) -> list[int]:
    """Every descendant of ``root`` that has not exited (zombies are dead, only unreaped)."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            states[int(entry.name)] = stat[0]
            children.setdefault(stat[1], []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if states[pid] != "Z":
            found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def _command_line(pid: int) -> str:
    """The command line of ``pid`` for the report, ``?`` if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        # Reap our own children so no zombie is left either; others are not ours to wait on.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@pytest.hookimpl(trylast=True)  # after _pytest.runner's hook has run the last teardowns
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if a process started during it is still alive; kill any such process.

    Fixtures are finalised by now (even after ``-x`` or Ctrl-C, when _pytest.runner's
    ``pytest_sessionfinish`` does the last teardowns), so whatever remains was leaked.
    """
    deadline = time.monotonic() + LEFTOVER_GRACE
    left = live_descendants(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = live_descendants(os.getpid())
    if not left:
        return
    lines = [f"  pid {pid}: {_command_line(pid)}" for pid in left]
    _kill(left)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = [
        f"{len(left)} process(es) started by the tests were still running at the end of the "
        f"session (killed now):",
        *lines,
    ]
    if reporter is not None:
        reporter.line("")  # the progress line is not ended yet at this point
        reporter.write_sep("=", "processes left running", red=True)
        for line in message:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(message))
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
