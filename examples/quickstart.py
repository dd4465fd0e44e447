"""Quickstart: cache a slow function and watch the second call come back instantly.

Run with: python examples/quickstart.py
"""

import time

from warp_cache import cache


@cache(max_size=128)
def slow_square(x: int) -> int:
    """Pretend to do expensive work."""
    time.sleep(0.2)
    return x * x


def timed(x: int) -> float:
    start = time.perf_counter()
    result = slow_square(x)
    elapsed = time.perf_counter() - start
    print(f"slow_square({x}) = {result:<4} took {elapsed * 1000:8.3f} ms")
    return elapsed


def main() -> None:
    first = timed(12)  # miss: runs the function
    second = timed(12)  # hit: served from the cache
    timed(13)  # a different argument is a new entry
    print(slow_square.cache_info())
    print(f"second call was {first / max(second, 1e-9):,.0f}x faster")

    slow_square.cache_clear()
    print("after cache_clear():", slow_square.cache_info())


if __name__ == "__main__":
    main()
