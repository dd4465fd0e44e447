"""Async functions: detected at decoration, always awaitable, hits resolve immediately."""

from __future__ import annotations

import asyncio
import inspect
import sys
import time

import pytest
from warp_cache import CacheInfo, cache


def make_async(**params):
    calls: list = []

    @cache(**params)
    async def fetch(x):
        """Fetch docs."""
        calls.append(x)
        await asyncio.sleep(0)
        return {"value": x}

    return fetch, calls


def run(awaitable):
    """asyncio.run for any awaitable (asyncio.run itself wants a coroutine)."""

    async def main():
        return await awaitable

    return asyncio.run(main())


def resolve_without_suspending(awaitable):
    """Drive an awaitable one step; return its result if it finished without suspending."""
    iterator = awaitable.__await__()
    with pytest.raises(StopIteration) as stop:
        next(iterator)
    return stop.value.value


def test_async_function_is_detected():
    fetch, _ = make_async()
    assert inspect.iscoroutinefunction(fetch)
    if sys.version_info < (3, 14):  # deprecated from 3.14 (frameworks still call it before)
        assert asyncio.iscoroutinefunction(fetch)


def test_async_wrapper_keeps_metadata():
    fetch, _ = make_async()
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch docs."
    assert fetch.__qualname__.endswith("<locals>.fetch")
    assert inspect.iscoroutinefunction(fetch.__wrapped__)
    assert inspect.signature(fetch) == inspect.signature(fetch.__wrapped__)


def test_sync_function_is_not_a_coroutine_function():
    @cache()
    def f(x):
        return x

    assert not inspect.iscoroutinefunction(f)
    assert f(1) == 1


def test_miss_then_hit():
    fetch, calls = make_async(max_size=10)

    async def main():
        first = await fetch(1)
        second = await fetch(1)
        return first, second

    first, second = asyncio.run(main())
    assert first == {"value": 1}
    assert second is first
    assert calls == [1]
    assert fetch.cache_info() == CacheInfo(hits=1, misses=1, max_size=10, current_size=1)


def test_every_call_returns_an_awaitable():
    fetch, calls = make_async()

    async def main():
        miss = fetch(1)
        assert inspect.isawaitable(miss)
        await miss
        hit = fetch(1)
        assert inspect.isawaitable(hit)
        return await hit

    assert asyncio.run(main()) == {"value": 1}
    assert calls == [1]


def test_hit_resolves_immediately_without_running_the_coroutine():
    fetch, calls = make_async()
    value = run(fetch(1))
    assert calls == [1]
    # No event loop needed: a hit is an already-completed awaitable.
    assert resolve_without_suspending(fetch(1)) is value
    assert calls == [1]
    assert fetch.cache_info().hits == 1


def test_hit_does_not_yield_to_the_event_loop():
    fetch, _ = make_async()
    switches = []

    async def ticker():
        for _ in range(3):
            switches.append("tick")
            await asyncio.sleep(0)

    async def main():
        await fetch(1)
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # let the ticker start
        seen = len(switches)
        for _ in range(100):
            await fetch(1)
        assert len(switches) == seen, "awaiting hits must not hand control to other tasks"
        await task

    asyncio.run(main())


def test_exceptions_propagate_and_are_not_cached():
    calls = []

    @cache()
    async def flaky(x):
        calls.append(x)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return x

    async def main():
        with pytest.raises(ValueError, match="first call fails"):
            await flaky(3)
        assert await flaky(3) == 3
        assert await flaky(3) == 3

    asyncio.run(main())
    assert calls == [3, 3]
    info = flaky.cache_info()
    assert info.hits == 1
    assert info.current_size == 1


def test_none_result_is_cached():
    calls = []

    @cache()
    async def nothing(x):
        calls.append(x)
        return None

    async def main():
        return [await nothing(1) for _ in range(3)]

    assert asyncio.run(main()) == [None, None, None]
    assert calls == [1]


def test_unhashable_argument_raises_type_error():
    fetch, calls = make_async()

    async def main():
        with pytest.raises(TypeError):
            await fetch([1])

    asyncio.run(main())
    assert calls == []


def test_concurrent_calls_return_correct_values():
    fetch, calls = make_async(max_size=8)

    async def main():
        return await asyncio.gather(*(fetch(i % 12) for i in range(60)))

    results = asyncio.run(main())
    assert [r["value"] for r in results] == [i % 12 for i in range(60)]
    info = fetch.cache_info()
    assert info.hits + info.misses == 60
    assert info.current_size <= 8
    assert len(calls) == info.misses


def test_cache_clear_and_info():
    fetch, calls = make_async(max_size=5)

    async def main():
        for i in range(7):
            await fetch(i)
        assert fetch.cache_info() == CacheInfo(hits=0, misses=7, max_size=5, current_size=5)
        fetch.cache_clear()
        assert fetch.cache_info() == CacheInfo(hits=0, misses=0, max_size=5, current_size=0)
        await fetch(0)

    asyncio.run(main())
    assert calls == [0, 1, 2, 3, 4, 5, 6, 0]


def test_ttl_applies_to_async_functions():
    fetch, calls = make_async(ttl=0.05)

    async def main():
        await fetch(1)
        await fetch(1)
        time.sleep(0.15)
        await fetch(1)

    asyncio.run(main())
    assert calls == [1, 1]


def test_results_usable_across_event_loops():
    fetch, calls = make_async()

    first = run(fetch("k"))
    assert run(fetch("k")) is first
    assert calls == ["k"]


def test_keyword_argument_order_does_not_matter():
    calls = []

    @cache()
    async def combine(a, b=0):
        calls.append((a, b))
        return a + b

    async def main():
        return [await combine(a=1, b=2), await combine(b=2, a=1), await combine(a=1, b=2)]

    assert asyncio.run(main()) == [3, 3, 3]
    assert calls == [(1, 2)]
