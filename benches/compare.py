"""Throughput of warp_cache and its peers in one process, workload by workload.

Every contender wraps the same trivial function, so what is measured is the cache itself.
Rounds are interleaved (each round runs every contender once, in a shuffled order) and the
median round is reported, because this machine is shared and noisy: only ratios measured in
the same run are meaningful. A peer whose package is missing is skipped and listed so.

Workloads: hits only; misses only (a stream of always-new keys: insert + evict); Zipf
alpha 0.8, 1.0, 1.2 (hits and misses); hits with a TTL on; hits called with keyword
arguments; hits of an `async def` awaited in one event loop.

    python benches/compare.py [--quick] [--rounds 11] [--calls 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import warp_cache
from common import DISTINCT_KEYS, MAX_SIZE, identity, machine, machine_line, write_json, zipf_trace

TTL = 3600.0  # seconds: long enough that no entry expires during a run
SLOW_SHARE = 20  # diskcache replays 1/20 of each trace (it runs at microseconds per call)

Fn = Callable[..., Any]


def kw(a: object, b: object) -> object:
    return a


async def aidentity(x: object) -> object:
    return x


def diskcache_memoize(fn: Fn, **options: Any) -> Fn:
    import diskcache

    # Its own directory under /dev/shm when there is one: the fairest disk for it.
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    store = diskcache.Cache(tempfile.mkdtemp(prefix="bench-diskcache-", dir=base))
    return store.memoize(**options)(fn)


def manual_async(fn: Callable[[object], Awaitable[object]]) -> Fn:
    """The baseline for async: a dict in front of the coroutine, no eviction, no locking."""
    store: dict[object, object] = {}

    async def cached(x: object) -> object:
        try:
            return store[x]
        except KeyError:
            value = store[x] = await fn(x)
            return value

    return cached


def makers(kind: str) -> dict[str, Callable[[], Fn]]:
    """Factories of a fresh cached function per contender, for one kind of workload. A
    factory raising ImportError (peer not installed) or NotImplementedError (the peer has no
    such feature) is skipped and reported."""
    fn: Fn = {"plain": identity, "ttl": identity, "kwargs": kw, "async": aidentity}[kind]
    ttl = TTL if kind == "ttl" else None

    def warp(**options: Any) -> Callable[[], Fn]:
        return lambda: warp_cache.cache(max_size=MAX_SIZE, ttl=ttl, **options)(fn)

    def lru() -> Fn:
        if kind == "async":
            raise NotImplementedError("caches the coroutine object, which can be awaited once")
        return functools.lru_cache(maxsize=MAX_SIZE)(fn)

    def cachetools_() -> Fn:
        import cachetools

        if kind == "async":
            raise NotImplementedError("no async support")
        store = cachetools.TTLCache(MAX_SIZE, ttl=TTL) if ttl else cachetools.LRUCache(MAX_SIZE)
        return cachetools.cached(store)(fn)

    def cachebox_() -> Fn:
        import cachebox

        store = cachebox.TTLCache(MAX_SIZE, TTL) if ttl else cachebox.LRUCache(MAX_SIZE)
        return cachebox.cached(store)(fn)

    def moka() -> Fn:
        import moka_py

        return moka_py.cached(maxsize=MAX_SIZE, ttl=ttl)(fn)

    def diskcache_() -> Fn:
        if kind == "async":
            raise NotImplementedError("no async support")
        return diskcache_memoize(fn, expire=ttl)

    out: dict[str, Callable[[], Fn]] = {
        "warp_cache": warp(),
        "warp_cache (shared)": warp(backend="shared"),
        "lru_cache (no TTL)" if ttl else "lru_cache": lru,
        "cachetools": cachetools_,
        "cachebox": cachebox_,
        "moka_py": moka,
        "diskcache": diskcache_,
    }
    if kind == "async":
        out["dict (manual)"] = lambda: manual_async(aidentity)
    return out


def run_plain(fn: Fn, trace: list[int]) -> float:
    start = time.perf_counter()
    for key in trace:
        fn(key)
    return time.perf_counter() - start


def run_kwargs(fn: Fn, trace: list[int]) -> float:
    start = time.perf_counter()
    for key in trace:
        fn(a=key, b=1)
    return time.perf_counter() - start


def run_async(fn: Fn, trace: list[int]) -> float:
    async def drive() -> float:
        start = time.perf_counter()
        for key in trace:
            await fn(key)
        return time.perf_counter() - start

    return asyncio.run(drive())


@dataclass
class Workload:
    key: str
    title: str
    kind: str
    traces: Callable[[int], list[int]]  # round -> trace (a round may need fresh keys)
    warm: list[int]
    runner: Callable[[Fn, list[int]], float] = run_plain
    slow_ok: bool = True  # whether diskcache takes part (its misses are not comparable)
    results: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def measure(work: Workload, rounds: int, seed: int) -> None:
    """Median nanoseconds per call for each contender over interleaved rounds."""
    fns: dict[str, Fn] = {}
    for label, make in makers(work.kind).items():
        if label == "diskcache" and not work.slow_ok:
            work.skipped[label] = "not in this workload (no entry-count bound to evict by)"
            continue
        try:
            fns[label] = make()
        except ImportError as error:
            work.skipped[label] = f"not installed ({error.name})"
        except NotImplementedError as error:
            work.skipped[label] = str(error)
        except Exception as error:  # a peer whose API changed: skip it, say why
            work.skipped[label] = f"failed to set up: {type(error).__name__}: {error}"
    for label, fn in fns.items():
        warm = work.warm[: len(work.warm) // SLOW_SHARE] if label == "diskcache" else work.warm
        if work.kind == "async":
            asyncio.run(_warm_async(fn, warm))
        elif work.kind == "kwargs":
            for key in warm:
                fn(a=key, b=1)
        else:
            for key in warm:
                fn(key)
    samples: dict[str, list[float]] = {label: [] for label in fns}
    rng = random.Random(seed)
    for r in range(rounds):
        trace = work.traces(r)
        order = list(fns)
        rng.shuffle(order)
        for label in order:
            replay = trace[: len(trace) // SLOW_SHARE] if label == "diskcache" else trace
            samples[label].append(work.runner(fns[label], replay) / len(replay))
    work.results = {label: statistics.median(s) * 1e9 for label, s in samples.items()}


async def _warm_async(fn: Fn, keys: list[int]) -> None:
    for key in keys:
        await fn(key)


def workloads(calls: int, seed: int, only: set[str] | None) -> list[Workload]:
    hot = list(range(MAX_SIZE))
    rng = random.Random(seed)
    hits = [rng.choice(hot) for _ in range(calls)]

    def fresh(r: int) -> list[int]:
        # Never seen before by any contender: every call misses, inserts and evicts.
        start = 10**9 + r * calls
        return list(range(start, start + calls))

    out = [
        Workload(
            "hits",
            f"Hits only ({MAX_SIZE} warm keys, max_size={MAX_SIZE})",
            "plain",
            lambda r: hits,
            hot,
        ),
        Workload(
            "misses",
            f"Misses only (always-new int keys: insert + evict, max_size={MAX_SIZE})",
            "plain",
            fresh,
            [10**8 + i for i in range(MAX_SIZE)],
            slow_ok=False,
        ),
    ]
    for alpha in (0.8, 1.0, 1.2):
        trace = zipf_trace(DISTINCT_KEYS, alpha, calls, seed)
        out.append(
            Workload(
                f"zipf-{alpha}",
                f"Zipf alpha={alpha} over {DISTINCT_KEYS:,} keys, max_size={MAX_SIZE} "
                "(hits and misses)",
                "plain",
                lambda r, t=trace: t,
                trace,
                slow_ok=False,
            )
        )
    out += [
        Workload(
            "ttl",
            f"Hits with a TTL on (ttl={TTL:.0f} s, {MAX_SIZE} warm keys)",
            "ttl",
            lambda r: hits,
            hot,
        ),
        Workload(
            "kwargs",
            f"Hits called with keywords: f(a=key, b=1) ({MAX_SIZE} warm keys)",
            "kwargs",
            lambda r: hits,
            hot,
            runner=run_kwargs,
        ),
        Workload(
            "async",
            f"Async hits: await f(key) in one event loop ({MAX_SIZE} warm keys)",
            "async",
            lambda r: hits,
            hot,
            runner=run_async,
        ),
    ]
    return [w for w in out if only is None or w.key in only]


def table(work: Workload) -> list[str]:
    base_label = next((b for b in ("lru_cache", "dict (manual)") if b in work.results), None)
    lines = [f"### {work.title}", ""]
    header = "| cache | ns per call | calls/s | speed vs warp_cache memory |"
    if base_label:
        header += f" speed vs {base_label} |"
    lines += [header, "|---|---:|---:|---:|" + ("---:|" if base_label else "")]
    memory = work.results.get("warp_cache")
    for label, ns in sorted(work.results.items(), key=lambda kv: kv[1]):
        row = f"| {label} | {ns:,.1f} | {1e9 / ns:,.0f} | "
        row += f"{memory / ns:.2f}x |" if memory else "- |"
        if base_label:
            row += f" {work.results[base_label] / ns:.2f}x |"
        lines.append(row)
    for label, why in work.skipped.items():
        lines.append(f"\nNot measured: {label}: {why}.")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~20x smaller, for development")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="comma-separated workload keys (default: all)")
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--write", help="write the Markdown tables to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 3, args.calls // 20
    # Shared-backend files of this run go to a private directory.
    os.environ.setdefault("WARP_CACHE_DIR", os.path.join(tempfile.mkdtemp(), "warp_cache"))

    meta = machine()
    meta.update(rounds=args.rounds, calls=args.calls, slow_share=SLOW_SHARE, max_size=MAX_SIZE)
    only = set(args.only.split(",")) if args.only else None
    report = [
        machine_line(meta),
        f"{args.rounds} interleaved rounds of {args.calls:,} calls, median round "
        f"(diskcache: 1/{SLOW_SHARE} of the calls).",
        "",
    ]
    done = []
    for work in workloads(args.calls, args.seed, only):
        started = time.perf_counter()
        measure(work, args.rounds, args.seed)
        report += table(work)
        print("\n".join(table(work)), f"({time.perf_counter() - started:.1f} s)", flush=True)
        done.append(
            {
                "key": work.key,
                "title": work.title,
                "ns": work.results,
                "skipped": work.skipped,
            }
        )
    write_json(args.json, {"meta": meta, "workloads": done})
    if args.write:
        with open(args.write, "w") as out:
            out.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
