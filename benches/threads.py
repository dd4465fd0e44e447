"""Hit throughput with 1 and 2 threads (meant for free-threaded CPython 3.13t).

Each thread replays its own trace through one shared cached function; throughput is the
total number of calls divided by the wall time from a common start barrier until the last
thread finishes. Rounds are interleaved across contenders and thread counts; medians are
reported, with ratios measured in this same run. A control gives each thread a private
warp_cache (nothing shared): it shows how far this machine scales to 2 threads at all.

    python benches/threads.py [--quick] [--rounds 9] [--calls 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import threading
import time
from collections.abc import Callable

import warp_cache
from common import (
    DISTINCT_KEYS,
    MAX_SIZE,
    identity,
    machine,
    machine_line,
    write_json,
    zipf_trace,
)

Maker = Callable[[], Callable[[object], object]]

CONTENDERS: dict[str, Maker] = {
    "warp_cache": lambda: warp_cache.cache(max_size=MAX_SIZE)(identity),
    "lru_cache": lambda: functools.lru_cache(maxsize=MAX_SIZE)(identity),
    "warp_cache (shared)": lambda: warp_cache.cache(max_size=MAX_SIZE, backend="shared")(identity),
}
PRIVATE = "warp_cache (private per thread, control)"


def run_threads(fns: list[Callable[[object], object]], traces: list[list[int]]) -> float:
    """Wall seconds for every trace to be replayed, one thread per trace (and function)."""
    barrier = threading.Barrier(len(traces) + 1)

    def replay(fn: Callable[[object], object], trace: list[int]) -> None:
        barrier.wait()
        for key in trace:
            fn(key)

    threads = [threading.Thread(target=replay, args=ft) for ft in zip(fns, traces, strict=True)]
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
    fns = {label: [make()] * 2 for label, make in CONTENDERS.items()}
    fns[PRIVATE] = [CONTENDERS["warp_cache"]() for _ in range(2)]
    for pair in fns.values():
        for fn in set(pair):
            for key in warm:
                fn(key)
    traces = {n: [make_trace(seed)[:calls] for seed in range(n)] for n in (1, 2)}
    samples: dict[tuple[str, int], list[float]] = {(c, n): [] for c in fns for n in (1, 2)}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(samples)
        rng.shuffle(order)
        for label, n in order:
            seconds = run_threads(fns[label][:n], traces[n])
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
    parser.add_argument("--quick", action="store_true", help="~20x smaller, for development")
    parser.add_argument("--rounds", type=int, default=9)
    # Long enough per round (tens of ms) that thread start-up does not blur the scaling.
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--write", help="also write the Markdown report to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 3, args.calls // 20

    meta = machine()
    meta.update(rounds=args.rounds, calls=args.calls, max_size=MAX_SIZE)
    report = [
        machine_line(meta),
        f"{args.rounds} interleaved rounds, {args.calls:,} calls per thread, median round.",
        "",
    ]
    hot = list(range(MAX_SIZE))

    def hits(seed: int) -> list[int]:
        rng = random.Random(seed)
        return [rng.choice(hot) for _ in range(args.calls)]

    def zipf(seed: int) -> list[int]:
        return zipf_trace(DISTINCT_KEYS, 1.0, args.calls, seed)

    done = []
    for key, title, make_trace, warm in [
        ("hits", f"Hits only ({MAX_SIZE} warm keys, max_size={MAX_SIZE})", hits, hot),
        (
            "zipf-1.0",
            f"Zipf alpha=1.0 over {DISTINCT_KEYS:,} keys, max_size={MAX_SIZE}",
            zipf,
            [],
        ),
    ]:
        results = measure(make_trace, warm, args.rounds, args.calls)
        report += table(title, results)
        rates = {f"{label}|{n}": rate for (label, n), rate in results.items()}
        done.append({"key": key, "title": title, "rates": rates})
    text = "\n".join(report)
    print(text)
    write_json(args.json, {"meta": meta, "workloads": done})
    if args.write:
        with open(args.write, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
