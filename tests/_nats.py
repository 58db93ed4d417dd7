"""Real NATS for the tests: nats-server processes on free loopback ports, started and
stopped here, and a raw nats-py client on its own loop thread (independent of
kryten_sync) to play the bridge or watch the wire."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from kryten_sync.tools.embedded import find_binary

T = TypeVar("T")


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
        # A restart appends to the same log: only this run's lines say it is ready.
        offset = log.tell()
        self.proc = subprocess.Popen(
            [find_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            with self.log_path.open("rb") as current:
                current.seek(offset)
                if b"Server is ready" in current.read():
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

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, whatever the server had not written is gone."""
        if self.proc is not None and self.proc.poll() is None:
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


class AsyncNats:
    """A raw nats-py connection on its own asyncio loop thread, driven from test threads.

    ``options`` go to ``nats.connect``. Every method blocks until its work is done on the
    loop, at most ``timeout`` seconds. Subscription callbacks are plain functions, run
    on the loop thread in arrival order. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, **options: Any) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="test-async-nats", daemon=True
        )
        self.thread.start()
        try:
            self.nc: NATS = self.call(nats.connect(url, **options))
        except BaseException:
            self._end_loop()
            raise

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the connection's loop; its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(self.timeout if timeout is None else timeout)

    def publish(self, subject: str, data: bytes) -> None:
        """Publish and flush: the server has the message when this returns."""
        self.publish_many([(subject, data)])

    def publish_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Publish ``(subject, data)`` pairs in order, then flush once."""

        async def publish() -> None:
            for subject, data in items:
                await self.nc.publish(subject, data)
            await self.nc.flush(self._flush_timeout())

        self.call(publish())

    def subscribe(self, *subjects: str, cb: Callable[[Msg], object], **options: Any) -> None:
        """Call ``cb(msg)`` for each message on any of ``subjects`` (``options`` go to
        ``nc.subscribe``); flushed, so the server knows the interest on return."""

        async def on_msg(msg: Msg) -> None:
            cb(msg)

        async def subscribe() -> None:
            for subject in subjects:
                await self.nc.subscribe(subject, cb=on_msg, **options)
            await self.nc.flush(self._flush_timeout())

        self.call(subscribe())

    def flush(self) -> None:
        """Wait until the server has processed everything sent so far."""
        self.call(self.nc.flush(self._flush_timeout()))

    def close(self) -> None:
        """Close the connection and end the loop thread; a second call does nothing."""
        if self.loop.is_closed():
            return
        try:
            if not self.nc.is_closed:
                self.call(self.nc.close(), 5.0)
        finally:
            self._end_loop()

    def _flush_timeout(self) -> int:
        # nats-py types the flush timeout as int (seconds).
        return max(1, int(self.timeout))

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def __enter__(self) -> AsyncNats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
