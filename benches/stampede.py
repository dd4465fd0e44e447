"""A cold-start stampede: 8 processes start at once on 100 keys of a 20 ms function.

Each process calls the function on every key, in one of two orders: all the same order (the
worst case: every key is missed by every process at once) or each its own shuffled order
(workers serving different requests). Counted: how many times the function ran in all, and
the wall time from the common start until the last process finished. Caches: warp_cache's
shared backend with single-flight across processes, the same with it turned off
(`WARP_CACHE_CROSS_FLIGHT=0`: what the shared backend did before), and diskcache's
`memoize` (no stampede protection). Each cell is the median of the rounds.

    python benches/stampede.py [--quick] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, write_json

PROCESSES = 8
KEYS = 100
SECONDS = 0.020
CACHES = [
    "warp_cache shared, single-flight across processes",
    "warp_cache shared, each process on its own",
    "diskcache memoize",
]
ORDERS = ["same order", "shuffled per process"]


def worker(cache: str, directory: str, order: str, seed: int, go: str, log: str) -> None:
    """One process: waits for `go`, then calls the function on every key."""

    def slow(key: int) -> int:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)
        time.sleep(SECONDS)
        return key * key

    if cache.startswith("warp_cache"):
        import warp_cache

        fn = warp_cache.cache(max_size=1024, backend="shared", version=1)(slow)
    else:
        import diskcache  # type: ignore[import-untyped]

        fn = diskcache.Cache(directory).memoize()(slow)
    keys = list(range(KEYS))
    if order != "same order":
        random.Random(seed).shuffle(keys)
    while not os.path.exists(go):
        time.sleep(0.0005)
    for key in keys:
        assert fn(key) == key * key
    print(time.monotonic(), flush=True)


def one_round(cache: str, order: str, keys: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="warp_cache_stampede-") as tmp:
        go, log = os.path.join(tmp, "go"), os.path.join(tmp, "log")
        env = {**os.environ, "WARP_CACHE_DIR": os.path.join(tmp, "shm")}
        if "on its own" in cache:
            env["WARP_CACHE_CROSS_FLIGHT"] = "0"
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", cache, tmp, order, str(seed), go, log],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for seed in range(PROCESSES)
        ]
        time.sleep(1.0)  # every process imported and decorated
        start = time.monotonic()
        Path(go).touch()
        ends = [float(p.communicate()[0].split()[-1]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        return {"computations": Path(log).stat().st_size, "seconds": max(ends) - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        cache, directory, order, seed, go, log = args.worker
        worker(cache, directory, order, int(seed), go, log)
        return
    meta = machine()
    print(machine_line(meta))
    caches = list(CACHES)
    try:
        import diskcache  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        caches.remove("diskcache memoize")
    rounds = 1 if args.quick else args.rounds
    results: dict[str, dict[str, dict[str, float]]] = {}
    for cache in caches:
        for order in ORDERS:
            runs = [one_round(cache, order, KEYS) for _ in range(rounds)]
            cell = {
                "computations": statistics.median(r["computations"] for r in runs),
                "seconds": statistics.median(r["seconds"] for r in runs),
            }
            results.setdefault(cache, {})[order] = cell
            print(f"{cache:52} {order:22} {json.dumps(cell)}", flush=True)
    write_json(
        args.json,
        {
            "meta": meta,
            "processes": PROCESSES,
            "keys": KEYS,
            "seconds_per_call": SECONDS,
            "rounds": rounds,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
