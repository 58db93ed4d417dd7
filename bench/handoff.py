"""The loop -> worker-thread hand-off: janus.Queue vs kryten-sync's Handoff.

    python bench/handoff.py [--items N] [--runs R]

An asyncio loop on the main thread awaits ``put`` for N items; one consumer thread
takes them with a blocking ``get``. Each case is measured R times after a warm-up and
printed as the median and min-max of items/s, with two counters per run:

- wake-ups: ``loop.call_soon_threadsafe`` calls the consumer made to wake the loop
  (each is a self-pipe write and a loop iteration: the cost the low-water mark saves);
- fill: the mean queue length seen at each put, as a share of maxsize (which regime a
  case ran in: near 0 when the consumer keeps up, around half or more once puts hit
  the limit).

The producer fills the queue as fast as it can unless it blocks per item itself (the
"not full" case). A consumer that only computes holds the GIL and drains in bursts, so
the level saws between empty and full; one that blocks per item keeps the queue full.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import janus

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kryten_sync._core.handoff import Handoff, HandoffClosed  # noqa: E402

IMPLS = ("janus", "Handoff")
SIZES = (100, 1000)
CONSUMER_TIMEOUT = 120.0


def idle() -> None:
    """No work per item."""


def spin400() -> None:
    """CPU-bound work per item: 400 steps of pure Python holding the GIL, like a handler
    that computes."""
    for _ in range(400):
        pass


def block() -> None:
    """A short blocking call per item that releases the GIL (like a handler doing I/O,
    or a loop waiting on its socket between messages)."""
    time.sleep(0)


@dataclass(frozen=True)
class Case:
    """One regime: the work done per item on each side of the hand-off."""

    label: str
    consumer: Callable[[], None]
    producer: Callable[[], None]


CASES = (
    Case("full: consumer idle", consumer=idle, producer=idle),
    Case("full: consumer spins 400/item", consumer=spin400, producer=idle),
    Case("full: consumer blocks/item", consumer=block, producer=idle),
    Case("not full: producer blocks/item", consumer=idle, producer=block),
)


@dataclass(frozen=True)
class Sample:
    rate: float  # items/s, first put to the consumer holding the last item
    wakeups: int
    fill: float  # mean queue length at put, as a share of maxsize


class CountedLoop:
    """Counts ``call_soon_threadsafe`` on one loop; an attribute set on the instance,
    so both janus and Handoff go through it without being changed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.original = loop.call_soon_threadsafe
        self._counter = itertools.count()
        self.start = 0

        def counted(callback: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
            next(self._counter)  # atomic under the GIL: safe from the consumer thread
            return self.original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]

    def value(self) -> int:
        # next() both reads and bumps the counter: the reading itself is subtracted.
        return next(self._counter)

    def since_start(self) -> int:
        return self.value() - self.start - 1


def run_consumer(
    get: Callable[[], int],
    n: int,
    case: Case,
    counter: CountedLoop,
    done: asyncio.Future[float],
) -> None:
    work = case.consumer
    try:
        for _ in range(n):
            get()
            work()
        finished = time.perf_counter()
    except BaseException as exc:  # the producer must not wait forever
        counter.original(done.set_exception, exc)
        return
    # The uncounted call: finishing is not one of the wake-ups measured.
    counter.original(done.set_result, finished)


async def produce(
    put: Callable[[int], Any], size: Callable[[], int], maxsize: int, n: int, case: Case
) -> tuple[float, float]:
    """Put ``n`` items; the start time and the fill levels (0-1) seen at each put, summed."""
    fill = 0
    work = case.producer
    started = time.perf_counter()
    for i in range(n):
        work()
        fill += size()
        await put(i)
    return started, fill / maxsize


async def measure(impl: str, maxsize: int, n: int, case: Case) -> Sample:
    loop = asyncio.get_running_loop()
    counter = CountedLoop(loop)
    done: asyncio.Future[float] = loop.create_future()
    put: Callable[[int], Any]
    get: Callable[[], int]
    size: Callable[[], int]
    if impl == "janus":
        jq: janus.Queue[int] = janus.Queue(maxsize)
        put, get, size = jq.async_q.put, jq.sync_q.get, jq.async_q.qsize
    else:
        handoff: Handoff[int] = Handoff(maxsize, loop)
        put, get, size = handoff.put, handoff.get, handoff.__len__
    consumer = threading.Thread(
        target=run_consumer, args=(get, n, case, counter, done), name="bench-consumer"
    )
    consumer.start()
    counter.start = counter.value()
    started, fill = await produce(put, size, maxsize, n, case)
    finished = await asyncio.wait_for(done, CONSUMER_TIMEOUT)
    wakeups = counter.since_start()
    consumer.join(CONSUMER_TIMEOUT)
    if impl == "janus":
        await jq.aclose()
    else:
        handoff.shutdown()
        try:
            handoff.get()
        except HandoffClosed:
            pass
        else:
            raise AssertionError("Handoff returned an item past the last one")
    return Sample(n / (finished - started), wakeups, fill / n)


def run(impl: str, maxsize: int, n: int, case: Case) -> Sample:
    """One measurement on a fresh loop, so no state carries over between runs."""
    return asyncio.run(measure(impl, maxsize, n, case))


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    wakeups: float
    fill: float


def summarize(samples: list[Sample]) -> Summary:
    rates = [s.rate for s in samples]
    return Summary(
        median=statistics.median(rates),
        low=min(rates),
        high=max(rates),
        wakeups=statistics.median(s.wakeups for s in samples),
        fill=statistics.median(s.fill for s in samples),
    )


def fmt_rate(s: Summary) -> str:
    return f"{s.median / 1e3:,.0f} k ({s.low / 1e3:,.0f}-{s.high / 1e3:,.0f} k)"


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


def header(n: int, runs: int) -> list[str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- python: {platform.python_version()} ({platform.python_implementation()})",
        f"- janus: {package_version('janus')}",
        f"- platform: {platform.platform()}",
        f"- nproc: {os.cpu_count()}",
        f"- cpu: {cpu_model()}",
        f"- load average at start: {load}",
        f"- items per run: {n:,}; runs per cell: {runs} after a warm-up",
    ]


def table(results: dict[tuple[str, int, str], Summary]) -> list[str]:
    lines = [
        "| regime | maxsize | janus items/s | Handoff items/s | Handoff/janus "
        "| wake-ups janus | wake-ups Handoff | fill janus / Handoff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        for maxsize in SIZES:
            j = results[case.label, maxsize, "janus"]
            h = results[case.label, maxsize, "Handoff"]
            lines.append(
                f"| {case.label} | {maxsize} | {fmt_rate(j)} | {fmt_rate(h)} "
                f"| {h.median / j.median:.2f}x | {j.wakeups:,.0f} | {h.wakeups:,.0f} "
                f"| {j.fill:.0%} / {h.fill:.0%} |"
            )
    return lines


NOTES = """\
items/s: median of the runs, min-max in brackets (first put to the last item taken).
wake-ups: call_soon_threadsafe calls from the consumer per run (median). fill: mean queue
length at put as a share of maxsize (median). idle: no work per item; spins 400: a pure
Python loop of 400 steps; blocks: time.sleep(0), which releases the GIL."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000, help="items per run")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per cell")
    args = parser.parse_args(argv)
    print("# Hand-off benchmark: janus.Queue vs Handoff\n")
    print("\n".join(header(args.items, args.runs)) + "\n", flush=True)
    results: dict[tuple[str, int, str], Summary] = {}
    began = time.perf_counter()
    for case in CASES:
        for maxsize in SIZES:
            for impl in IMPLS:
                run(impl, maxsize, max(args.items // 10, 1), case)  # warm-up
                samples = [run(impl, maxsize, args.items, case) for _ in range(args.runs)]
                results[case.label, maxsize, impl] = summary = summarize(samples)
                print(
                    f"  {case.label:<36} {maxsize:>5} {impl:<8} {fmt_rate(summary)}",
                    file=sys.stderr,
                    flush=True,
                )
    print("\n".join(table(results)))
    print()
    print(NOTES)
    print(f"\nTotal run time: {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
