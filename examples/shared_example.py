"""Processes share one cache: what one worker computed is a hit in the others.

Two spawned worker processes and this one use `backend="shared"`; the files live in
/dev/shm (Linux) or $TMPDIR/warp_cache (macOS), one pair per function.
"""

import multiprocessing
import os
import sys
import time

from warp_cache import cache


@cache(max_size=1024, backend="shared")
def slow_square(x: int) -> int:
    time.sleep(0.2)  # stands in for an expensive computation
    return x * x


def timed(x: int) -> tuple[int, int, float]:
    start = time.perf_counter()
    value = slow_square(x)
    return os.getpid(), value, (time.perf_counter() - start) * 1000


def main() -> None:
    if sys.platform == "win32":
        print("the shared backend needs Linux or macOS")
        return
    slow_square.cache_clear()  # a fresh start for the demo, in every process
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        print("first round, computed by the workers:")
        for pid, value, ms in pool.map(timed, range(4)):
            print(f"  pid {pid}: {value:3d} in {ms:7.1f} ms")
        print("second round, read from the shared cache:")
        for pid, value, ms in pool.map(timed, range(4)):
            print(f"  pid {pid}: {value:3d} in {ms:7.3f} ms")
    pid, value, ms = timed(3)
    print(f"and this process (pid {pid}): {value} in {ms:.3f} ms")
    print(slow_square.cache_info())


if __name__ == "__main__":
    main()
