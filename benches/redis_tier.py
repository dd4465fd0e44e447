"""The Redis tier against the memory backend, redis-py itself and peers, on a local server.

Starts its own redis-server on a free loopback port (Debian's, scripts/ensure-redis.sh)
and measures, per call:

- near hits of backend="redis" against memory-backend hits;
- remote hits (a near miss that Redis serves): a second near cache of the same function
  reads what the first one wrote; against a bare redis-py GET (the client's floor) and
  redis-benchmark's GET latency (a C client: the server and loopback's floor);
- misses (nothing anywhere: look, lock, compute, publish);
- the same remote hits and misses through dogpile.cache's and cashews' Redis backends, when
  installed (`pip install dogpile.cache cashews`);
- a fleet-wide stampede: 8 processes calling the same 100 keys of a 20 ms function at once:
  how many computations and the wall time.

    python benches/redis_tier.py [--quick] [--json FILE]

(Not benches/redis.py: run from benches/, that name would hide the redis package.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, write_json

HITS = 200_000
KEYS = 2_000
STAMPEDE_PROCESSES = 8
STAMPEDE_KEYS = 100
STAMPEDE_SECONDS = 0.020


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: run scripts/ensure-redis.sh")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.01)
    raise SystemExit("redis-server did not start")


def per_call(fn, args: list[object]) -> float:
    """Nanoseconds per call of fn over args."""
    start = time.perf_counter_ns()
    for a in args:
        fn(a)
    return (time.perf_counter_ns() - start) / len(args)


def best(measure, rounds: int) -> float:
    return statistics.median(measure() for _ in range(rounds))


def warp_cache_rows(url: str, quick: bool) -> dict[str, float]:
    from warp_cache import cache

    n_hits = HITS // (20 if quick else 1)
    n_keys = KEYS // (20 if quick else 1)
    rows: dict[str, float] = {}

    def square(x: int) -> int:
        return x * x

    memory = cache(max_size=256)(square)
    near = cache(max_size=256, backend="redis", url=url)(square)
    for f in (memory, near):
        for k in range(100):
            f(k)
    trace = [k % 100 for k in range(n_hits)]
    rows["memory backend hit"] = best(lambda: per_call(memory, trace), 5)
    rows["redis backend near hit"] = best(lambda: per_call(near, trace), 5)

    def payload(x: int) -> dict[str, object]:
        return {"id": x, "name": f"user-{x}", "tags": ["a", "b"], "score": x / 3}

    keys = list(range(10_000, 10_000 + n_keys))
    writer = cache(max_size=n_keys, backend="redis", url=url, version="bench")(payload)
    rows["redis backend miss (look, lock, compute, publish)"] = per_call(writer, keys)
    reader = cache(max_size=n_keys, backend="redis", url=url, version="bench")(payload)
    rows["redis backend remote hit (near miss, Redis hit)"] = per_call(reader, keys)

    import redis

    client = redis.Redis.from_url(url)
    client.set("bench:k", b"x" * 100)
    rows["redis-py GET (the client's floor)"] = per_call(
        lambda _: client.get("bench:k"), list(range(n_keys))
    )
    return rows


def redis_benchmark_floor(port: int, quick: bool) -> float | None:
    """redis-benchmark's average GET latency with one connection, in ns."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    n = 2_000 if quick else 20_000
    out = subprocess.run(
        [binary, "-p", str(port), "-c", "1", "-n", str(n), "-t", "get", "-q", "--csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "test","rps","avg_latency_ms",...
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "GET" and len(cells) > 2:
            return float(cells[2]) * 1e6
    match = re.search(r"([\d.]+) requests per second", out)
    return 1e9 / float(match.group(1)) if match else None


def dogpile_rows(port: int, quick: bool) -> dict[str, float]:
    try:
        from dogpile.cache import make_region
    except ImportError:
        return {}
    n_keys = KEYS // (20 if quick else 1)
    rows: dict[str, float] = {}

    def payload(x: int) -> dict[str, object]:
        return {"id": x, "name": f"user-{x}", "tags": ["a", "b"], "score": x / 3}

    region = make_region().configure(
        "dogpile.cache.redis", arguments={"host": "127.0.0.1", "port": port, "db": 1}
    )
    cached = region.cache_on_arguments()(payload)
    keys = list(range(n_keys))
    rows["dogpile.cache miss"] = per_call(cached, keys)
    rows["dogpile.cache remote hit (no near cache)"] = per_call(cached, keys)
    return rows


def cashews_rows(port: int, quick: bool) -> dict[str, float]:
    try:
        from cashews import Cache
    except ImportError:
        return {}
    n_keys = KEYS // (20 if quick else 1)
    cache = Cache()
    cache.setup(f"redis://127.0.0.1:{port}/2")

    @cache(ttl="1h")
    async def payload(x: int) -> dict[str, object]:
        return {"id": x, "name": f"user-{x}", "tags": ["a", "b"], "score": x / 3}

    async def run(keys: list[int]) -> float:
        start = time.perf_counter_ns()
        for k in keys:
            await payload(k)
        return (time.perf_counter_ns() - start) / len(keys)

    async def both() -> dict[str, float]:
        keys = list(range(n_keys))
        miss = await run(keys)
        hit = await run(keys)
        return {"cashews miss (async)": miss, "cashews remote hit (async)": hit}

    return asyncio.run(both())


STAMPEDE_WORKER = """
import os, sys, time
from warp_cache import cache

@cache(max_size=1000, backend="redis", version="stampede")
def slow(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{x}\\n")
    time.sleep(%(seconds)r)
    return x * 2

go = float(sys.argv[1])
time.sleep(max(0.0, go - time.time()))
for k in range(%(keys)d):
    assert slow(k) == 2 * k
"""


def stampede(url: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "computed.log"
        script = STAMPEDE_WORKER % {"seconds": STAMPEDE_SECONDS, "keys": STAMPEDE_KEYS}
        env = {**os.environ, "WARP_CACHE_REDIS_URL": url, "LOG": str(log)}
        go = time.time() + 2.0
        procs = [
            subprocess.Popen([sys.executable, "-c", script, str(go)], env=env)
            for _ in range(STAMPEDE_PROCESSES)
        ]
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("a stampede worker failed")
        wall = time.time() - go
        computed = len(log.read_text().splitlines())
    return {"computations": computed, "wall seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp))
        url = f"redis://127.0.0.1:{port}/0"
        try:
            rows = warp_cache_rows(url, args.quick)
            floor = redis_benchmark_floor(port, args.quick)
            if floor is not None:
                rows["redis-benchmark GET, 1 connection (C client)"] = floor
            rows.update(dogpile_rows(port, args.quick))
            rows.update(cashews_rows(port, args.quick))
            storm = stampede(url)
        finally:
            proc.kill()
            proc.wait()
    print(machine_line(machine()))
    width = max(len(name) for name in rows)
    for name, ns in rows.items():
        print(f"{name:<{width}}  {ns / 1000:9.2f} us")
    print(
        f"stampede: {STAMPEDE_PROCESSES} processes x {STAMPEDE_KEYS} keys of "
        f"{STAMPEDE_SECONDS * 1000:.0f} ms: {storm['computations']} computations, "
        f"{storm['wall seconds']:.2f} s wall"
    )
    write_json(args.json, {"machine": machine(), "per_call_ns": rows, "stampede": storm})


if __name__ == "__main__":
    main()
