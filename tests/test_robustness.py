"""Re-entrancy and hostile keys: Python code running inside a lookup must not break the cache."""

from __future__ import annotations

import gc
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
from warp_cache import cache


class CollidingKey:
    """Distinct keys that all share one hash value."""

    def __init__(self, n):
        self.n = n

    def __hash__(self):
        return 7

    def __eq__(self, other):
        return isinstance(other, CollidingKey) and self.n == other.n

    def __repr__(self):
        return f"CollidingKey({self.n})"


def fib_reference(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_recursive_fibonacci_through_the_cache():
    @cache(max_size=1024)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(300) == fib_reference(300)
    info = fib.cache_info()
    assert info.misses == 301
    assert info.current_size == 301
    assert fib(300) == fib_reference(300)


def test_recursion_error_propagates_and_the_cache_still_works():
    @cache(max_size=100)
    def depth(n):
        return 0 if n == 0 else depth(n - 1) + 1

    with pytest.raises(RecursionError):
        depth(sys.getrecursionlimit() * 2)
    depth.cache_clear()
    assert depth(50) == 50
    assert depth(50) == 50
    assert depth.cache_info().current_size <= 100


def test_cache_clear_inside_the_cached_function():
    @cache(max_size=8)
    def f(x):
        f.cache_clear()
        return x * 2

    for i in range(20):
        assert f(i) == i * 2
    assert f.cache_info().current_size <= 8
    assert f(19) == 38


def test_cached_function_calling_itself_with_other_keys_under_eviction():
    @cache(max_size=2)
    def f(x):
        return x if x < 1 else f(x - 1) + f(x // 2) + 1

    def plain(x):
        return x if x < 1 else plain(x - 1) + plain(x // 2) + 1

    for x in range(40):
        assert f(x) == plain(x)
    assert f.cache_info().current_size <= 2


def test_key_whose_eq_calls_the_same_cached_function():
    counter = iter(range(10**6))

    class ReentrantKey:
        def __init__(self, n):
            self.n = n

        def __hash__(self):
            return 11

        def __eq__(self, other):
            # A fresh key each time: the nested call is a miss that inserts (and evicts)
            # while the outer lookup is still comparing.
            assert f(f"inner-{next(counter)}").startswith("inner-")
            return isinstance(other, ReentrantKey) and self.n == other.n

    @cache(max_size=4)
    def f(key):
        return key if isinstance(key, str) else key.n * 10

    for n in range(6):
        assert f(ReentrantKey(n)) == n * 10
    for n in range(6):
        assert f(ReentrantKey(n)) == n * 10
    assert f.cache_info().current_size <= 4


def test_key_whose_eq_clears_the_cache():
    class ClearingKey:
        def __init__(self, n):
            self.n = n

        def __hash__(self):
            return 5

        def __eq__(self, other):
            f.cache_clear()
            return isinstance(other, ClearingKey) and self.n == other.n

    @cache(max_size=16)
    def f(key):
        return key.n + 100

    for n in range(5):
        assert f(ClearingKey(n)) == n + 100
        assert f(ClearingKey(n)) == n + 100
    assert f.cache_info().current_size <= 16


class Flaky:
    """Hash or equality raise on demand."""

    fail_hash = False
    fail_eq = False

    def __init__(self, n):
        self.n = n

    def __hash__(self):
        if Flaky.fail_hash:
            raise ArithmeticError("hash failed")
        return 3

    def __eq__(self, other):
        if Flaky.fail_eq:
            raise LookupError("eq failed")
        return isinstance(other, Flaky) and self.n == other.n


def test_raising_hash_and_eq_leave_the_cache_usable():
    @cache(max_size=8)
    def f(key):
        return key.n

    keys = [Flaky(n) for n in range(4)]
    for k in keys:
        assert f(k) == k.n
    try:
        Flaky.fail_hash = True
        with pytest.raises(ArithmeticError):
            f(Flaky(9))
        Flaky.fail_hash = False
        Flaky.fail_eq = True
        with pytest.raises(LookupError):
            f(Flaky(9))
    finally:
        Flaky.fail_hash = Flaky.fail_eq = False
    for k in keys:
        assert f(Flaky(k.n)) == k.n
    assert f(Flaky(9)) == 9
    info = f.cache_info()
    assert info.current_size == 5
    assert info.hits == 4


def test_many_colliding_hashes():
    calls = []

    @cache(max_size=64)
    def f(key):
        calls.append(key.n)
        return key.n * 3

    for _ in range(3):
        for n in range(200):
            assert f(CollidingKey(n)) == n * 3
            assert f.cache_info().current_size <= 64
    for n in range(190, 200):
        assert f(CollidingKey(n)) == n * 3
    info = f.cache_info()
    assert info.hits + info.misses == 610
    assert info.misses == len(calls)
    assert info.current_size == 64


def test_thread_pool_map_over_the_cache():
    @cache(max_size=50)
    def f(x):
        return x * x + 1

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(f, [i % 120 for i in range(4000)]))
    assert results == [(i % 120) ** 2 + 1 for i in range(4000)]
    info = f.cache_info()
    assert info.hits + info.misses == 4000
    assert info.current_size <= 50


def test_value_whose_del_calls_the_cached_function():
    side_results = []

    class Resource:
        def __init__(self, n):
            self.n = n

        def __del__(self):
            side_results.append((self.n, f(1000 + int(self.n))))

    @cache(max_size=3)
    def f(x):
        return Resource(x) if isinstance(x, str) else x * 2

    for i in range(10):
        assert f(str(i)).n == str(i)
    gc.collect()
    f.cache_clear()
    gc.collect()
    assert f("42").n == "42"
    assert f(5) == 10
    assert f.cache_info().current_size <= 3
    assert side_results, "evicted values must have been released"
    assert all(result == 2 * (1000 + int(n)) for n, result in side_results)


def test_value_whose_del_clears_the_cache():
    class Clearing:
        def __del__(self):
            f.cache_clear()

    @cache(max_size=2)
    def f(x):
        return Clearing() if x % 2 else x

    for i in range(20):
        result = f(i)
        assert isinstance(result, Clearing) if i % 2 else result == i
    del result
    f.cache_clear()
    assert f(4) == 4
    assert f(4) == 4


def test_reference_cycle_through_a_cached_value_is_collected():
    class Holder:
        pass

    @cache()
    def f(x):
        return Holder()

    value = f(1)
    value.function = f  # value -> cached function -> entry -> value
    ref = weakref.ref(value)
    del value, f
    gc.collect()
    assert ref() is None


def test_large_values_and_many_entries():
    @cache(max_size=1000)
    def f(x):
        return bytes(1000) + x.to_bytes(4, "little")

    for i in range(3000):
        assert f(i)[-4:] == i.to_bytes(4, "little")
    assert f.cache_info().current_size == 1000
    f.cache_clear()
    assert f.cache_info().current_size == 0
