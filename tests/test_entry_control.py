"""Per-entry control (issue 21): cache_invalidate, cache_peek, cache_set, cache_refresh,
and serve_stale, on both backends, for plain functions, methods and async functions."""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import pytest
from warp_cache import cache

BACKENDS = ["memory"] + ([] if sys.platform == "win32" else ["shared"])


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def counted(backend, **params):
    """A cached `f(x, y=0) -> (x, y, n)` with its call log."""
    calls = []

    @cache(max_size=64, backend=backend, **params)
    def f(x, y=0):
        calls.append((x, y))
        return (x, y, len(calls))

    return f, calls


def peek_or_none(f, *args):
    try:
        return f.cache_peek(*args)
    except KeyError:
        return None


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- cache_invalidate -----------------------------------------------------------------


def test_invalidate_removes_one_key_and_leaves_the_others(backend):
    f, calls = counted(backend)
    f(1), f(2), f(3)
    assert f.cache_invalidate(2) is True
    assert f.cache_info().current_size == 2
    f(1), f(3)
    assert calls == [(1, 0), (2, 0), (3, 0)]
    f(2)
    assert calls[-1] == (2, 0)
    assert len(calls) == 4


def test_invalidate_of_an_absent_key_is_false(backend):
    f, _ = counted(backend)
    f(1)
    assert f.cache_invalidate(99) is False
    assert f.cache_invalidate(1) is True
    assert f.cache_invalidate(1) is False


def test_invalidate_uses_the_call_key_rules(backend):
    f, calls = counted(backend)
    f(1, y=2)
    # keywords and positionals are different keys, as for a call
    assert f.cache_invalidate(1, 2) is False
    assert f.cache_invalidate(y=2, x=1) is False
    assert f.cache_invalidate(1, y=2) is True
    f(x=1, y=5)
    assert f.cache_invalidate(y=5, x=1) is True  # keyword order does not matter


def test_invalidate_counts_nothing(backend):
    f, _ = counted(backend)
    f(1)
    before = f.cache_info()
    f.cache_invalidate(1)
    f.cache_invalidate(2)
    after = f.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)


def test_invalidate_unhashable_raises_type_error():
    f, _ = counted("memory")
    with pytest.raises(TypeError):
        f.cache_invalidate([1])


def test_invalidate_of_an_expired_entry_is_false(backend):
    f, _ = counted(backend, ttl=0.05)
    f(1)
    time.sleep(0.08)
    assert f.cache_invalidate(1) is False


# --- cache_peek -----------------------------------------------------------------------


def test_peek_returns_the_cached_value_and_counts_nothing(backend):
    f, calls = counted(backend)
    first = f(4)
    info = f.cache_info()
    assert f.cache_peek(4) == first
    assert f.cache_info() == info
    assert calls == [(4, 0)]


def test_peek_of_an_absent_key_raises_key_error(backend):
    f, calls = counted(backend)
    with pytest.raises(KeyError):
        f.cache_peek(4)
    assert calls == []
    assert (f.cache_info().hits, f.cache_info().misses) == (0, 0)


def test_peek_after_expiry_raises_key_error(backend):
    f, _ = counted(backend, ttl=0.05)
    f(4)
    assert f.cache_peek(4) == (4, 0, 1)
    time.sleep(0.08)
    with pytest.raises(KeyError):
        f.cache_peek(4)


def test_peek_does_not_set_the_visited_bit():
    """SIEVE: an entry only peeked at is still evicted first."""
    calls = []

    @cache(max_size=2)
    def f(x):
        calls.append(x)
        return x

    f(1), f(2)
    f.cache_peek(1)  # were this a hit, 1 would survive the next insert and 2 would go
    f(3)
    with pytest.raises(KeyError):
        f.cache_peek(1)
    assert f.cache_peek(2) == 2


def test_peek_same_object_as_a_hit(backend):
    @cache(backend=backend)
    def f(x):
        return [x]

    value = f(1)
    assert f.cache_peek(1) is value


# --- cache_set ------------------------------------------------------------------------


def test_set_then_call_returns_the_set_value_without_computing(backend):
    f, calls = counted(backend)
    f.cache_set("preset", 7)
    assert f(7) == "preset"
    assert calls == []
    assert f.cache_info().hits == 1


def test_set_replaces_a_live_value(backend):
    f, calls = counted(backend)
    f(7)
    f.cache_set("new", 7)
    assert f(7) == "new"
    assert f.cache_peek(7) == "new"
    assert len(calls) == 1


def test_set_with_keywords(backend):
    f, calls = counted(backend)
    f.cache_set("kw", 1, y=2)
    assert f(1, y=2) == "kw"
    assert f(1, 2) == (1, 2, 1)


def test_set_applies_the_ttl(backend):
    f, calls = counted(backend, ttl=0.05)
    f.cache_set("preset", 1)
    assert f(1) == "preset"
    time.sleep(0.08)
    assert f(1) == (1, 0, 1)


def test_set_respects_max_size(backend):
    f, _ = counted(backend)
    for i in range(100):
        f.cache_set(i, i)
    assert f.cache_info().current_size == 64


def test_set_needs_a_value():
    f, _ = counted("memory")
    with pytest.raises(TypeError, match="value"):
        f.cache_set()


@pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")
def test_set_oversize_value_is_not_stored_and_counted():
    @cache(backend="shared", max_value_size=16)
    def f(x):
        return x

    with pytest.warns(RuntimeWarning, match="max_value_size"):
        f.cache_set("x" * 100, 1)
    with pytest.raises(KeyError):
        f.cache_peek(1)
    assert f.cache_info().oversize_skips == 1


# --- cache_refresh --------------------------------------------------------------------


def test_refresh_recomputes_and_stores(backend):
    f, calls = counted(backend)
    assert f(1) == (1, 0, 1)
    assert f.cache_refresh(1) == (1, 0, 2)
    assert f(1) == (1, 0, 2)
    assert f.cache_peek(1) == (1, 0, 2)
    assert len(calls) == 2


def test_refresh_of_an_absent_key_computes_it(backend):
    f, calls = counted(backend)
    assert f.cache_refresh(3, y=1) == (3, 1, 1)
    assert f(3, y=1) == (3, 1, 1)
    assert calls == [(3, 1)]


def test_refresh_exception_propagates_and_keeps_the_old_value(backend):
    fail = []

    @cache(backend=backend)
    def f(x):
        if fail:
            raise ValueError("boom")
        return x * 10

    assert f(1) == 10
    fail.append(True)
    with pytest.raises(ValueError, match="boom"):
        f.cache_refresh(1)
    assert f.cache_peek(1) == 10


def test_refresh_with_concurrent_callers_runs_once(backend):
    started, release = threading.Event(), threading.Event()
    calls = []

    @cache(backend=backend, version=1)  # version: it closes over events (no identity)
    def slow(x):
        calls.append(x)
        started.set()
        release.wait(5)
        return len(calls)

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow.cache_refresh(1)))]
    threads[0].start()
    assert started.wait(5)
    for _ in range(5):
        threads.append(threading.Thread(target=lambda: results.append(slow.cache_refresh(1))))
        threads[-1].start()
    for _ in range(2):
        threads.append(threading.Thread(target=lambda: results.append(slow(1))))
        threads[-1].start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == [1]
    assert results == [1] * 8


def test_refresh_recursion_does_not_deadlock():
    @cache()
    def f(x):
        if x == 0:
            return f.cache_refresh(1)
        return x

    assert f(0) == 1


# --- bound methods --------------------------------------------------------------------


class Repo:
    def __init__(self, name):
        self.name = name
        self.loads = []

    @cache()
    def get(self, key):
        self.loads.append(key)
        return f"{self.name}:{key}:{len(self.loads)}"

    @cache()
    async def fetch(self, key):
        self.loads.append(("fetch", key))
        await asyncio.sleep(0)
        return f"{self.name}:{key}:{len(self.loads)}"


def test_bound_method_forms_target_the_instance():
    Repo.get.cache_clear()
    a, b = Repo("a"), Repo("b")
    a.get(1), b.get(1)
    assert a.get.cache_peek(1) == "a:1:1"
    assert b.get.cache_peek(1) == "b:1:1"
    assert a.get.cache_invalidate(1) is True
    with pytest.raises(KeyError):
        a.get.cache_peek(1)
    assert b.get.cache_peek(1) == "b:1:1"
    a.get.cache_set("preset", 2)
    assert a.get(2) == "preset"
    assert Repo.get.cache_peek(a, 2) == "preset"
    assert a.get.cache_refresh(2) == "a:2:2"
    assert a.get(2) == "a:2:2"
    assert a.loads == [1, 2]


def test_bound_method_still_behaves_like_a_method():
    a = Repo("a")
    bound = a.get
    assert bound.__self__ is a
    assert bound.__func__ is Repo.get
    assert bound.__name__ == "get"
    assert bound(5) == a.get(5)
    assert a.get == a.get
    assert hash(a.get) == hash(a.get)
    assert a.get != Repo("a").get
    assert "Repo.get" in repr(bound)
    assert bound.cache_info() == Repo.get.cache_info()
    assert list(map(a.get, [5, 5])) == [bound(5)] * 2


def test_bound_method_pickles_and_rebinds_like_a_bound_method():
    a = Repo("pickled")
    copy = pickle.loads(pickle.dumps(a.get))
    assert copy.__self__.name == "pickled"
    assert copy.__func__ is Repo.get
    weak = weakref.WeakMethod(a.get)
    assert weak()(7) == a.get(7)
    assert inspect.signature(a.get) == inspect.signature(a.get.__func__.__wrapped__.__get__(a))
    assert inspect.iscoroutinefunction(a.fetch)
    assert not inspect.iscoroutinefunction(a.get)
    rebound = type(a.get)(Repo.get, a)
    assert rebound == a.get
    with pytest.raises(TypeError, match="decorated with warp_cache"):
        type(a.get)(len, a)
    with pytest.raises(TypeError, match="two positional"):
        type(a.get)(Repo.get)


def test_classmethod_portable_spelling():
    class Kind:
        @classmethod
        @cache()
        def describe(cls, x):
            return (cls.__name__, x)

    Kind.describe(1)
    cached = Kind.__dict__["describe"].__func__
    assert cached.cache_peek(Kind, 1) == ("Kind", 1)
    assert cached.cache_invalidate(Kind, 1) is True
    assert cached.cache_info().current_size == 0


def test_async_bound_method_forms():
    Repo.fetch.cache_clear()
    a = Repo("a")

    async def main():
        first = await a.fetch(1)
        refreshed = await a.fetch.cache_refresh(1)
        return first, refreshed, await a.fetch(1)

    first, refreshed, again = asyncio.run(main())
    assert (first, refreshed, again) == ("a:1:1", "a:1:2", "a:1:2")
    assert a.fetch.cache_peek(1) == "a:1:2"
    assert a.fetch.cache_invalidate(1) is True
    a.fetch.cache_set("preset", 3)
    assert asyncio.run(a.fetch(3)) == "preset"


# --- async functions ------------------------------------------------------------------


def test_async_forms(backend):
    calls = []

    @cache(backend=backend)
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0)
        return (x, len(calls))

    async def main():
        assert await f(1) == (1, 1)
        refreshing = f.cache_refresh(1)
        assert asyncio.iscoroutine(refreshing) or hasattr(refreshing, "__await__")
        assert await refreshing == (1, 2)
        assert await f(1) == (1, 2)

    asyncio.run(main())
    assert f.cache_peek(1) == (1, 2)
    assert f.cache_invalidate(1) is True
    assert f.cache_set("preset", 2) is None
    assert asyncio.run(f(2)) == "preset"
    assert calls == [1, 1]


def test_async_refresh_joins_a_flight_on_the_same_loop(backend):
    calls = []

    @cache(backend=backend)
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return len(calls)

    async def main():
        return await asyncio.gather(f(1), f.cache_refresh(1), f.cache_refresh(1))

    assert asyncio.run(main()) == [1, 1, 1]
    assert calls == [1]


# --- serve_stale ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"serve_stale": 1.0}, ValueError, "serve_stale requires ttl"),
        ({"ttl": 1, "serve_stale": -1}, ValueError, "serve_stale"),
        ({"ttl": 1, "serve_stale": 0}, ValueError, "serve_stale"),
        ({"ttl": 1, "serve_stale": float("nan")}, ValueError, "serve_stale"),
        ({"ttl": 1, "serve_stale": "1"}, TypeError, "serve_stale"),
        ({"ttl": 1, "serve_stale": True}, TypeError, "serve_stale"),
    ],
)
def test_serve_stale_is_validated(params, error, match):
    with pytest.raises(error, match=match):
        cache(**params)


def test_serve_stale_is_accepted_with_ttl():
    @cache(ttl=1, serve_stale=2)
    def f(x):
        return x

    assert f(1) == 1


def stale_function(backend, run_time):
    calls = []

    @cache(backend=backend, ttl=0.2, serve_stale=30)
    def slow(x):
        calls.append(threading.get_ident())
        time.sleep(run_time)
        return len(calls)

    return slow, calls


def test_serve_stale_eight_threads_get_the_old_value_at_once(backend):
    run_time = 0.6
    slow, calls = stale_function(backend, run_time)
    assert slow(1) == 1
    time.sleep(0.3)  # past ttl, well inside serve_stale
    barrier = threading.Barrier(8)
    results, durations = [], []
    lock = threading.Lock()

    def call():
        barrier.wait()
        start = time.perf_counter()
        value = slow(1)
        took = time.perf_counter() - start
        with lock:
            results.append(value)
            durations.append(took)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [1] * 8
    assert max(durations) < run_time / 3, durations
    wait_for(lambda: peek_or_none(slow, 1) == 2)
    time.sleep(0.1)
    assert len(calls) == 2  # the first call, then exactly one refresh
    assert slow(1) == 2
    assert len(calls) == 2


def test_serve_stale_past_the_window_is_a_plain_miss(backend):
    calls = []

    @cache(backend=backend, ttl=0.05, serve_stale=0.05)
    def f(x):
        calls.append(x)
        return len(calls)

    assert f(1) == 1
    time.sleep(0.15)
    assert f(1) == 2  # computed in the call, not served stale


def test_serve_stale_peek_treats_a_stale_entry_as_expired(backend):
    @cache(backend=backend, ttl=0.05, serve_stale=30)
    def f(x):
        time.sleep(0.3)
        return x

    f(1)
    time.sleep(0.08)
    with pytest.raises(KeyError):
        f.cache_peek(1)


def test_serve_stale_failed_refresh_keeps_serving_the_old_value(caplog):
    state = {"fail": False, "runs": 0}

    @cache(ttl=0.05, serve_stale=30)
    def f(x):
        state["runs"] += 1
        if state["fail"]:
            raise ValueError("backend down")
        return state["runs"]

    assert f(1) == 1
    state["fail"] = True
    time.sleep(0.08)
    assert f(1) == 1  # stale; a refresh starts in the background and fails
    wait_for(lambda: state["runs"] == 2)
    time.sleep(0.05)
    assert f(1) == 1  # still served: the next caller starts another refresh
    wait_for(lambda: state["runs"] == 3)
    time.sleep(0.05)
    state["fail"] = False
    assert f(1) == 1  # this refresh succeeds
    wait_for(lambda: peek_or_none(f, 1) == 4)
    assert f(1) == 4
    assert state["runs"] == 4
    assert "backend down" in caplog.text


def test_serve_stale_refresh_that_calls_itself_gets_the_stale_value(backend):
    """Recursion inside a refresh: the nested call finds the entry stale and the key's
    flight taken (by this very refresh), so it returns the old value instead of waiting."""
    runs = []

    @cache(backend=backend, ttl=0.05, serve_stale=30)
    def f(x):
        runs.append(x)
        if len(runs) > 1:
            return ["again", f(x)]
        return ["first"]

    assert f(1) == ["first"]
    time.sleep(0.08)
    assert f(1) == ["first"]
    wait_for(lambda: peek_or_none(f, 1) == ["again", ["first"]])
    assert len(runs) == 2


def test_serve_stale_async(backend):
    calls = []

    @cache(backend=backend, ttl=0.4, serve_stale=30)
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0.2)
        return len(calls)

    async def main():
        assert await f(1) == 1
        await asyncio.sleep(0.5)  # past ttl
        start = time.perf_counter()
        values = await asyncio.gather(*(f(1) for _ in range(8)))
        took = time.perf_counter() - start
        assert values == [1] * 8
        assert took < 0.1  # the refresh takes 0.2 s
        await asyncio.sleep(0.3)  # the refresh has landed, and is fresh
        assert await f(1) == 2

    asyncio.run(main())
    assert len(calls) == 2


def test_serve_stale_bound_method():
    class Box:
        def __init__(self):
            self.runs = 0

        @cache(ttl=0.05, serve_stale=30)
        def value(self):
            self.runs += 1
            return self.runs

    box = Box()
    assert box.value() == 1
    time.sleep(0.08)
    assert box.value() == 1
    wait_for(lambda: peek_or_none(Box.value, box) == 2)
    assert box.value() == 2
    assert box.runs == 2


# --- across processes (shared backend) ------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys
    from warp_cache import cache

    @cache(backend="shared", max_size=32)
    def square(x):
        return ("computed", x * x)

    def main():
        command, arg = sys.argv[1], int(sys.argv[2])
        if command == "call":
            print(square(arg))
        elif command == "invalidate":
            print(square.cache_invalidate(arg))
        elif command == "set":
            square.cache_set(("set", arg), arg)
        elif command == "peek":
            try:
                print(square.cache_peek(arg))
            except KeyError:
                print("absent")
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")
def test_shared_invalidation_is_seen_by_another_process(tmp_path):
    (tmp_path / "ec_worker.py").write_text(WORKER)
    sys.path.insert(0, str(tmp_path))
    try:
        import ec_worker
    finally:
        sys.path.remove(str(tmp_path))

    def run(*args):
        done = subprocess.run(
            [sys.executable, "-c", "import ec_worker; ec_worker.main()", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert ec_worker.square(3) == ("computed", 9)
    assert ec_worker.square(4) == ("computed", 16)
    assert run("peek", 3) == "('computed', 9)"
    assert run("invalidate", 3) == "True"
    with pytest.raises(KeyError):
        ec_worker.square.cache_peek(3)  # this process sees it at once
    assert ec_worker.square.cache_peek(4) == ("computed", 16)
    assert run("invalidate", 3) == "False"
    run("set", 5)
    assert ec_worker.square(5) == ("set", 5)
    assert ec_worker.square.cache_invalidate(4) is True
    assert run("peek", 4) == "absent"
    assert run("peek", 5) == "('set', 5)"
    assert Path(ec_worker.__file__).parent == tmp_path
