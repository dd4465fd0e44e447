"""Single-flight: concurrent misses for one key compute once, without ever deadlocking.

Every test that could hang on a deadlock runs its threads as daemons and joins them with a
deadline, so a deadlock fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
import threading
import time

import pytest
from warp_cache import cache

GIL_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()
DEADLINE = 10.0  # seconds before a thread still running counts as deadlocked
SLOW = 0.2  # seconds a leader computes: every follower arrives meanwhile


def run_threads(worker, n_threads):
    """Runs `worker(index)` in n daemon threads started together; returns their results in
    order. Fails (instead of hanging) if a thread is still running after DEADLINE."""
    barrier = threading.Barrier(n_threads)
    results: list = [None] * n_threads
    errors: list = []

    def start(index):
        try:
            barrier.wait()
            results[index] = worker(index)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            results[index] = exc

    threads = [threading.Thread(target=start, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + DEADLINE
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "deadlock: threads still waiting"
    return results


def counted(func):
    """Wraps `func` to record its calls (thread-safe)."""
    calls: list = []
    lock = threading.Lock()

    def wrapper(*args):
        with lock:
            calls.append(args)
        return func(*args)

    wrapper.calls = calls  # type: ignore[attr-defined]
    return wrapper


# --- threads -------------------------------------------------------------------------


def test_sixteen_threads_missing_one_key_call_once():
    @counted
    def body(x):
        time.sleep(SLOW)
        return [x]

    f = cache()(body)
    results = run_threads(lambda i: f(7), 16)
    assert body.calls == [(7,)]
    assert all(r is results[0] for r in results)  # the leader's very object
    # A call served by another call's flight counts as a hit: misses are function runs.
    assert f.cache_info()[:2] == (15, 1)
    assert f(7) is results[0]


def test_foreign_equality_keys_share_a_flight():
    class Key:
        def __init__(self, n):
            self.n = n

        def __hash__(self):
            return 1  # every instance collides: equality decides

        def __eq__(self, other):
            return isinstance(other, Key) and self.n == other.n

    @counted
    def body(key):
        time.sleep(SLOW)
        return key.n * 10

    f = cache()(body)
    results = run_threads(lambda i: f(Key(i % 2)), 16)
    assert results == [(i % 2) * 10 for i in range(16)]
    assert sorted(key.n for (key,) in body.calls) == [0, 1]


def test_keys_never_equal_to_each_other_compute_separately():
    class Never:
        def __hash__(self):
            return 1

        def __eq__(self, other):
            return False

    @counted
    def body(key):
        time.sleep(0.05)
        return 1

    f = cache()(body)
    assert run_threads(lambda i: f(Never()), 8) == [1] * 8
    assert len(body.calls) == 8
    info = f.cache_info()
    assert info.hits + info.misses == 8


def test_waiting_threads_do_not_spin():
    @cache()
    def f(x):
        time.sleep(0.5)
        return x

    before = time.process_time()
    assert run_threads(lambda i: f(1), 8) == [1] * 8
    # Seven threads blocked for 0.5 s: spinning would burn seconds of CPU time.
    assert time.process_time() - before < 0.25


def test_exception_reaches_every_waiter_and_a_later_call_retries():
    @counted
    def body(x):
        time.sleep(SLOW)
        if len(body.calls) == 1:
            raise ValueError("boom", x)
        return x

    f = cache()(body)
    results = run_threads(lambda i: f(3), 16)
    assert len(body.calls) == 1
    assert all(isinstance(r, ValueError) and r.args == ("boom", 3) for r in results)
    if GIL_ENABLED:
        # Like concurrent.futures: the same instance (free-threaded builds raise copies).
        assert all(r is results[0] for r in results)
    info = f.cache_info()
    assert (info.hits, info.misses, info.current_size) == (0, 16, 0)  # failures, not cached
    assert f(3) == 3  # retried
    assert len(body.calls) == 2


def test_leader_stopped_by_base_exception_lets_a_waiter_compute():
    class Stop(BaseException):
        pass

    @counted
    def body(x):
        time.sleep(SLOW)
        if len(body.calls) == 1:
            raise Stop
        return x * 2

    f = cache()(body)
    results = run_threads(lambda i: f(5), 8)
    assert sum(isinstance(r, Stop) for r in results) == 1  # only the leader's own
    assert [r for r in results if not isinstance(r, Stop)] == [10] * 7
    assert len(body.calls) == 2


def test_same_thread_recursion_on_the_same_key_finishes():
    depth = []

    @cache()
    def f(x):
        depth.append(x)
        if len(depth) == 1:
            return f(x) + 1  # the flight for x is this thread's own: compute, don't wait
        return 10

    @cache()
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert run_threads(lambda i: (f(1), fib(200)), 1) == [(11, fib(200))]
    assert fib(80) == 23416728348467685


def test_cross_thread_mutual_recursion_finishes():
    # a(x) calls b(x) and b(x) calls a(x), except inside the other one on the same thread:
    # thread 0 leads a(1) then needs b(1); thread 1 leads b(1) then needs a(1). Waiting on
    # each other would deadlock; the second one to wait computes instead.
    inside = threading.local()
    both_leading = threading.Barrier(2)

    def outer(name, other):
        def body(x):
            if getattr(inside, "flag", False):
                return name
            inside.flag = True
            try:
                both_leading.wait(timeout=DEADLINE)
                return f"{name}>{other()(x)}"
            finally:
                inside.flag = False

        return body

    a = cache()(outer("a", lambda: b))
    b = cache()(outer("b", lambda: a))
    results = run_threads(lambda i: (a, b)[i](1), 2)
    assert results in (["a>b>a", "b>a"], ["a>b", "b>a>b"])


def test_concurrent_waits_across_three_threads_in_a_chain():
    # t0 leads c(0) and needs c(1); t1 leads c(1) and needs c(2); t2 leads c(2): a chain
    # of waits (no cycle) that resolves from its end.
    leading = threading.Barrier(3)

    @cache()
    def c(n):
        if n < 2 and not getattr(threading.current_thread(), "led", False):
            threading.current_thread().led = True  # type: ignore[attr-defined]
            leading.wait(timeout=DEADLINE)
            return c(n + 1) + 1
        if n == 2:
            leading.wait(timeout=DEADLINE)
            time.sleep(SLOW)
        return 100

    assert sorted(run_threads(lambda i: c(i), 3)) == [100, 101, 102]


def test_stress_mixed_keys_each_computed_once():
    n_threads, calls_per_thread, n_keys = 8, 2000, 64

    @counted
    def body(x):
        return (x, x * x) if isinstance(x, int) else (x, len(x))

    f = cache(max_size=4 * n_keys)(body)

    def worker(index):
        rng = random.Random(index)
        for _ in range(calls_per_thread):
            x = rng.randrange(n_keys)
            if x % 2:
                assert f(x) == (x, x * x)
            else:
                assert f(str(x)) == (str(x), len(str(x)))
        return calls_per_thread

    total = sum(run_threads(worker, n_threads))
    info = f.cache_info()
    assert info.hits + info.misses == total
    # No eviction: every key is computed once, however many threads missed it together.
    assert len(body.calls) == len(set(body.calls)) == n_keys == info.misses


def test_stress_with_eviction_keeps_values_and_counts():
    n_threads, calls_per_thread = 8, 2000

    @cache(max_size=16)
    def f(x, y=0):
        return x * 1000 + y

    def worker(index):
        rng = random.Random(100 + index)
        for _ in range(calls_per_thread):
            x, y = rng.randrange(40), rng.randrange(3)
            assert f(x, y=y) == x * 1000 + y
        return calls_per_thread

    total = sum(run_threads(worker, n_threads))
    info = f.cache_info()
    assert info.hits + info.misses == total
    assert info.current_size <= 16


def test_shared_backend_threads_call_once():
    @counted
    def body(x):
        time.sleep(SLOW)
        return x + 1

    # The counting wrapper closes over a lock, which no identity can see: vouch for it.
    f = cache(backend="shared", version=1)(body)
    assert run_threads(lambda i: f(41), 8) == [42] * 8
    assert body.calls == [(41,)]
    assert f.cache_info()[:2] == (7, 1), "waiters count as hits"


# --- asyncio -------------------------------------------------------------------------


def test_hundred_tasks_on_one_loop_call_once():
    calls = []

    @cache()
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return [x]

    async def main():
        return await asyncio.gather(*(f(1) for _ in range(100)))

    results = asyncio.run(main())
    assert calls == [1]
    assert all(r is results[0] for r in results)
    assert f.cache_info()[:2] == (99, 1)


def test_async_exception_reaches_every_waiter_and_a_later_call_retries():
    calls = []

    @cache()
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        if len(calls) == 1:
            raise KeyError(x)
        return x

    async def main():
        results = await asyncio.gather(*(f(2) for _ in range(20)), return_exceptions=True)
        assert len(calls) == 1
        assert all(isinstance(r, KeyError) for r in results)
        assert all(r is results[0] for r in results)
        assert await f(2) == 2
        assert len(calls) == 2

    asyncio.run(main())
    assert f.cache_info().current_size == 1


def test_cancelled_leader_lets_a_waiter_compute():
    calls = []

    @cache()
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return x * 3

    async def main():
        leader = asyncio.create_task(f(4))
        await asyncio.sleep(0)  # the leader starts its flight
        followers = [asyncio.create_task(f(4)) for _ in range(5)]
        await asyncio.sleep(0.01)
        leader.cancel()
        assert await asyncio.gather(*followers) == [12] * 5
        with pytest.raises(asyncio.CancelledError):
            await leader

    asyncio.run(main())
    assert calls == [4, 4]


def test_cancelled_waiter_leaves_the_flight_alone():
    calls = []

    @cache()
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return x

    async def main():
        leader = asyncio.create_task(f(9))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(f(9))
        other = asyncio.create_task(f(9))
        await asyncio.sleep(0.01)
        waiter.cancel()
        assert await leader == 9
        assert await other == 9
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    assert calls == [9]


def test_async_same_task_recursion_and_cross_task_mutual_recursion_finish():
    inside: contextvars.ContextVar[bool] = contextvars.ContextVar("inside", default=False)

    def outer(name, other):
        async def body(x):
            if inside.get():
                return name
            inside.set(True)
            await asyncio.sleep(0.01)  # both tasks lead before either needs the other
            return f"{name}>{await other()(x)}"

        return body

    a = cache()(outer("a", lambda: b))
    b = cache()(outer("b", lambda: a))

    depth = []

    @cache()
    async def same(x):
        depth.append(x)
        if len(depth) == 1:
            return await same(x) + 1
        return 10

    async def main():
        pair = await asyncio.gather(a(1), b(1))
        return pair, await same(0)

    def run():
        return asyncio.run(asyncio.wait_for(main(), DEADLINE))

    [(pair, recursed)] = run_threads(lambda i: run(), 1)
    assert pair in (["a>b>a", "b>a"], ["a>b", "b>a>b"])
    assert recursed == 11


def test_two_event_loops_in_two_threads_do_not_share_futures():
    calls = []

    @cache()
    async def f(x):
        calls.append(threading.get_ident())
        await asyncio.sleep(0.3)  # both loops miss while the other computes
        return x

    async def main():
        return await asyncio.gather(*(f(1) for _ in range(10)))

    results = run_threads(lambda i: asyncio.run(main()), 2)
    assert results == [[1] * 10, [1] * 10]
    assert len(calls) == 2 and calls[0] != calls[1]  # one flight per loop


def test_shared_backend_tasks_call_once():
    calls = []

    @cache(backend="shared")
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return x * 2

    async def main():
        return await asyncio.gather(*(f(21) for _ in range(20)))

    assert asyncio.run(main()) == [42] * 20
    assert calls == [21]
