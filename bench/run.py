"""Benchmarks: raw async nats-py vs kryten-py (async original) vs kryten-sync.

    python bench/run.py [--quick] [--json out.json]

Starts its own nats-server on a free loopback port, runs every benchmark for the three
implementations in the same process and run, and prints a Markdown table. Each number is
the median of three measurements taken after a warm-up. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import kryten  # type: ignore[import-untyped]  # kryten-py ships no py.typed
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kryten_sync import KrytenClient as SyncClient  # noqa: E402
from kryten_sync.tools.embedded import EmbeddedServer, find_binary  # noqa: E402

T = TypeVar("T")
Sample = dict[str, float]
"""One measurement: ``rate`` (per second) or ``p50``/``p99`` (ms), plus counters."""

RUNS = 3
STALL_SECONDS = 5.0
REQUEST_TIMEOUT = 5.0
EIGHT_THREADS = 8

IMPLS = ("raw", "kryten-py", "kryten-sync")
IMPL_TITLES = {
    "raw": "raw nats-py (async)",
    "kryten-py": "kryten-py (async original)",
    "kryten-sync": "kryten-sync",
}

DOMAIN = "cytu.be"
CHANNEL = "lounge"
EVENT_SUBJECT = f"kryten.events.cytube.{CHANNEL}.chatMsg"
EVENTS_WILDCARD = f"kryten.events.cytube.{CHANNEL}.>"
COMMAND_SUBJECT = f"kryten.commands.cytube.{CHANNEL}.chat"
PUBLISH_SUBJECT = "bench.publish"
ECHO_SUBJECT = "bench.echo"
PAYLOAD = b'{"bench":"publish","pad":"' + b"x" * 72 + b'"}'  # 100 bytes
REPLY = b'{"ok":true,"service":"bench-responder"}'
CHAT_TEXT = "hello from the benchmark"

# A chatMsg payload shaped as CyTube sends it (copied from tests/bridge_format.py).
CHAT_MSG: dict[str, Any] = {
    "username": "alice",
    "msg": "hello &lt;everyone&gt; \u2014 caf\u00e9",
    "meta": {},
    "time": 1_700_000_000_123,
}


@dataclass(frozen=True)
class Sizes:
    """Messages (or requests) per measured run of each benchmark."""

    publish: int
    commands: int
    events: int
    requests: int


FULL = Sizes(publish=200_000, commands=40_000, events=20_000, requests=2_000)
QUICK = Sizes(publish=10_000, commands=2_000, events=2_000, requests=200)


# -- nats-server -------------------------------------------------------------------------


@contextmanager
def local_nats_server() -> Iterator[str]:
    """Run a nats-server on a free loopback port; yields its URL."""
    with EmbeddedServer(jetstream=False) as server:
        yield server.url


# -- the environment ---------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, str]:
    server = subprocess.run(
        [find_binary(), "--version"], capture_output=True, text=True, check=False
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "python": platform.python_version(),
        "nats-py": package_version("nats-py"),
        "kryten-py": package_version("kryten-py"),
        "nats-server": server.stdout.strip().removeprefix("nats-server: ") or "unknown",
        "platform": platform.platform(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "load average at start": load,
    }


# -- timing helpers ----------------------------------------------------------------------


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in 0..100."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_sample(seconds: list[float]) -> Sample:
    return {"p50": percentile(seconds, 50) * 1e3, "p99": percentile(seconds, 99) * 1e3}


def summarize(samples: list[Sample]) -> Sample:
    """Median of each key, except the worst ``received`` and ``dropped`` of the runs."""
    result: Sample = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "received":
            result[key] = min(values)
        elif key == "dropped":
            result[key] = max(values)
        else:
            result[key] = statistics.median(values)
    return result


def warmup_size(n: int) -> int:
    return max(n // 5, 100)


def repeat(measure: Callable[[int], Sample], n: int) -> Sample:
    """Warm up, then measure ``RUNS`` times with ``n`` messages; the summary."""
    measure(warmup_size(n))
    return summarize([measure(n) for _ in range(RUNS)])


async def arepeat(measure: Callable[[int], Awaitable[Sample]], n: int) -> Sample:
    """:func:`repeat` for a coroutine measurement."""
    await measure(warmup_size(n))
    return summarize([await measure(n) for _ in range(RUNS)])


class Tally:
    """Counts the events a handler saw in one run and when the last one arrived."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.last_at = 0.0
        self._seen = 0
        self._changed = time.monotonic()

    def hit(self) -> None:
        self.count += 1
        self.last_at = time.perf_counter()

    def finished(self) -> bool:
        """True once every event arrived, or nothing arrived for ``STALL_SECONDS``."""
        if self.count >= self.expected:
            return True
        now = time.monotonic()
        if self.count != self._seen:
            self._seen, self._changed = self.count, now
        return now - self._changed > STALL_SECONDS

    def sample(self, started: float) -> Sample:
        """Events per second from the first publish to the last event received."""
        return {
            "rate": rate(self.count, self.last_at - started),
            "received": float(self.count),
            "expected": float(self.expected),
        }


def split(n: int, parts: int) -> list[int]:
    """``n`` as ``parts`` near-equal counts."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def timed_in_threads(work: Callable[[int], None], counts: list[int]) -> float:
    """Run ``work(count)`` on one thread per count, released together; the start time."""
    barrier = threading.Barrier(len(counts) + 1)
    errors: list[BaseException] = []

    def body(count: int) -> None:
        barrier.wait()
        try:
            work(count)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=body, args=(c,), name=f"bench-{i}") for i, c in enumerate(counts)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(120)
        if thread.is_alive():
            raise TimeoutError(f"{thread.name} still running after 120 s")
    if errors:
        raise errors[0]
    return started


# -- shared fixtures ---------------------------------------------------------------------


def chat_envelope() -> bytes:
    """A chatMsg event exactly as the bridge publishes it (see tests/bridge_format.py)."""
    body = {
        "event_name": "chatMsg",
        "payload": CHAT_MSG,
        "channel": CHANNEL,
        "domain": DOMAIN,
        "timestamp": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()),
    }
    return json.dumps(body).encode("utf-8")


def command_body(message: str) -> bytes:
    """The JSON body kryten-sync sends for ``send_chat``, built the same way."""
    body = {
        "action": "chat",
        "data": {"message": message},
        "correlation_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class Helper:
    """Raw nats-py connections on a thread of their own: event publisher and responder.

    Shared by all implementations, so the client under test never does this work.
    """

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="bench-helper", daemon=True
        )
        self.thread.start()
        self.publisher: NATS = self.call(nats.connect(url, name="bench-publisher"))
        self.responder: NATS = self.call(nats.connect(url, name="bench-responder"))
        self.call(self._start_responder())

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return self.submit(coro).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self.submit(coro))

    async def _start_responder(self) -> None:
        async def reply(msg: Msg) -> None:
            await msg.respond(REPLY)

        await self.responder.subscribe(ECHO_SUBJECT, cb=reply)
        await self.responder.flush()

    async def publish_events(self, payloads: list[bytes]) -> float:
        """Publish the envelopes and flush; the time the first publish started."""
        started = time.perf_counter()
        for payload in payloads:
            await self.publisher.publish(EVENT_SUBJECT, payload)
        await self.publisher.flush()
        return started

    def close(self) -> None:
        self.call(self.publisher.close())
        self.call(self.responder.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Context:
    url: str
    sizes: Sizes
    helper: Helper
    envelopes: list[bytes]


async def deliver_async(ctx: Context, tally: Tally, n: int) -> Sample:
    """Publish ``n`` events from the helper; wait (on this loop) until they arrived."""
    tally.reset(n)
    started = await ctx.helper.acall(ctx.helper.publish_events(ctx.envelopes[:n]))
    while not tally.finished():
        await asyncio.sleep(0.01)
    return tally.sample(started)


def deliver_sync(ctx: Context, tally: Tally, n: int) -> Sample:
    """:func:`deliver_async` for a client whose handlers run on its own threads."""
    tally.reset(n)
    started = ctx.helper.call(ctx.helper.publish_events(ctx.envelopes[:n]))
    while not tally.finished():
        time.sleep(0.01)
    return tally.sample(started)


# -- raw nats-py (async) -----------------------------------------------------------------


async def raw_publish(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url, name="bench-raw")

    async def once(n: int) -> Sample:
        started = time.perf_counter()
        for _ in range(n):
            await nc.publish(PUBLISH_SUBJECT, PAYLOAD)
        await nc.flush()
        return {"rate": rate(n, time.perf_counter() - started)}

    try:
        return await arepeat(once, ctx.sizes.publish)
    finally:
        await nc.close()


async def raw_commands(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url, name="bench-raw")

    async def once(n: int) -> Sample:
        started = time.perf_counter()
        for _ in range(n):
            await nc.publish(COMMAND_SUBJECT, command_body(CHAT_TEXT))
        await nc.flush()
        return {"rate": rate(n, time.perf_counter() - started)}

    try:
        return await arepeat(once, ctx.sizes.commands)
    finally:
        await nc.close()


async def raw_events(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url, name="bench-raw")
    tally = Tally()

    async def on_event(msg: Msg) -> None:
        json.loads(msg.data)
        tally.hit()

    try:
        await nc.subscribe(EVENTS_WILDCARD, cb=on_event)
        await nc.flush()
        return await arepeat(lambda n: deliver_async(ctx, tally, n), ctx.sizes.events)
    finally:
        await nc.close()


async def raw_request(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url, name="bench-raw")

    async def once(n: int) -> Sample:
        latencies = []
        for i in range(n):
            started = time.perf_counter()
            reply = await nc.request(
                ECHO_SUBJECT, json.dumps({"n": i}).encode(), timeout=REQUEST_TIMEOUT
            )
            json.loads(reply.data)
            latencies.append(time.perf_counter() - started)
        return latency_sample(latencies)

    try:
        return await arepeat(once, ctx.sizes.requests)
    finally:
        await nc.close()


# -- kryten-py (the async original) ------------------------------------------------------


def kryten_py_client(url: str) -> kryten.KrytenClient:
    """kryten-py with its chat throttle off (min delay and jitter 0)."""
    return kryten.KrytenClient(
        {
            "nats": {"servers": [url]},
            "channels": [{"domain": DOMAIN, "channel": CHANNEL}],
            "chat_min_delay": 0,
            "chat_jitter": 0,
            "log_level": "ERROR",
        }
    )


async def kryten_py_flush(client: kryten.KrytenClient) -> None:
    # kryten-py has no public flush; its nats-py connection is the only way to wait.
    assert client._nats is not None
    await client._nats.flush()


async def kryten_py_publish(ctx: Context) -> Sample:
    async with kryten_py_client(ctx.url) as client:

        async def once(n: int) -> Sample:
            started = time.perf_counter()
            for _ in range(n):
                await client.publish(PUBLISH_SUBJECT, PAYLOAD)
            await kryten_py_flush(client)
            return {"rate": rate(n, time.perf_counter() - started)}

        return await arepeat(once, ctx.sizes.publish)


async def kryten_py_commands(ctx: Context) -> Sample:
    async with kryten_py_client(ctx.url) as client:

        async def once(n: int) -> Sample:
            started = time.perf_counter()
            for _ in range(n):
                await client.send_chat(CHANNEL, CHAT_TEXT)
            await kryten_py_flush(client)
            return {"rate": rate(n, time.perf_counter() - started)}

        return await arepeat(once, ctx.sizes.commands)


async def kryten_py_events(ctx: Context) -> Sample:
    client = kryten_py_client(ctx.url)
    tally = Tally()

    @client.on("chatMsg")  # type: ignore[untyped-decorator]
    async def on_chat(event: Any) -> None:
        tally.hit()

    async with client:
        await kryten_py_flush(client)  # the subscription is registered at the server
        return await arepeat(lambda n: deliver_async(ctx, tally, n), ctx.sizes.events)


async def kryten_py_request(ctx: Context) -> Sample:
    async with kryten_py_client(ctx.url) as client:

        async def once(n: int) -> Sample:
            latencies = []
            for i in range(n):
                started = time.perf_counter()
                await client.nats_request(ECHO_SUBJECT, {"n": i}, timeout=REQUEST_TIMEOUT)
                latencies.append(time.perf_counter() - started)
            return latency_sample(latencies)

        return await arepeat(once, ctx.sizes.requests)


# -- kryten-sync -------------------------------------------------------------------------


def kryten_sync_client(url: str) -> SyncClient:
    """kryten-sync with its chat limiter off (``chat_min_delay: 0``)."""
    return SyncClient(
        {
            "nats": {"servers": [url]},
            "channels": [{"domain": DOMAIN, "channel": CHANNEL}],
            "chat_min_delay": 0,
            "log_level": "ERROR",
        }
    )


def kryten_sync_publish(ctx: Context) -> Sample:
    with kryten_sync_client(ctx.url) as client:

        def once(n: int) -> Sample:
            started = time.perf_counter()
            for _ in range(n):
                client.publish(PUBLISH_SUBJECT, PAYLOAD)
            client.flush()
            return {"rate": rate(n, time.perf_counter() - started)}

        return repeat(once, ctx.sizes.publish)


def kryten_sync_commands(ctx: Context, threads: int) -> Sample:
    with kryten_sync_client(ctx.url) as client:

        def send(count: int) -> None:
            for _ in range(count):
                client.send_chat(CHANNEL, CHAT_TEXT)

        def once(n: int) -> Sample:
            if threads == 1:
                started = time.perf_counter()
                send(n)
            else:
                started = timed_in_threads(send, split(n, threads))
            client.flush()
            return {"rate": rate(n, time.perf_counter() - started)}

        return repeat(once, ctx.sizes.commands)


def kryten_sync_events(ctx: Context) -> Sample:
    client = kryten_sync_client(ctx.url)
    tally = Tally()

    @client.on("chatMsg")
    def on_chat(event: Any) -> None:
        tally.hit()

    with client:
        client.flush()  # the subscription is registered at the server

        def once(n: int) -> Sample:
            sample = deliver_sync(ctx, tally, n)
            sample["dropped"] = float(sum(c.dropped for c in client.channels))
            return sample

        return repeat(once, ctx.sizes.events)


def kryten_sync_request(ctx: Context) -> Sample:
    with kryten_sync_client(ctx.url) as client:

        def once(n: int) -> Sample:
            latencies = []
            for i in range(n):
                started = time.perf_counter()
                client.request(ECHO_SUBJECT, {"n": i}, timeout=REQUEST_TIMEOUT)
                latencies.append(time.perf_counter() - started)
            return latency_sample(latencies)

        return repeat(once, ctx.sizes.requests)


# -- the table ---------------------------------------------------------------------------

Runner = Callable[[Context], Sample]


def in_new_loop(fn: Callable[[Context], Coroutine[Any, Any, Sample]]) -> Runner:
    """Run an async benchmark in a fresh event loop on the main thread."""
    return lambda ctx: asyncio.run(fn(ctx))


BENCHMARKS: dict[str, dict[str, Runner]] = {
    "publish": {
        "raw": in_new_loop(raw_publish),
        "kryten-py": in_new_loop(kryten_py_publish),
        "kryten-sync": kryten_sync_publish,
    },
    "commands": {
        "raw": in_new_loop(raw_commands),
        "kryten-py": in_new_loop(kryten_py_commands),
        "kryten-sync": lambda ctx: kryten_sync_commands(ctx, 1),
    },
    "commands-8-threads": {
        "kryten-sync": lambda ctx: kryten_sync_commands(ctx, EIGHT_THREADS),
    },
    "events": {
        "raw": in_new_loop(raw_events),
        "kryten-py": in_new_loop(kryten_py_events),
        "kryten-sync": kryten_sync_events,
    },
    "request": {
        "raw": in_new_loop(raw_request),
        "kryten-py": in_new_loop(kryten_py_request),
        "kryten-sync": kryten_sync_request,
    },
}


@dataclass(frozen=True)
class Row:
    label: str
    benchmark: str
    metric: str  # "rate" (higher is better) or "p50"/"p99" in ms (lower is better)
    baseline: str  # where the async columns come from (a benchmark with no thread variant)


ROWS = (
    Row("publish ~100 B, 1 thread (msg/s)", "publish", "rate", "publish"),
    Row("send_chat, 1 thread (commands/s)", "commands", "rate", "commands"),
    Row(
        f"send_chat, {EIGHT_THREADS} threads (commands/s)", "commands-8-threads", "rate", "commands"
    ),
    Row("chatMsg events to a handler (events/s)", "events", "rate", "events"),
    Row("request round trip p50 (ms)", "request", "p50", "request"),
    Row("request round trip p99 (ms)", "request", "p99", "request"),
)

Results = dict[str, dict[str, Sample | str]]  # benchmark -> implementation -> sample/error


def fmt_value(value: float, metric: str) -> str:
    if metric != "rate":
        return f"{value:.3f}"
    return f"{value / 1e3:.1f} k"


def fmt_cell(result: Sample | str | None, metric: str, note: str = "") -> str:
    if result is None:
        return "—"
    if isinstance(result, str):
        return f"error: {result}"
    text = fmt_value(result[metric], metric) + note
    received, expected = result.get("received"), result.get("expected")
    if received is not None and expected is not None and received < expected:
        text += f" (received {received:,.0f}/{expected:,.0f})"
    return text


def ratio(sync: Sample | str | None, other: Sample | str | None, metric: str) -> str:
    if not isinstance(sync, dict) or not isinstance(other, dict) or not other[metric]:
        return "—"
    return f"{sync[metric] / other[metric]:.2f}x"


def table(results: Results) -> str:
    lines = [
        "| benchmark | "
        + " | ".join(IMPL_TITLES[i] for i in IMPLS)
        + " | sync/raw | sync/kryten-py |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in ROWS:
        cells: dict[str, Sample | str | None] = {}
        notes: dict[str, str] = {}
        for impl in IMPLS:
            cells[impl] = results.get(row.benchmark, {}).get(impl)
            if cells[impl] is None and row.baseline != row.benchmark:
                cells[impl] = results.get(row.baseline, {}).get(impl)
                notes[impl] = " ¹"
        sync = cells["kryten-sync"]
        lines.append(
            f"| {row.label} | "
            + " | ".join(fmt_cell(cells[i], row.metric, notes.get(i, "")) for i in IMPLS)
            + f" | {ratio(sync, cells['raw'], row.metric)}"
            + f" | {ratio(sync, cells['kryten-py'], row.metric)} |"
        )
    return "\n".join(lines)


TABLE_NOTES = """\
Rates in thousands per second (higher is better); latencies in ms (lower is better).
Ratios are kryten-sync divided by the other column: above 1x is faster for rates,
slower for latencies. Each cell is the median of 3 runs after a warm-up.
¹ The async clients have no thread variant: their single-task number is repeated and
the ratios compare against it."""


# -- main --------------------------------------------------------------------------------


def run_all(ctx: Context) -> Results:
    results: Results = {}
    for name, impls in BENCHMARKS.items():
        for impl, runner in impls.items():
            began = time.perf_counter()
            try:
                results.setdefault(name, {})[impl] = runner(ctx)
            except Exception as exc:
                traceback.print_exc()
                results.setdefault(name, {})[impl] = f"{type(exc).__name__}: {exc}"
            took = time.perf_counter() - began
            print(
                f"  {name:<20} {impl:<12} {took:6.1f} s  {results[name][impl]}",
                file=sys.stderr,
                flush=True,
            )
    return results


def problems(results: Results) -> list[str]:
    found = []
    for name, impls in results.items():
        for impl, result in impls.items():
            if isinstance(result, str):
                found.append(f"{name} / {impl}: {result}")
                continue
            received, expected = result.get("received"), result.get("expected")
            if received is not None and expected is not None and received < expected:
                found.append(
                    f"{name} / {impl}: received {received:,.0f} of {expected:,.0f} "
                    f"in the worst run (stalled {STALL_SECONDS:.0f} s)"
                )
            if result.get("dropped"):
                found.append(f"{name} / {impl}: {result['dropped']:,.0f} reported dropped")
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, a smoke run (< 20 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    env = environment()
    print(f"# kryten-sync benchmarks ({'quick' if args.quick else 'full'} run)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(
        f"- N per run: publish {sizes.publish:,}, commands {sizes.commands:,}, "
        f"events {sizes.events:,}, requests {sizes.requests:,}\n",
        flush=True,
    )
    began = time.perf_counter()
    envelopes = [chat_envelope() for _ in range(sizes.events)]
    with local_nats_server() as url:
        helper = Helper(url)
        try:
            results = run_all(Context(url, sizes, helper, envelopes))
        finally:
            helper.close()
    elapsed = time.perf_counter() - began
    print(table(results))
    print()
    print(TABLE_NOTES)
    found = problems(results)
    print("\nProblems: " + ("none" if not found else ""))
    for line in found:
        print(f"- {line}")
    print(f"\nTotal run time: {elapsed:.1f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "environment": env,
                    "sizes": sizes.__dict__,
                    "results": results,
                    "problems": found,
                    "seconds": elapsed,
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
