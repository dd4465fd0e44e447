"""Hit throughput with 1 and 2 threads (meant for free-threaded CPython 3.13t).

Each thread replays its own trace through one shared cached function; throughput is the
total number of calls divided by the wall time from a common start barrier until the last
thread finishes. Rounds are interleaved across contenders and thread counts; medians are
reported, with ratios measured in this same run.

    python benches/threads.py [--rounds 9] [--calls 200000] [--write FILE]
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import statistics
import sys
import sysconfig
import threading
import time
from collections.abc import Callable

import warp_cache
from compare import MAX_SIZE, identity, zipf_trace

Maker = Callable[[], Callable[[object], object]]

CONTENDERS: dict[str, Maker] = {
    "warp_cache": lambda: warp_cache.cache(max_size=MAX_SIZE)(identity),
    "lru_cache": lambda: functools.lru_cache(maxsize=MAX_SIZE)(identity),
}


def run_threads(fn: Callable[[object], object], traces: list[list[int]]) -> float:
    """Wall seconds for every trace to be replayed, one thread per trace."""
    barrier = threading.Barrier(len(traces) + 1)

    def replay(trace: list[int]) -> None:
        barrier.wait()
        for key in trace:
            fn(key)

    threads = [threading.Thread(target=replay, args=(t,)) for t in traces]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def measure(
    make_trace: Callable[[int], list[int]], warm: list[int], rounds: int, calls: int
) -> dict[tuple[str, int], float]:
    """Median calls per second for each (contender, threads)."""
    fns = {label: make() for label, make in CONTENDERS.items()}
    for fn in fns.values():
        for key in warm:
            fn(key)
    traces = {n: [make_trace(seed)[:calls] for seed in range(n)] for n in (1, 2)}
    samples: dict[tuple[str, int], list[float]] = {(c, n): [] for c in fns for n in (1, 2)}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(samples)
        rng.shuffle(order)
        for label, n in order:
            seconds = run_threads(fns[label], traces[n])
            samples[(label, n)].append(n * calls / seconds)
    return {k: statistics.median(v) for k, v in samples.items()}


def table(title: str, results: dict[tuple[str, int], float]) -> list[str]:
    lru2 = results[("lru_cache", 2)]
    lines = [
        f"### {title}",
        "",
        "| cache | threads | calls/s (total) | vs own 1 thread | vs lru_cache, 2 threads |",
        "|---|---:|---:|---:|---:|",
    ]
    for (label, n), rate in sorted(results.items()):
        own = rate / results[(label, 1)]
        lines.append(f"| {label} | {n} | {rate:,.0f} | {own:.2f}x | {rate / lru2:.2f}x |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--write", help="also write the Markdown report to this file")
    args = parser.parse_args()

    gil_disabled = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    gil_on = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    report = [
        f"Python {platform.python_version()} "
        f"({'free-threaded' if gil_disabled else 'GIL build'}, GIL {'on' if gil_on else 'off'}), "
        f"{platform.machine()}, {args.rounds} interleaved rounds, {args.calls:,} calls per thread.",
        "",
    ]
    hot = list(range(MAX_SIZE))

    def hits(seed: int) -> list[int]:
        rng = random.Random(seed)
        return [rng.choice(hot) for _ in range(args.calls)]

    def zipf(seed: int) -> list[int]:
        return zipf_trace(2_000, 1.0, args.calls, seed)

    report += table(
        f"Hits only ({MAX_SIZE} warm keys)", measure(hits, hot, args.rounds, args.calls)
    )
    report += table(
        f"Zipf alpha=1.0 over 2,000 keys, max_size={MAX_SIZE}",
        measure(zipf, [], args.rounds, args.calls),
    )
    text = "\n".join(report)
    print(text)
    if args.write:
        with open(args.write, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
