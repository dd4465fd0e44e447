"""Hit ratio of warp_cache against exact SIEVE and LRU simulations at equal size.

The same key trace goes through (1) a warp_cache-decorated function, whose hits and misses
are read from `cache_info()`, (2) a reference SIEVE written here from the algorithm's
definition, (3) an LRU (an OrderedDict). Traces: Zipf over a key space, and the same Zipf
with periodic sequential scans of keys that never repeat (the case SIEVE is designed for).
With the GIL a cache is one shard, so warp_cache must match exact SIEVE to the hit; on
free-threaded builds caches above 1,024 entries are split into shards, each running SIEVE
on its own, and the difference to exact SIEVE (percentage points) is what is reported.

    python benches/hit_ratio.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import warp_cache
from common import identity, machine, machine_line, write_json, zipf_trace

SINGLE_SHARD_MAX = 1024  # mirrors src/py/memory_backend.rs: larger caches are sharded


def shards_of(max_size: int, free_threaded: bool) -> int:
    """As `shard_count` there, rounded up to a power of two as `Store::new` does."""
    if free_threaded and max_size > SINGLE_SHARD_MAX:
        wanted = max(1, min(16, max_size // SINGLE_SHARD_MAX))
        return 1 << (wanted - 1).bit_length()
    return 1


class Sieve:
    """SIEVE as published: a queue from newest (head) to oldest (tail), one visited bit per
    entry, a hand that walks from the tail toward the head clearing bits and evicts the
    first unvisited entry, then rests on the entry newer than the victim."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.visited: dict[object, bool] = {}
        self.newer: dict[object, object] = {}
        self.older: dict[object, object] = {}
        self.head: object = None  # newest
        self.tail: object = None  # oldest
        self.hand: object = None
        self.hits = self.misses = 0

    def access(self, key: object) -> None:
        visited = self.visited
        if key in visited:
            self.hits += 1
            visited[key] = True
            return
        self.misses += 1
        if self.size == 0:
            return
        if len(visited) >= self.size:
            self._evict()
        visited[key] = False
        self.older[key] = self.head
        self.newer[key] = None
        if self.head is not None:
            self.newer[self.head] = key
        self.head = key
        if self.tail is None:
            self.tail = key

    def _evict(self) -> None:
        at = self.tail if self.hand is None else self.hand
        visited = self.visited
        while visited[at]:
            visited[at] = False
            at = self.newer[at]
            if at is None:
                at = self.tail
        self.hand = self.newer[at]
        newer, older = self.newer.pop(at), self.older.pop(at)
        del visited[at]
        if newer is None:
            self.head = older
        else:
            self.older[newer] = older
        if older is None:
            self.tail = newer
        else:
            self.newer[older] = newer


class Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[object, None] = OrderedDict()
        self.hits = self.misses = 0

    def access(self, key: object) -> None:
        entries = self.entries
        if key in entries:
            self.hits += 1
            entries.move_to_end(key)
            return
        self.misses += 1
        entries[key] = None
        if len(entries) > self.size:
            entries.popitem(last=False)


def ratio(hits: int, misses: int) -> float:
    return 100.0 * hits / max(1, hits + misses)


def simulate(trace: list[int], size: int) -> tuple[float, float, float]:
    """Hit ratios in percent: warp_cache, exact SIEVE, LRU."""
    fn = warp_cache.cache(max_size=size)(identity)
    for key in trace:
        fn(key)
    info = fn.cache_info()
    sieve, lru = Sieve(size), Lru(size)
    for key in trace:
        sieve.access(key)
    for key in trace:
        lru.access(key)
    return (
        ratio(info.hits, info.misses),
        ratio(sieve.hits, sieve.misses),
        ratio(lru.hits, lru.misses),
    )


def with_scans(
    trace: list[int], every: int, length: int, first_scan_key: int = 10**12
) -> list[int]:
    """The trace with a scan of `length` never-repeated keys inserted every `every` calls."""
    out: list[int] = []
    fresh = first_scan_key
    for start in range(0, len(trace), every):
        out += trace[start : start + every]
        out += range(fresh, fresh + length)
        fresh += length
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~20x smaller, for development")
    parser.add_argument("--json", help="write the results as JSON to this file")
    args = parser.parse_args()
    q = 20 if args.quick else 1
    meta = machine()
    free_threaded = meta["build"] == "free-threaded"
    print(machine_line(meta), flush=True)

    # Curves: one key space, several cache sizes (on free-threaded builds the ones above
    # 1,024 entries are sharded).
    keys, calls = 20_000 // q, 300_000 // q
    sizes = [s // q for s in (200, 500, 1_000, 2_000, 4_000, 8_000)]
    zipf08 = zipf_trace(keys, 0.8, calls, 11)
    zipf10 = zipf_trace(keys, 1.0, calls, 12)
    traces: list[tuple[str, str, list[int], Iterable[int]]] = [
        ("curve", f"Zipf 0.8 over {keys:,} keys, {calls:,} calls", zipf08, sizes),
        ("curve", f"Zipf 1.0 over {keys:,} keys, {calls:,} calls", zipf10, sizes),
        (
            "curve",
            f"Zipf 1.0 over {keys:,} keys + a scan of {1_000 // q:,} new keys every "
            f"{5_000 // q:,} calls",
            with_scans(zipf10, 5_000 // q, 1_000 // q),
            sizes,
        ),
    ]
    # The large cache of the issue: max_size 100,000 (16 shards on free-threaded builds).
    big_keys, big_calls, big = 1_000_000 // q, 1_500_000 // q, 100_000 // q
    big_zipf = zipf_trace(big_keys, 1.0, big_calls, 13)
    traces += [
        ("large", f"Zipf 1.0 over {big_keys:,} keys, {big_calls:,} calls", big_zipf, [big]),
        (
            "large",
            f"Zipf 1.0 over {big_keys:,} keys + a scan of {20_000 // q:,} new keys every "
            f"{50_000 // q:,} calls",
            with_scans(big_zipf, 50_000 // q, 20_000 // q),
            [big],
        ),
    ]
    rows: list[dict[str, Any]] = []
    for group, name, trace, trace_sizes in traces:
        for size in trace_sizes:
            started = time.perf_counter()
            warp, sieve, lru = simulate(trace, size)
            row = {
                "group": group,
                "trace": name,
                "calls": len(trace),
                "size": size,
                "shards": shards_of(size, free_threaded),
                "warp_cache": warp,
                "sieve": sieve,
                "lru": lru,
            }
            rows.append(row)
            print(
                f"{name:70} size {size:>7,} shards {row['shards']:>2}: warp {warp:6.2f}% "
                f"SIEVE {sieve:6.2f}% (diff {warp - sieve:+.2f} pt) LRU {lru:6.2f}% "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    write_json(args.json, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
