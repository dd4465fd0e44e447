"""Cross-process throughput: 1 and 2 processes hitting one shared cache at the same time.

Worker processes (spawned once, kept for the whole run) each replay their own trace of hits
through a cache that every process opens: warp_cache's shared backend (mmap files) and
diskcache's `memoize` (SQLite files in one directory). The parent warms both caches first,
so every call is a hit served by the shared store. A run starts at a moment agreed in
advance (a system-wide monotonic clock), and throughput is the total number of calls
divided by the time from that start until the last process finishes. As a control, the
memory backend (one private cache per process) shows how far this machine scales to 2
processes at all. Rounds are interleaved, medians reported.

    python benches/processes.py [--quick] [--rounds 7] [--calls 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import warp_cache
from common import MAX_SIZE, identity, machine, machine_line, write_json

SLOW_SHARE = 20  # diskcache replays 1/20 of the calls (microseconds per call)
SHARED = "warp_cache (shared)"
DISKCACHE = "diskcache"
MEMORY = "warp_cache memory (private per process)"


def make(label: str, diskcache_dir: str) -> Callable[[object], object]:
    if label == SHARED:
        return warp_cache.cache(max_size=MAX_SIZE, backend="shared")(identity)
    if label == MEMORY:
        return warp_cache.cache(max_size=MAX_SIZE)(identity)
    import diskcache

    return diskcache.Cache(diskcache_dir).memoize()(identity)


def worker(conn: Connection, diskcache_dir: str) -> None:
    """Serves run requests: (label, seed, calls, start_at) -> (seconds from start_at)."""
    fns: dict[str, Callable[[object], object]] = {}
    while True:
        request = conn.recv()
        if request is None:
            return
        label, seed, calls, start_at = request
        fn = fns.get(label)
        if fn is None:
            fn = fns[label] = make(label, diskcache_dir)
            for key in range(MAX_SIZE):  # the private memory cache warms itself
                fn(key)
        rng = random.Random(seed)
        trace = [rng.randrange(MAX_SIZE) for _ in range(calls)]
        while time.perf_counter() < start_at:
            pass
        for key in trace:
            fn(key)
        conn.send(time.perf_counter() - start_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~20x smaller, for development")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100_000, help="per process")
    parser.add_argument("--json", help="write the results as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 3, args.calls // 20
    # Every process must find the same files: one private directory for this run.
    os.environ["WARP_CACHE_DIR"] = os.path.join(tempfile.mkdtemp(), "warp_cache")
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    diskcache_dir = tempfile.mkdtemp(prefix="bench-diskcache-", dir=base)

    labels = [SHARED, DISKCACHE, MEMORY]
    skipped: dict[str, str] = {}
    for label in list(labels):
        try:
            fn = make(label, diskcache_dir)
        except ImportError as error:
            skipped[label] = f"not installed ({error.name})"
            labels.remove(label)
            continue
        for key in range(MAX_SIZE):  # warm the shared stores from the parent
            fn(key)

    ctx = mp.get_context("spawn")
    pipes = []
    procs = []
    for _ in range(2):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child, diskcache_dir), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)

    def run(label: str, n: int, seed: int) -> float:
        calls = args.calls // SLOW_SHARE if label == DISKCACHE else args.calls
        start_at = time.perf_counter() + 0.05
        for i in range(n):
            pipes[i].send((label, seed + i, calls, start_at))
        elapsed = max(pipes[i].recv() for i in range(n))
        return n * calls / elapsed

    # One untimed run each: workers open their files and warm up.
    for label in labels:
        run(label, 2, 0)
    samples: dict[tuple[str, int], list[float]] = {(c, n): [] for c in labels for n in (1, 2)}
    rng = random.Random(1)
    for r in range(args.rounds):
        order = list(samples)
        rng.shuffle(order)
        for label, n in order:
            samples[(label, n)].append(run(label, n, 1000 * r))
    for pipe in pipes:
        pipe.send(None)
    for proc in procs:
        proc.join(timeout=10)
    rates = {f"{c}|{n}": statistics.median(v) for (c, n), v in samples.items()}

    meta = machine()
    meta.update(rounds=args.rounds, calls=args.calls, slow_share=SLOW_SHARE, max_size=MAX_SIZE)
    title = f"Hits from 1 and 2 processes on one shared cache ({MAX_SIZE} warm keys)"
    data: dict[str, Any] = {
        "meta": meta,
        "workloads": [{"key": "processes", "title": title, "rates": rates}],
        "skipped": skipped,
    }
    write_json(args.json, data)
    print(machine_line(meta))
    for key, rate in rates.items():
        print(f"{key:50} {rate:14,.0f} calls/s")
    for label, why in skipped.items():
        print(f"skipped {label}: {why}")


if __name__ == "__main__":
    main()
