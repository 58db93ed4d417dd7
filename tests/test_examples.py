"""The examples run as real scripts against a real nats-server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nats

from tests import bridge_format
from tests._nats import NatsServer, env_with_repo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start_script(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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


def publish_until(url: str, subject: str, body: bytes, done: list[str],
                  expect: str, timeout: float = 10.0) -> None:
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
        proc = start_script(str(EXAMPLES / "print_chat.py"), server.url, "cytu.be", "lounge")
        try:
            lines = collect_lines(proc)
            body = bridge_format.envelope(
                "chatMsg", {"username": "alice", "msg": "hi there", "meta": {}}
            )
            publish_until(server.url, bridge_format.subject("lounge", "chatMsg"), body, lines,
                          "<alice> hi there")
            assert any("<alice> hi there" in line for line in lines), lines
            proc.send_signal(signal.SIGINT)
            assert proc.wait(5) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
