"""One cache shared by many threads, with no locking in user code.

Run with: python examples/threads_example.py
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from warp_cache import cache


@cache(max_size=1000)
def collatz_steps(n: int) -> int:
    """Steps for n to reach 1 in the Collatz sequence (recursive through the cache)."""
    if n == 1:
        return 0
    return 1 + collatz_steps(n // 2 if n % 2 == 0 else 3 * n + 1)


def steps_for(numbers: list[int]) -> list[int]:
    return [collatz_steps(n) for n in numbers]


def main() -> None:
    numbers = [n % 500 + 1 for n in range(80_000)]
    chunks = [numbers[i : i + 10_000] for i in range(0, len(numbers), 10_000)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        steps = [s for chunk_steps in pool.map(steps_for, chunks) for s in chunk_steps]
    elapsed = time.perf_counter() - start

    longest = max(range(len(numbers)), key=steps.__getitem__)
    print(f"{len(numbers):,} calls on 8 threads in {elapsed * 1000:.1f} ms")
    print(f"longest chain below 500: {numbers[longest]} takes {steps[longest]} steps")
    print(collatz_steps.cache_info())

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print("GIL enabled:", gil)


if __name__ == "__main__":
    main()
