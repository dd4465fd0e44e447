"""A process calling shared-backend caches at the same moment as others, driven by
tests/test_cross_flight.py.

    python flight_worker.py SCENARIO LOG GO [ARGS]

Every process waits for the file GO to exist (so that all start together), then runs the
scenario and prints one JSON line. Each computation appends a line to LOG (O_APPEND: whole
lines from any number of processes), so the test counts what ran where. The cached bodies
are the same in every process (so they share one cache); what differs is the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time

from warp_cache import cache

LOG = sys.argv[2] if len(sys.argv) > 2 else os.devnull


def log(event: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@cache(max_size=64, backend="shared", version=1)
def slow(key: int) -> dict[str, int]:
    """Logs `start`, sleeps WC_DELAY seconds, logs `done`."""
    log("start")
    time.sleep(float(os.environ.get("WC_DELAY", "0.5")))
    log("done")
    return {"key": key, "double": 2 * key}


@cache(max_size=64, backend="shared", ttl=0.3, version=1)
def brief(key: int) -> int:
    """Entries live 0.3 s; computing takes 0.5 s."""
    log("start")
    time.sleep(0.5)
    return 4 * key


@cache(max_size=64, backend="shared", version=1)
def flaky(key: int) -> int:
    """Raises the first time any process computes it (a marker file remembers), then works."""
    marker = LOG + ".raised"
    log("start")
    time.sleep(0.3)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return 3 * key
    os.close(fd)
    raise ValueError("first try fails")


@cache(max_size=64, backend="shared", version=1)
def crossed(key: int) -> int:
    """In the process whose WC_FIRST is `key`, computing it needs the other key: two
    processes starting from different keys wait on each other's flight."""
    log(f"start{key}")
    if int(os.environ["WC_FIRST"]) == key:
        time.sleep(0.3)
        return crossed(3 - key) + 100
    return key * 10


@cache(max_size=64, backend="shared", version=1)
def big(key: int) -> bytes:
    """A result too large to store."""
    log("start")
    time.sleep(0.3)
    return b"x" * 100_000


@cache(max_size=64, backend="shared", version=1)
async def aslow(key: int) -> int:
    log("start")
    await asyncio.sleep(float(os.environ.get("WC_DELAY", "0.5")))
    return 5 * key


def wait_for_go(go: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no go")
        time.sleep(0.001)


def threads(n: int, fn, *args) -> list[object]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = f"{type(exc).__name__}: {exc}"

    workers = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def main() -> None:
    # Ctrl-C raises KeyboardInterrupt even if this process was started with SIGINT ignored
    # (as a shell starts background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    scenario, go = sys.argv[1], sys.argv[3]
    args = [int(a) for a in sys.argv[4:]]
    log("ready")
    wait_for_go(go)
    began = time.monotonic()
    if scenario == "stampede":
        results: object = threads(args[0], slow, 7)
    elif scenario == "one":
        results = [slow(args[0])]
    elif scenario == "clear":
        slow.cache_clear()
        log("cleared")
        time.sleep(float(os.environ["WC_DELAY"]))  # until the flight it cleared has landed
        results = []
    elif scenario == "brief":
        results = threads(2, brief, 6)
        time.sleep(0.5)  # expired now: the next call computes again, once for everyone
        results += threads(2, brief, 6)
    elif scenario == "flaky":
        results = threads(1, flaky, 5)
    elif scenario == "crossed":
        results = [crossed(int(os.environ["WC_FIRST"]))]
    elif scenario == "big":
        results = threads(2, big, 1)
        results = [len(r) if isinstance(r, bytes) else r for r in results]
    elif scenario == "async":

        async def gather() -> list[int]:
            return list(await asyncio.gather(*(aslow(9) for _ in range(args[0]))))

        results = asyncio.run(gather())
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    fn = {"flaky": flaky, "crossed": crossed, "big": big, "async": aslow, "brief": brief}.get(
        scenario, slow
    )
    print(
        json.dumps(
            {
                "results": results,
                "seconds": time.monotonic() - began,
                "info": fn.cache_info()._asdict(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
