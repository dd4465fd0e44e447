"""Side-by-side throughput of warp_cache and its peers, in one process.

Every contender wraps the same trivial function, so what is measured is the cache itself.
Rounds are interleaved (each round runs every contender once, in a shuffled order) and the
median round is reported, because this machine is shared and noisy: only ratios measured in
the same run are meaningful.

    python benches/compare.py [--rounds 15] [--calls 200000] [--write FILE]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import os
import platform
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from itertools import accumulate

import warp_cache

MAX_SIZE = 256
DISTINCT_KEYS = 2_000


def identity(x: object) -> object:
    return x


def contenders() -> dict[str, Callable[[], Callable[[object], object]]]:
    """Factories making a fresh cached `identity` per contender (peers only if installed)."""
    makers: dict[str, Callable[[], Callable[[object], object]]] = {
        "warp_cache": lambda: warp_cache.cache(max_size=MAX_SIZE)(identity),
        "warp_cache (shared)": lambda: warp_cache.cache(max_size=MAX_SIZE, backend="shared")(
            identity
        ),
        "lru_cache": lambda: functools.lru_cache(maxsize=MAX_SIZE)(identity),
    }
    try:
        import cachetools

        makers["cachetools"] = lambda: cachetools.cached(cachetools.LRUCache(MAX_SIZE))(identity)
    except ImportError:
        pass
    try:
        import cachebox

        makers["cachebox"] = lambda: cachebox.cached(cachebox.LRUCache(MAX_SIZE))(identity)
    except ImportError:
        pass
    try:
        import diskcache

        def diskcache_memoize() -> Callable[[object], object]:
            # Its own directory under /dev/shm when there is one: the fairest disk for it.
            base = "/dev/shm" if os.path.isdir("/dev/shm") else None
            store = diskcache.Cache(tempfile.mkdtemp(prefix="bench-diskcache-", dir=base))
            return store.memoize()(identity)

        makers["diskcache"] = diskcache_memoize
    except ImportError:
        pass
    try:
        import moka_py

        makers["moka_py"] = lambda: moka_py.cached(maxsize=MAX_SIZE)(identity)
    except ImportError:
        pass
    return makers


def zipf_trace(n_keys: int, alpha: float, calls: int, seed: int) -> list[int]:
    """`calls` keys drawn from a Zipf(alpha) distribution over `n_keys` keys."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, n_keys + 1)]
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    ranks = [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(calls)]
    # Keys are shuffled ranks so that popularity is not correlated with the key's value.
    keys = list(range(n_keys))
    rng.shuffle(keys)
    return [keys[r] for r in ranks]


def run_pass(fn: Callable[[object], object], trace: list[int]) -> float:
    start = time.perf_counter()
    for key in trace:
        fn(key)
    return time.perf_counter() - start


def measure(
    name: str, trace: list[int], warm: list[int], rounds: int, seed: int
) -> dict[str, float]:
    """Median nanoseconds per call for each contender over interleaved rounds."""
    makers = contenders()
    fns = {label: make() for label, make in makers.items()}
    for fn in fns.values():
        for key in warm:
            fn(key)
    samples: dict[str, list[float]] = {label: [] for label in fns}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for label in order:
            samples[label].append(run_pass(fns[label], trace))
    return {label: statistics.median(s) / len(trace) * 1e9 for label, s in samples.items()}


def table(title: str, results: dict[str, float]) -> list[str]:
    base = results["lru_cache"]
    memory = results["warp_cache"]
    lines = [
        f"### {title}",
        "",
        "| cache | ns per call | calls/s | speed vs lru_cache | speed vs warp_cache memory |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, ns in sorted(results.items(), key=lambda kv: kv[1]):
        lines.append(
            f"| {label} | {ns:.1f} | {1e9 / ns:,.0f} | {base / ns:.2f}x | {memory / ns:.2f}x |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", help="also write the Markdown report to this file")
    args = parser.parse_args()
    # Shared-backend files of this run go to a private directory, removed afterwards.
    os.environ.setdefault("WARP_CACHE_DIR", os.path.join(tempfile.mkdtemp(), "warp_cache"))

    gil = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "GIL"
    header = [
        f"Python {platform.python_version()} ({gil}), {platform.machine()}, "
        f"{args.rounds} interleaved rounds of {args.calls:,} calls, median round.",
        "Times include the benchmark loop itself (about the same for every contender).",
        "",
    ]
    hot_keys = list(range(MAX_SIZE))
    hits = [random.Random(args.seed).choice(hot_keys) for _ in range(args.calls)]
    zipf = zipf_trace(DISTINCT_KEYS, 1.0, args.calls, args.seed)
    report = header
    report += table(
        f"Hits only ({MAX_SIZE} warm keys, max_size={MAX_SIZE})",
        measure("hits", hits, hot_keys, args.rounds, args.seed),
    )
    report += table(
        f"Zipf alpha=1.0 over {DISTINCT_KEYS:,} keys, max_size={MAX_SIZE} (hits and misses)",
        measure("zipf", zipf, [], args.rounds, args.seed),
    )
    text = "\n".join(report)
    print(text)
    if args.write:
        with open(args.write, "w") as out:
            out.write(text + "\n")
    if "lru_cache" not in contenders():
        sys.exit("lru_cache missing?")


if __name__ == "__main__":
    main()
