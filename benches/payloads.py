"""Hit cost by payload kind: memory backend, shared backend (repeated hit, and the first hit
of an entry another process wrote), with pickle.loads and diskcache as controls.

    python benches/payloads.py [--quick] [--json FILE]

Per payload, 256 warm keys, values built per key (mortal objects). "shared, first decode"
reads every entry through a second decoration of the same function: its decoded copies
are empty, as in a process that did not write the entries. Nanoseconds per call, best of
several rounds; all columns measured side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from common import machine, machine_line, write_json
from warp_cache import cache

KEYS = 256


def ten_field_dict(k: int) -> dict[str, Any]:
    return {
        "id": k,
        "name": f"user-{k}",
        "email": f"user{k}@example.com",
        "score": k * 1.5,
        "active": k % 2 == 0,
        "age": 20 + k % 50,
        "city": "Lisbon",
        "rank": k % 7,
        "ratio": 1 / (k + 1),
        "admin": False,
    }


PAYLOADS: dict[str, Callable[[int], object]] = {
    "int": lambda k: k * 1_000_003,
    "10-field dict": ten_field_dict,
    "list of 100 ints": lambda k: list(range(k, k + 100)),
    "3-level nested tuple": lambda k: (k, ("a", (k * 2.5, None, (b"x", k))), "z"),
}


def per_call(fn: Callable[[int], object], rounds: int) -> float:
    """Best ns per call over `rounds` passes over the keys."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for k in range(KEYS):
            fn(k)
        best = min(best, (time.perf_counter_ns() - start) / KEYS)
    return best


def shared_maker(make: Callable[[int], object]) -> Callable[[], Any]:
    def define() -> Any:
        @cache(max_size=1024, backend="shared", max_value_size=4096, version=1)
        def shared(k: int) -> object:
            return make(k)

        return shared

    return define


def measure(name: str, make: Callable[[int], object], rounds: int) -> dict[str, float]:
    memory = cache(max_size=1024)(make)
    define = shared_maker(make)
    shared = define()
    for k in range(KEYS):
        memory(k)
        shared(k)
    row = {
        "memory hit": per_call(memory, rounds),
        "shared repeated hit": per_call(shared, rounds),
    }
    # Each round a fresh decoration: every hit decodes.
    best = float("inf")
    for _ in range(rounds):
        fresh = define()
        start = time.perf_counter_ns()
        for k in range(KEYS):
            fresh(k)
        best = min(best, (time.perf_counter_ns() - start) / KEYS)
    row["shared first decode"] = best
    blobs = [pickle.dumps(make(k), protocol=5) for k in range(KEYS)]
    row["pickle.loads"] = per_call(lambda k: pickle.loads(blobs[k]), rounds)
    try:
        import diskcache  # type: ignore[import-untyped]
    except ImportError:
        return row
    with tempfile.TemporaryDirectory() as directory:
        disk = diskcache.Cache(directory)
        memoized = disk.memoize()(make)
        for k in range(KEYS):
            memoized(k)
        row["diskcache hit"] = per_call(memoized, max(1, rounds // 4))
        disk.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for development")
    parser.add_argument("--json", help="write the results as JSON to this file")
    args = parser.parse_args()
    rounds = 5 if args.quick else 40
    os.environ.setdefault("WARP_CACHE_DIR", tempfile.mkdtemp(prefix="warp_cache_bench-"))
    meta = machine()
    results = {name: measure(name, make, rounds) for name, make in PAYLOADS.items()}
    print(machine_line(meta))
    columns = list(next(iter(results.values())))
    print("| payload | " + " | ".join(columns) + " | shared repeated ÷ memory |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for name, row in results.items():
        cells = " | ".join(f"{row[c]:,.0f} ns" for c in columns)
        ratio = row["shared repeated hit"] / row["memory hit"]
        print(f"| {name} | {cells} | {ratio:.1f}x |")
    if args.json:
        write_json(args.json, {"meta": meta, "payloads": results})


if __name__ == "__main__":
    sys.exit(main())
