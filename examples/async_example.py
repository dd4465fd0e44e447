"""Caching an async function: hits come back without running the coroutine again.

Run with: python examples/async_example.py
"""

import asyncio
import time

from warp_cache import cache


@cache(max_size=256, ttl=30.0)
async def fetch_profile(user_id: int) -> dict[str, object]:
    """Stand-in for a network call."""
    await asyncio.sleep(0.1)
    return {"id": user_id, "name": f"user-{user_id}"}


async def main() -> None:
    start = time.perf_counter()
    profiles = await asyncio.gather(*(fetch_profile(i) for i in range(5)))
    print(f"5 misses, run concurrently: {time.perf_counter() - start:.3f} s")
    print("first profile:", profiles[0])

    start = time.perf_counter()
    again = [await fetch_profile(i) for i in range(5)]
    print(f"5 hits, one after another: {(time.perf_counter() - start) * 1000:.3f} ms")
    assert again == profiles

    print(fetch_profile.cache_info())


if __name__ == "__main__":
    asyncio.run(main())
