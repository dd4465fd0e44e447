"""Memory per entry: resident-set growth while a cache fills with 1M entries.

Each measurement runs in a fresh interpreter: build the keys first (they exist before and
after, so they are not counted), read the resident set size from /proc/self/statm, fill a
cache of max_size = entries through `identity` (the value is the key object itself, so no
value is allocated either), read it again. The difference divided by the number of entries
is the cache's own cost per entry: hash table, slots, bookkeeping. Keys: small ints, and
20-character strs. A plain dict (key -> value) is shown as the floor. Linux only.

    python benches/memory.py [--quick] [--entries 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from common import identity, machine, machine_line, write_json

CACHES = ["warp_cache", "lru_cache", "dict (floor)"]
KEYS = ["int", "str20"]
REPEATS = 3


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(cache: str, keys_kind: str, entries: int) -> float:
    """Bytes per entry for one cache, in this (fresh) process."""
    if keys_kind == "int":
        keys: list[object] = list(range(1_000_000, 1_000_000 + entries))
    else:
        keys = [f"key-{i:016d}" for i in range(entries)]  # 20 characters each
    table: dict[object, object] = {}
    fn: Callable[[object], object] = table.__getitem__
    if cache == "warp_cache":
        import warp_cache

        fn = warp_cache.cache(max_size=entries)(identity)
    elif cache == "lru_cache":
        fn = functools.lru_cache(maxsize=entries)(identity)
    # First-call allocations (a table, a node) are not per entry.
    fn(keys[0]) if cache != "dict (floor)" else table.setdefault(keys[0], keys[0])
    gc.collect()
    before = rss_bytes()
    if cache == "dict (floor)":
        for key in keys:
            table[key] = key
    else:
        for key in keys:
            fn(key)
    after = rss_bytes()
    return (after - before) / (entries - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~20x smaller, for development")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--one", nargs=2, metavar=("CACHE", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.entries //= 20
    if args.one:
        print(one(args.one[0], args.one[1], args.entries))
        return
    meta = machine()
    meta.update(entries=args.entries, repeats=REPEATS)
    print(machine_line(meta), flush=True)
    if not os.path.exists("/proc/self/statm"):
        print("no /proc/self/statm: memory per entry is measured on Linux only")
        write_json(args.json, {"meta": meta, "rows": [], "skipped": "no /proc/self/statm"})
        return
    rows: list[dict[str, Any]] = []
    here = os.path.abspath(__file__)
    for keys_kind in KEYS:
        for cache in CACHES:
            samples = []
            for _ in range(REPEATS):
                out = subprocess.run(
                    [
                        sys.executable,
                        here,
                        "--entries",
                        str(args.entries),
                        "--one",
                        cache,
                        keys_kind,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                samples.append(float(out.stdout.strip()))
            per_entry = statistics.median(samples)
            rows.append({"cache": cache, "keys": keys_kind, "bytes_per_entry": per_entry})
            print(f"{cache:14} {keys_kind:6} {per_entry:8.1f} bytes/entry", flush=True)
    write_json(args.json, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
