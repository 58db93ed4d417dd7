"""A bounded soak: N minutes of mixed traffic through one bot, with two server restarts.

Starts its own nats-server (JetStream on, a free loopback port kept across restarts).
A *source* client publishes bridge-format events on the bot's channel (chatMsg,
addUser, usercount, one malformed message in 500) at a steady rate; the *bot* handles
them (every 50th chatMsg handler raises, and a concurrent ``*`` handler runs too) while
two threads send commands. A JetStream stream on the command subjects records what
reached the server, independently of either client. The server is restarted twice (at
one third and two thirds of the run, down for about a second each time).

The report compares events published vs handled (events published while the bot was
disconnected are missed: core NATS keeps nothing), commands issued vs arrived vs
reported (disconnect()'s result and the on_lost hook), and RSS and thread count at the
start, middle and end::

    python bench/soak.py --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StorageType, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kryten_sync import KrytenClient, KrytenError, LostMessage, PublishError  # noqa: E402
from kryten_sync.tools.embedded import find_binary  # noqa: E402

CHANNEL = "lounge"
EVENT_SUBJECT = f"kryten.events.cytube.{CHANNEL}"
COMMANDS = f"kryten.commands.cytube.{CHANNEL}.>"
EVENTS_PER_SECOND = 300
COMMANDS_PER_SECOND = 50  # per sending thread
SENDERS = 2
OUTAGE = 1.0  # seconds down per restart


class Server:
    """One nats-server process on a fixed port, restartable."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="kryten-soak-"))
        self.conf = self.dir / "server.conf"
        self.conf.write_text(
            f"listen: 127.0.0.1:{self.port}\njetstream {{ store_dir: {str(self.dir / 'js')!r} }}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.dir / "server.log"
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [find_binary(), "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while b"Server is ready" not in log.read_bytes()[offset:]:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"nats-server did not start: {log.read_text()[-1000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1e6


def snapshot(label: str, bot: KrytenClient) -> dict[str, Any]:
    health = bot.health()
    return {
        "at": label,
        "rss_mb": round(rss_mb(), 1),
        "threads": threading.active_count(),
        "handler_calls": health.handler_calls,
        "reconnects": health.reconnects,
    }


def envelope(event: str, payload: Any) -> bytes:
    return json.dumps(
        {
            "event_name": event,
            "payload": payload,
            "channel": CHANNEL,
            "domain": "cytu.be",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "correlation_id": "",
        }
    ).encode()


def run(minutes: float) -> dict[str, Any]:
    server = Server()
    server.start()
    try:
        return _soak(server, minutes)
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def _soak(server: Server, minutes: float) -> dict[str, Any]:

    async def make_stream() -> None:
        nc = await nats.connect(server.url)
        config = StreamConfig(name="SOAK", subjects=[COMMANDS], storage=StorageType.FILE)
        await nc.jetstream().add_stream(config)
        await nc.close()

    asyncio.run(make_stream())
    config: dict[str, Any] = {
        "nats": {"servers": [server.url]},
        "channels": [{"domain": "cytu.be", "channel": CHANNEL}],
        "chat_min_delay": 0,
        "retry_attempts": 0,
    }
    bot = KrytenClient(config)
    source = KrytenClient({**config, "channels": [{"domain": "cytu.be", "channel": "source"}]})
    handled = {"chatMsg": 0, "addUser": 0, "usercount": 0, "star": 0}
    lost: list[LostMessage] = []
    lock = threading.Lock()

    @bot.on("chatMsg")
    def on_chat(ev: Any) -> None:
        handled["chatMsg"] += 1
        if handled["chatMsg"] % 50 == 0:
            raise RuntimeError("a handler that fails now and then")

    @bot.on("addUser")
    def on_join(ev: Any) -> None:
        handled["addUser"] += 1

    @bot.on("usercount")
    def on_count(ev: Any) -> None:
        handled["usercount"] += 1

    @bot.on("*", concurrent=True)
    def on_any(ev: Any) -> None:
        with lock:
            handled["star"] += 1

    bot.on_error(lambda exc, ev: None)
    bot.on_lost(lost.extend)
    bot.connect()
    source.connect()
    stop = threading.Event()
    published = {"events": 0, "malformed": 0, "refused": 0}
    issued: list[str] = []
    command_errors: list[str] = []

    def publish_events() -> None:
        seq = 0
        interval = 1.0 / EVENTS_PER_SECOND
        next_at = time.monotonic()
        while not stop.is_set():
            seq += 1
            if seq % 500 == 0:
                subject, body, kind = f"{EVENT_SUBJECT}.chatmsg", b"{not json", "malformed"
            elif seq % 3 == 0:
                subject, body, kind = (
                    f"{EVENT_SUBJECT}.adduser",
                    envelope("addUser", {"name": f"u{seq}", "rank": 1}),
                    "events",
                )
            elif seq % 3 == 1:
                subject, body, kind = (
                    f"{EVENT_SUBJECT}.usercount",
                    envelope("usercount", seq),
                    "events",
                )
            else:
                payload = {"username": "alice", "msg": f"m{seq}", "meta": {}, "time": 1}
                subject, body, kind = (
                    f"{EVENT_SUBJECT}.chatmsg",
                    envelope("chatMsg", payload),
                    "events",
                )
            try:
                source.publish(subject, body)
                published[kind] += 1
            except PublishError:
                published["refused"] += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def send_commands(tid: int) -> None:
        interval = 1.0 / COMMANDS_PER_SECOND
        next_at = time.monotonic()
        seq = 0
        while not stop.is_set():
            seq += 1
            try:
                if seq % 2:
                    cid = bot.send_chat(CHANNEL, f"t{tid}-{seq}")
                else:
                    cid = bot.queue_media(CHANNEL, "yt", f"id{tid}{seq}")
                with lock:
                    issued.append(cid)
            except KrytenError as exc:  # counted: a raising call is not a silent loss
                with lock:
                    command_errors.append(type(exc).__name__)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=publish_events, daemon=True)] + [
        threading.Thread(target=send_commands, args=(i,), daemon=True) for i in range(SENDERS)
    ]
    duration = minutes * 60
    started = time.monotonic()
    snapshots = [snapshot("start", bot)]
    for thread in threads:
        thread.start()
    for fraction in (1 / 3, 2 / 3):
        time.sleep(max(0.0, started + duration * fraction - time.monotonic()))
        server.stop()
        time.sleep(OUTAGE)
        server.start()
        if fraction < 0.5:
            time.sleep(max(0.0, started + duration / 2 - time.monotonic()))
            snapshots.append(snapshot("middle", bot))
    time.sleep(max(0.0, started + duration - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(10)
    source.flush(timeout=10)
    bot.flush(timeout=10)
    time.sleep(1.0)  # the last events reach the handlers
    snapshots.append(snapshot("end", bot))
    health = bot.health()
    source.disconnect()
    not_sent = bot.disconnect()

    async def read_stream() -> set[str]:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        info = await js.stream_info("SOAK")
        sub = await js.pull_subscribe(COMMANDS, stream="SOAK")
        found: set[str] = set()
        while len(found) < info.state.messages:
            for msg in await sub.fetch(1000, timeout=10):
                found.add(json.loads(msg.data)["correlation_id"])
                await msg.ack()
        await nc.close()
        return found

    arrived = asyncio.run(read_stream())
    reported = {m.correlation_id for m in lost}
    issued_set = set(issued)
    events_handled = handled["chatMsg"] + handled["addUser"] + handled["usercount"]
    return {
        "minutes": minutes,
        "events": {
            "published": published["events"],
            "handled": events_handled,
            "missed": published["events"] - events_handled,
            "handled_by_star": handled["star"],
            "malformed_published": published["malformed"],
            "malformed_counted": health.malformed_events,
            "handler_errors": health.handler_errors,
            "disconnected_seconds": round(health.disconnected_seconds, 2),
            "reconnects": health.reconnects,
        },
        "commands": {
            "issued": len(issued_set),
            "arrived": len(issued_set & arrived),
            "raised": len(command_errors),
            "reported_not_sent": not_sent,
            "reported_unconfirmed": sum(m.reason == "unconfirmed" for m in lost),
            "lost_without_a_word": len(issued_set - arrived - reported),
        },
        "snapshots": snapshots,
        "pid": os.getpid(),
    }


class _QuietHandlerErrors(logging.Filter):
    """The soak's handlers raise on purpose: count them, don't print 100 tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("handler ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kryten_sync").addFilter(_QuietHandlerErrors())
    result = run(args.minutes)
    events, commands = result["events"], result["commands"]
    print(f"soak: {args.minutes:g} minutes, two server restarts ({OUTAGE:g} s down each)")
    print(
        f"events: {events['published']} published, {events['handled']} handled, "
        f"{events['missed']} missed while disconnected ({events['disconnected_seconds']} s "
        f"over {events['reconnects']} reconnects); {events['handled_by_star']} by the "
        f"concurrent '*' handler; {events['malformed_counted']}/{events['malformed_published']}"
        f" malformed counted; {events['handler_errors']} handler exceptions counted"
    )
    print(
        f"commands: {commands['issued']} issued, {commands['arrived']} arrived, "
        f"{commands['raised']} calls raised, {commands['reported_not_sent']} reported not "
        f"sent, {commands['reported_unconfirmed']} reported unconfirmed, "
        f"{commands['lost_without_a_word']} lost without a word"
    )
    print(f"{'at':<8}{'RSS MB':>8}{'threads':>9}{'handler calls':>15}{'reconnects':>12}")
    for snap in result["snapshots"]:
        print(
            f"{snap['at']:<8}{snap['rss_mb']:>8}{snap['threads']:>9}{snap['handler_calls']:>15}"
            f"{snap['reconnects']:>12}"
        )
    return 0 if commands["lost_without_a_word"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
