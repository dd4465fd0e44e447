"""Issue 12: a shared cache never returns another call's, function's or version's result.

Each failure the issue reports is a regression test here: the positional/keyword split of a
key, state bound into closures, partials, callable instances and bound methods, code and
module state that changes between deploys, parameters, stale files, honest counters.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from warp_cache import cache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")


# --- keys: where positional arguments end ------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "shared"])
def test_positional_keyword_split_is_part_of_the_key(backend):
    @cache(backend=backend)
    def f(*a, **k):
        return (a, k)

    assert f(1, "a", 2, b=3) == ((1, "a", 2), {"b": 3})
    assert f(1, a=2, b=3) == ((1,), {"a": 2, "b": 3})
    assert f(1, "a", 2, b=3) == ((1, "a", 2), {"b": 3})
    assert f.cache_info().misses == 2


@pytest.mark.parametrize("backend", ["memory", "shared"])
def test_keyword_split_with_non_scalar_arguments(backend):
    @cache(backend=backend)
    def fetch(*a, **k):
        return (a, k)

    assert fetch("/a", "method", "POST", timeout=(1, 2)) == (
        ("/a", "method", "POST"),
        {"timeout": (1, 2)},
    )
    assert fetch("/a", method="POST", timeout=(1, 2)) == (
        ("/a",),
        {"method": "POST", "timeout": (1, 2)},
    )
    # Equal calls still share an entry, whatever the keyword order.
    assert fetch("/a", timeout=(1, 2), method="POST") == (
        ("/a",),
        {"method": "POST", "timeout": (1, 2)},
    )
    assert (fetch.cache_info().hits, fetch.cache_info().misses) == (1, 2)


# --- bound state ----------------------------------------------------------------------------


def make_mul(n):
    @cache(backend="shared")
    def mul(x):
        return x * n

    return mul


def test_two_closures_of_one_code_object_do_not_share():
    assert make_mul(2)(5) == 10
    assert make_mul(3)(5) == 15
    assert make_mul(2)(5) == 10


def test_partials_of_one_function_do_not_share():
    assert cache(backend="shared")(functools.partial(pow, 2))(10) == 1024
    assert cache(backend="shared")(functools.partial(pow, 3))(10) == 59049
    assert cache(backend="shared")(functools.partial(pow, 2))(10) == 1024


class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k

    def times(self, x):
        return x * self.k


def test_callable_instances_with_other_state_do_not_share():
    assert cache(backend="shared")(Scale(5))(3) == 15
    assert cache(backend="shared")(Scale(7))(3) == 21


def test_bound_methods_of_instances_with_other_state_do_not_share():
    assert cache(backend="shared")(Scale(5).times)(3) == 15
    assert cache(backend="shared")(Scale(7).times)(3) == 21


def test_state_that_cannot_be_seen_is_refused_loudly():
    lock = threading.Lock()

    def guarded(x):
        with lock:
            return x

    with pytest.raises(TypeError, match="lock") as raised:
        cache(backend="shared")(guarded)
    assert "version=" in str(raised.value)
    # The memory backend needs no identity.
    assert cache()(guarded)(4) == 4
    # With version= the user vouches for what cannot be seen.
    assert cache(backend="shared", version=1)(guarded)(4) == 4


def test_a_default_that_cannot_be_seen_is_refused():
    with open(os.devnull) as handle:

        def reads(x, source=handle):
            return x

        with pytest.raises(TypeError, match="source"):
            cache(backend="shared")(reads)


def test_version_separates_caches():
    def make(version):
        @cache(backend="shared", version=version)
        def stamp():
            return time.perf_counter_ns()

        return stamp

    a, b, again = make("a"), make("b"), make("a")
    assert a() != b()
    assert again() == a(), "the same version must share"


@pytest.mark.parametrize("bad", [1.5, b"x", [1], True])
def test_version_is_validated(bad):
    with pytest.raises(TypeError, match="version"):
        cache(version=bad)


def test_version_is_accepted_by_the_memory_backend():
    @cache(version="v2")
    def f(x):
        return x

    assert f(1) == 1


def test_parameters_select_the_file(private_shared_cache_dir):
    def make(**params):
        @cache(backend="shared", **params)
        def same(x):
            return x

        return same

    variants = [{}, {"max_size": 64}, {"ttl": 30}, {"max_key_size": 100}, {"max_value_size": 99}]
    alive = [make(**params) for params in variants]  # in use: never removed as stale
    for cached in alive:
        cached(1)
    stems = {p.name.rsplit(".", 1)[0] for p in private_shared_cache_dir.iterdir()}
    assert len(stems) == 5, stems


def test_the_format_versions_select_the_file(private_shared_cache_dir, monkeypatch):
    """Issue 15: the byte format of keys and values is part of the identity, with the file
    format: a process of another release never reads entries written in another format."""
    from warp_cache import _warp_cache

    def make():
        @cache(backend="shared")
        def same(x):
            return [x, "computed"]

        return same

    current = _warp_cache.SHARED_FORMAT
    # The file format's version and the codec's, one number (FORMAT_VERSION * 1000 + codec).
    assert current >= 1000 and current % 1000 >= 2
    now = make()
    assert now(1) == [1, "computed"]
    monkeypatch.setattr(_warp_cache, "SHARED_FORMAT", current + 1)  # a codec change
    other = make()
    assert other(1) == [1, "computed"]
    assert other.cache_info().misses == 1, "an entry of another format was read"
    stems = {p.name.rsplit(".", 1)[0] for p in private_shared_cache_dir.iterdir()}
    assert len(stems) == 2, stems
    assert now(1) == [1, "computed"] and now.cache_info().hits == 1


# --- redeploys: edit a module between two processes -----------------------------------------


MODULE = """
import functools, os
from warp_cache import cache

RATE = float(os.environ.get("RATE", "1"))

def decorate(f):
    @functools.wraps(f)
    def wrapper(*a, **k):
        return f(*a, **k)
    return wrapper

@cache(backend="shared")
def with_default(x, rate=2):
    return x * rate

@cache(backend="shared")
def with_constant(x):
    return x * RATE

@cache(backend="shared")
def with_helper(x):
    return helper(x)

@cache(backend="shared")
@decorate
def wrapped(x):
    return x * 2

@cache(backend="shared")
def with_later_helper(x):
    return defined_below(x)

def helper(x):
    return x + 1

def defined_below(x):
    return x + 10
"""

CALLS = ["with_default", "with_constant", "with_helper", "wrapped", "with_later_helper"]


def run_module(tmp_path: Path, source: str, **env: str) -> list[float]:
    (tmp_path / "deployed.py").write_text(source)
    program = f"import deployed; print([getattr(deployed, n)(10) for n in {CALLS!r}])"
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1", **env},
    )
    assert done.returncode == 0, done.stderr
    return eval(done.stdout)


@pytest.mark.parametrize(
    "edit, index, expected",
    [
        (("rate=2", "rate=3"), 0, 30),
        (None, 1, 50.0),  # RATE comes from the environment
        (("return x + 1\n", "return x + 5\n"), 2, 15),
        (("return x * 2", "return x * 3"), 3, 30),
        (("return x + 10", "return x + 20"), 4, 30),
    ],
)
def test_a_redeploy_recomputes_what_changed(tmp_path, edit, index, expected):
    before = run_module(tmp_path, MODULE, RATE="1")
    assert before == [20, 10.0, 11, 20, 20]
    source = MODULE.replace(*edit) if edit else MODULE
    after = run_module(tmp_path, source, RATE="5" if edit is None else "1")
    assert after[index] == expected
    unchanged = [i for i in range(len(CALLS)) if i != index]
    assert [after[i] for i in unchanged] == [before[i] for i in unchanged]


def test_an_unchanged_redeploy_shares(tmp_path, private_shared_cache_dir):
    run_module(tmp_path, MODULE)
    files_before = sorted(p.name for p in private_shared_cache_dir.iterdir())
    run_module(tmp_path, MODULE.replace("# nothing", ""))
    assert sorted(p.name for p in private_shared_cache_dir.iterdir()) == files_before


# --- parameters of live processes -----------------------------------------------------------


ROLLING = """
import sys, time
from warp_cache import cache

@cache(backend="shared", max_size=int(sys.argv[1]))
def slow(x):
    return x * 3

for x in range(50):
    slow(x)
start = time.monotonic()
for _ in range(20):
    for x in range(50):
        assert slow(x) == x * 3
elapsed = time.monotonic() - start
info = slow.cache_info()
print(elapsed, info.hits, info.misses)
"""


def test_two_live_processes_with_different_max_size_both_hit(tmp_path):
    script = tmp_path / "rolling.py"
    script.write_text(ROLLING)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), size], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for size in ("20000", "20001")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        elapsed, hits, misses = out.split()
        assert float(elapsed) < 1.0, "1,000 calls took a second or more"
        assert (int(hits), int(misses)) == (1000, 50)


# --- old identities -------------------------------------------------------------------------


def test_stale_identity_files_are_removed_but_live_ones_stay(tmp_path, private_shared_cache_dir):
    holder = tmp_path / "holder.py"
    holder.write_text(
        textwrap.dedent(
            """
            import sys, time
            from warp_cache import cache

            @cache(backend="shared", version=sys.argv[1])
            def tool(x):
                return x

            tool(1)
            print("ready", flush=True)
            time.sleep(float(sys.argv[2]))
            """
        )
    )

    def files():
        return sorted(p.name for p in private_shared_cache_dir.iterdir() if "tool" in p.name)

    def run(version, seconds="0"):
        return subprocess.Popen(
            [sys.executable, str(holder), version, seconds],
            stdout=subprocess.PIPE,
            text=True,
        )

    assert run("1").wait(60) == 0
    old = files()
    assert len(old) == 2
    live = run("2", "30")  # stays alive with identity 2 open
    try:
        assert live.stdout.readline().strip() == "ready"
        with_two = files()
        assert not set(old) & set(with_two), "the unused old identity was kept"
        assert run("3").wait(60) == 0
        with_three = files()
        assert set(with_two) < set(with_three), "a file in use by a live process was removed"
    finally:
        live.kill()
        live.wait()


# --- counters -------------------------------------------------------------------------------


def test_shared_flight_waiters_count_as_hits():
    import asyncio

    @cache(backend="shared")
    async def slow(x):
        await asyncio.sleep(0.05)
        return x

    async def main():
        return await asyncio.gather(*(slow(i % 4) for i in range(40)))

    assert asyncio.run(main()) == [i % 4 for i in range(40)]
    info = slow.cache_info()
    assert (info.hits, info.misses) == (36, 4)


def test_shared_thread_flight_waiters_count_as_hits():
    started = threading.Barrier(4)

    @cache(backend="shared")
    def slow(x):
        time.sleep(0.3)
        return x

    def call():
        started.wait()
        slow(1)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = slow.cache_info()
    assert (info.hits, info.misses) == (3, 1)


class Undecodable:
    """Pickles fine; unpickling it fails (as for a class missing in another process)."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("cannot be rebuilt here")


_make_calls = itertools.count()


def _define_make():
    # The same code each time: two decorations of it are one cache (the counter is named by
    # its type, which version= allows), each with its own decoded copies.
    @cache(backend="shared", version=1)
    def make(x):
        return Undecodable() if next(_make_calls) == 0 else "fresh"

    return make


def test_an_entry_that_cannot_be_decoded_is_a_miss_and_is_replaced():
    writer, reader = _define_make(), _define_make()
    first = writer(1)
    assert isinstance(first, Undecodable)
    assert writer(1) is first, "the writer keeps the object it computed"
    # The reader has no decoded copy: it must decode the bytes, and cannot.
    assert reader(1) == "fresh", "the undecodable entry was not recomputed"
    assert reader(1) == "fresh", "the recomputed value did not replace the entry"
    info = reader.cache_info()
    assert (info.hits, info.misses) == (2, 2)
    assert next(_make_calls) == 2
