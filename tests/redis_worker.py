"""A host of the Redis tier's tests: a process with its own near cache of `work`.

Run as ``python -c "import redis_worker; redis_worker.main()" COMMAND ...`` so that the
function's module is ``redis_worker`` in every process (the tests import it too, as one
more host). The server comes from ``WARP_CACHE_REDIS_URL``; each computation appends a line
to the file named by ``WARP_CACHE_TEST_LOG`` (read at call time, so the function's identity
does not depend on it) and takes ``WARP_CACHE_TEST_DELAY`` seconds.

Commands (results are printed as one JSON line):
- ``call X...``: the results of ``work(X)`` for each integer X, and the cache_info;
- ``call-at T X...``: the same, starting at time.time() == T (a stampede's start line);
- ``clear``: ``work.cache_clear()``, then the time it returned;
- ``serve``: reads such commands from stdin, one a line, until EOF.
"""

from __future__ import annotations

import json
import os
import sys
import time

from warp_cache import _redis, cache

if os.environ.get("WARP_CACHE_TEST_LEASE"):
    _redis.LOCK_LEASE = float(os.environ["WARP_CACHE_TEST_LEASE"])


def record(x: object) -> None:
    """Logs one computation of `x` (read back by test_redis.computations)."""
    with open(os.environ["WARP_CACHE_TEST_LOG"], "a") as log:
        log.write(f"{os.getpid()} {x!r}\n")


@cache(max_size=64, backend="redis")
def work(x: int) -> dict[str, object]:
    record(x)
    time.sleep(float(os.environ.get("WARP_CACHE_TEST_DELAY", "0")))
    return {"x": x, "double": 2 * x, "pid": os.getpid()}


def run(command: list[str]) -> object:
    name, args = command[0], command[1:]
    if name == "call-at":
        time.sleep(max(0.0, float(args[0]) - time.time()))
        name, args = "call", args[1:]
    if name == "call":
        results = [work(int(x)) for x in args]
        return {"results": results, "info": list(work.cache_info())}
    if name == "clear":
        work.cache_clear()
        return {"cleared_at": time.time()}
    raise SystemExit(f"unknown command {name!r}")


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            print(json.dumps(run(line.split())), flush=True)
        return
    print(json.dumps(run(sys.argv[1:])), flush=True)
