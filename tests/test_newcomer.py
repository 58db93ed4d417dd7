"""The README's path, walked as a new user walks it: a fresh virtual environment and the
README's install command, the demo on a fixed port, the README's Quickstart file run
unchanged against it, a message said in the channel as someone, the bot's answer, and
the channel's state read from the demo's bridge.

Everything runs from a copy of the repository's tracked files with the new environment's
own interpreter and scripts, so nothing of the test's environment (PYTHONPATH, the
developer's venv) helps. pip uses its cache as a user's would; the install's time is
printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._nats import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_block(marker: str, language: str) -> str:
    found = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)```", README, re.DOTALL)
    assert found is not None, marker
    return found.group(1)


def run(home: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, check=False, cwd=home, env=env, capture_output=True, text=True, timeout=60
    )


class Process:
    """A process whose stdout and stderr lines are collected as they come."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self.out.extend, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self.err.extend, args=(self.proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in [*self.out, *self.err]):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                time.sleep(0.2)  # the readers catch up with what was printed last
                if any(text in line for line in [*self.out, *self.err]):
                    return
                raise AssertionError(f"no {text!r} in:\n{''.join(self.out + self.err)}")
            time.sleep(0.05)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(15)
        finally:
            self.kill()
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the repository with the README's install command run in it: the copy's
    folder and the environment of a shell where that command ran."""
    home = tmp_path_factory.mktemp("newcomer")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (home / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, home / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # python3 is this test's own interpreter version (CI runs the suite per Python).
    bin_dir = home / "bin-of-this-python"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys._base_executable))
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    install = readme_block("demo-command", "sh").strip().removesuffix("&& kryten-sync demo")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", install],
        check=False,
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"\n[newcomer] the README's install command took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    venv_bin = home / ".venv" / "bin"
    env["PATH"] = os.pathsep.join([str(venv_bin), env["PATH"]])
    env["VIRTUAL_ENV"] = str(home / ".venv")
    env["PYTHONUNBUFFERED"] = "1"
    yield home, env


def test_from_the_demo_to_a_first_bot(installed: tuple[Path, dict[str, str]]) -> None:
    home, env = installed
    python = str(home / ".venv" / "bin" / "python")
    where = run(home, env, python, "-c", "import kryten_sync; print(kryten_sync.__file__)")
    assert where.stdout.startswith(str(home)), "the new environment uses another kryten_sync"
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    (home / "quickstart.py").write_text(readme_block("quickstart", "python"))
    demo = Process(["kryten-sync", "demo", "--port", str(port)], home, env)
    bot: Process | None = None
    try:
        demo.wait_for(f"connect your own bot: servers ['{url}'], channel 'lounge'")
        bot = Process([python, "quickstart.py"], home, {**env, "KRYTEN_NATS_URL": url})
        bot.wait_for("listening on cytu.be/lounge with 1 handler (greet)")

        said = run(
            home, env, "kryten-sync", "--nats", url, "say", "lounge", "!hello", "--as", "newcomer"
        )
        assert said.returncode == 0, said.stderr
        assert "  <newcomer> !hello\n" in said.stdout, said.stdout
        assert "  <kryten-bot> hello, newcomer\n" in said.stdout, said.stdout
        bot.wait_for("INFO <newcomer> !hello")
        demo.wait_for("  <kryten-bot> hello, newcomer")

        # The state helpers answer from the demo's bridge, as from a real one.
        demo.wait_for("now playing: Never Gonna Give You Up")
        state = run(home, env, python, "-c", STATE_SCRIPT, url)
        assert state.returncode == 0, state.stderr
        seen = json.loads(state.stdout)
        assert {"kryten-bot", "newcomer"} <= set(seen["state_users"]), seen
        assert set(seen["state_users"]) == set(seen["userlist"]), seen
        assert seen["motd"].startswith("Welcome to the kryten-sync demo channel!")
        assert seen["current"] == "Never Gonna Give You Up"
        assert "dQw4w9WgXcQ" in seen["playlist"]
        assert seen["current_uid"] is not None
        assert seen["kv_motd"] == seen["motd"]

        assert bot.interrupt() == 0, "".join(bot.err)
        assert "INFO disconnected: Received SIGINT" in "".join(bot.err)
        assert demo.interrupt() == 0, "".join(demo.err)
        assert demo.err == []
    finally:
        for process in (bot, demo):
            if process is not None:
                process.kill()


STATE_SCRIPT = """
import json, sys
from kryten_sync import KrytenClient

config = {"nats": {"servers": [sys.argv[1]]},
          "channels": [{"domain": "cytu.be", "channel": "lounge"}]}
with KrytenClient(config) as client:
    current = client.get_state_current_media("lounge")
    print(json.dumps({
        "state_users": [u.name for u in client.get_state_userlist("lounge")],
        "userlist": [u["name"] for u in client.get_userlist("lounge")],
        "motd": client.get_state_motd("lounge"),
        "current": current.title if current else None,
        "current_uid": client.get_state_current_uid("lounge"),
        "playlist": [i.media.id for i in client.get_state_playlist_items("lounge")],
        "kv_motd": client.kv_get("kryten_lounge_state", "motd").decode(),
    }))
"""
