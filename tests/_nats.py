"""Real nats-server processes for the tests: free loopback ports, started and stopped here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kryten_sync.tools.embedded import find_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """One nats-server process. ``config`` is extra server-config text (auth, TLS, ...)."""

    def __init__(
        self,
        *,
        jetstream: bool = False,
        config: str = "",
        port: int | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        name: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.jetstream = jetstream
        self.extra_config = config
        self.name = name or f"test-{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="kryten-nats-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self._dir / "server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [f'server_name: "{self.name}"', f"listen: 127.0.0.1:{self.port}"]
        if self.jetstream:
            store = self._dir / "js"
            lines.append(f'jetstream {{ store_dir: "{store}" }}')
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(
                f'cluster {{ name: "kc", listen: 127.0.0.1:{self.cluster_port}, '
                f"routes: [{routes}] }}"
            )
        lines.append(self.extra_config)
        path = self._dir / "server.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> NatsServer:
        conf = self._write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [find_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            if "Server is ready" in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def env_with_repo() -> dict[str, str]:
    """Environment for subprocess tests: the repo importable, output unbuffered."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env
