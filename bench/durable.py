"""Events per second and order across instances: core, shared and durable modes.

    python bench/durable.py [--events N] [--runs R] [--handler-ms MS]

Starts its own nats-server (JetStream on, a fresh store per run) on a free loopback
port. For each mode and number of instances (kryten-sync clients in this process, one
channel), publishes N bridge-format ``chatMsg`` events (typed handlers) in one burst
from a separate raw nats-py connection, then waits until the handlers have seen them;
the clock runs from the first publish to the last handler call. ``durable backlog``
publishes while the bot is stopped and times from ``connect()``. Each handler records
when it started and ended; the script counts events handled more than once or never,
pairs of consecutive events whose handling overlapped (the later one started before
the earlier one ended) and events whose handling started before that of an earlier
event (out of order). ``--handler-ms`` makes each handler sleep that long (default 0).
A second table gives the ceiling of each consumer design in raw nats-py: one client
acknowledging a backlog of N through a push consumer with one unacknowledged message
(what durable mode uses) or a pull consumer fetching 1, 10 or 100 at a time. Every cell
is the median of R runs (default 3) with the min-max; the load average is printed
before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js import api

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kryten_sync import ChatMessageEvent, KrytenClient  # noqa: E402
from tests._nats import NatsServer  # noqa: E402

SUBJECT = "kryten.events.cytube.lounge.chatmsg"


def envelope(n: int) -> bytes:
    return json.dumps(
        {
            "event_name": "chatMsg",
            "payload": {"username": "alice", "msg": str(n), "meta": {}, "time": 1_700_000_000_000},
            "channel": "lounge",
            "domain": "cytu.be",
            "timestamp": "2024-05-06T07:08:09+00:00",
            "correlation_id": str(uuid.uuid4()),
        }
    ).encode()


def publish(url: str, count: int) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        for n in range(count):
            await nc.publish(SUBJECT, envelope(n))
        await nc.flush()
        await nc.close()

    asyncio.run(run())


@dataclass
class Result:
    rate: float
    duplicates: int
    missing: int
    overlapping: int
    out_of_order: int


class Recorder:
    def __init__(self, count: int, handler_ms: float) -> None:
        self.count = count
        self.sleep = handler_ms / 1000
        self.lock = threading.Lock()
        self.rows: list[tuple[int, float, float]] = []
        self.done = threading.Event()

    def handler(self, event: ChatMessageEvent) -> None:
        start = time.perf_counter()
        if self.sleep:
            time.sleep(self.sleep)
        end = time.perf_counter()
        with self.lock:
            self.rows.append((int(event.message), start, end))
            if len(self.rows) >= self.count:
                self.done.set()

    def result(self, seconds: float) -> Result:
        by_n: dict[int, tuple[float, float]] = {}
        duplicates = 0
        for n, start, end in self.rows:
            if n in by_n:
                duplicates += 1
            by_n[n] = (start, end)
        missing = self.count - len(by_n)
        ordered = [by_n[n] for n in sorted(by_n)]
        overlapping = sum(1 for a, b in itertools.pairwise(ordered) if b[0] < a[1])
        latest = 0.0
        out_of_order = 0
        for start, _ in ordered:
            if start < latest:
                out_of_order += 1
            latest = max(latest, start)
        return Result(self.count / seconds, duplicates, missing, overlapping, out_of_order)


def config(url: str, mode: str) -> dict[str, Any]:
    events = {"core": {}, "shared": {"shared": True}, "durable": {"durable": True}}[mode]
    return {
        "nats": {"servers": [url]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        "service": {"name": "bench", "enable_lifecycle": False},
        "events": events,
        "handler_queue_size": 100_000,
    }


def run_once(mode: str, instances: int, count: int, handler_ms: float) -> Result:
    backlog = mode == "durable backlog"
    with NatsServer(jetstream=True) as server:
        recorder = Recorder(count, handler_ms)
        clients = []
        for _ in range(instances):
            client = KrytenClient(config(server.url, "durable" if backlog else mode))
            client.on("chatMsg", handler=recorder.handler)
            client.connect()
            clients.append(client)
        try:
            if backlog:
                for client in clients:
                    client.disconnect()
                publish(server.url, count)
                start = time.perf_counter()
                for client in clients:
                    client.connect()
            else:
                start = time.perf_counter()
                threading.Thread(target=publish, args=(server.url, count)).start()
            if not recorder.done.wait(120):
                print(f"  {mode} x{instances}: only {len(recorder.rows)} of {count} handled")
            seconds = time.perf_counter() - start
            time.sleep(0.5)  # let repeats, if any, arrive before counting
        finally:
            for client in clients:
                client.disconnect()
        return recorder.result(seconds)


async def raw_consume(url: str, count: int, batch: int) -> float:
    """Messages/s one raw nats-py client consumes and acknowledges from a backlog of
    ``count``: a push consumer with one unacknowledged message (``batch`` 0, the design
    durable mode uses) or a pull consumer fetching ``batch`` at a time."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name="RAW", subjects=[SUBJECT]))
    config = api.ConsumerConfig(
        durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=max(batch, 1)
    )
    for n in range(count):
        await nc.publish(SUBJECT, envelope(n))
    await nc.flush()
    done = asyncio.Event()
    seen = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal seen
        await msg.ack()
        seen += 1
        if seen >= count:
            done.set()

    start = time.perf_counter()
    if batch == 0:
        config.deliver_subject = "raw.deliver"
        await js.add_consumer("RAW", config)
        await nc.subscribe("raw.deliver", cb=on_msg)
        await done.wait()
    else:
        pull = await js.pull_subscribe(SUBJECT, durable="raw", stream="RAW", config=config)
        while seen < count:
            for msg in await pull.fetch(batch, timeout=5):
                await on_msg(msg)
    seconds = time.perf_counter() - start
    await nc.close()
    return count / seconds


def raw_table(count: int, runs: int) -> None:
    print()
    print("raw nats-py, one client acknowledging a backlog (the ceiling of each design):")
    print()
    print("| consumer | messages/s |")
    print("|---|---|")
    for title, batch in [
        ("push, 1 unacknowledged", 0),
        ("pull, fetch 1", 1),
        ("pull, fetch 10", 10),
        ("pull, fetch 100", 100),
    ]:
        rates = []
        for _ in range(runs):
            with NatsServer(jetstream=True) as server:
                rates.append(asyncio.run(raw_consume(server.url, count, batch)))
        print(f"| {title} | {cell(rates, lambda v: f'{v:,.0f}')} |", flush=True)


def cell(values: list[float], fmt: Callable[[float], str]) -> str:
    median = statistics.median(values)
    return f"{fmt(median)} ({fmt(min(values))}-{fmt(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--handler-ms", type=float, default=0.0)
    args = parser.parse_args()
    cases = [  # core mode with one instance: several would each handle every event
        ("core", 1),
        ("shared", 2),
        ("shared", 3),
        ("durable", 1),
        ("durable", 2),
        ("durable", 3),
        ("durable backlog", 1),
        ("durable backlog", 2),
    ]
    print(
        f"{args.events} events, handler {args.handler_ms:g} ms, median (min-max) of "
        f"{args.runs}; load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| mode | instances | events/s | lost | handled twice | overlapping pairs | out of order |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, instances in cases:
        results = [
            run_once(mode, instances, args.events, args.handler_ms) for _ in range(args.runs)
        ]
        print(
            f"| {mode} | {instances} | {cell([r.rate for r in results], lambda v: f'{v:,.0f}')} "
            f"| {max(r.missing for r in results)} | {max(r.duplicates for r in results)} "
            f"| {cell([float(r.overlapping) for r in results], lambda v: f'{v:g}')} "
            f"| {cell([float(r.out_of_order) for r in results], lambda v: f'{v:g}')} |",
            flush=True,
        )
    raw_table(args.events, args.runs)


if __name__ == "__main__":
    main()
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
