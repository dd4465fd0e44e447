"""Heavier thread stress for both backends (run on 3.11 and, with the GIL off, on 3.13t).

8 threads x 40,000 mixed calls each: every returned value is checked, the counters add up
exactly, and the size bound holds; `cache_clear()` races readers. The large memory cache is
sharded on free-threaded builds, so the cross-shard eviction paths run here too.
"""

from __future__ import annotations

import random
import threading

import pytest
from warp_cache import cache

THREADS = 8
CALLS = 40_000


def hammer(fn, keys: int, expect, clear_every: int = 0) -> int:
    """Runs THREADS threads of CALLS calls on `fn`; returns the number of calls made."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        try:
            for n in range(CALLS):
                key = int(rng.paretovariate(1.0)) % keys
                got = fn(key) if n % 3 else fn(key, scale=2)
                assert got == expect(key, 1 if n % 3 else 2), (key, got)
                if clear_every and seed == 0 and n % clear_every == 0:
                    fn.cache_clear()
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a stress thread hung"
    if errors:
        raise errors[0]
    return THREADS * CALLS


def expected(key: int, scale: int) -> tuple[int, str]:
    return (key * scale, f"k{key}")


@pytest.mark.parametrize("max_size", [64, 20_000])
def test_memory_backend_under_eight_threads(max_size):
    @cache(max_size=max_size)
    def f(key, scale=1):
        return expected(key, scale)

    calls = hammer(f, keys=5_000, expect=expected)
    info = f.cache_info()
    assert info.hits + info.misses == calls
    assert info.current_size <= max_size
    assert info.hits > calls // 3


def test_shared_backend_under_eight_threads():
    @cache(max_size=64, backend="shared")
    def f(key, scale=1):
        return expected(key, scale)

    calls = hammer(f, keys=5_000, expect=expected)
    info = f.cache_info()
    assert info.hits + info.misses == calls
    assert info.current_size <= 64
    assert info.hits > 0


@pytest.mark.parametrize("backend", ["memory", "shared"])
def test_cache_clear_racing_readers(backend):
    @cache(max_size=128, backend=backend)
    def f(key, scale=1):
        return expected(key, scale)

    hammer(f, keys=500, expect=expected, clear_every=997)
    assert f.cache_info().current_size <= 128
