"""A discarded cached function is freed, with its entries and its mappings, on every
interpreter: re-decorating (a notebook cell run again, a reload, a test) must not leak.

Free-threaded 3.13 makes functions immortal once a thread has started, and a cached function
follows the function it wraps, so the scenarios run in fresh single-threaded interpreters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap

import pytest

FREE_THREADED_313 = bool(sysconfig.get_config_var("Py_GIL_DISABLED")) and sys.version_info[:2] == (
    3,
    13,
)


def run_py(code: str, *args: str, timeout: float = 120) -> dict:
    """Runs `code` in a new interpreter; returns the JSON object it printed last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# A notebook cell run again and again: each run decorates a new top-level function and
# caches a 1 MiB value.
REDECORATE = """
import gc, json, os, sys, weakref
from warp_cache import cache

class Blob:
    __slots__ = ("data", "__weakref__")
    def __init__(self):
        self.data = bytearray(1 << 20)

CELL = compile('''
@cache(max_size=4, backend=BACKEND, max_value_size=2 << 20)
def f(x):
    return Blob()
value = f(1)
assert f(1) is value or BACKEND == "shared"
''', "<cell>", "exec")

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20

def mapped():
    # Mappings of this test's cache directory.
    with open("/proc/self/maps") as maps:
        return sum(os.environ["WARP_CACHE_DIR"] in line for line in maps)

ns = {"cache": cache, "Blob": Blob, "BACKEND": sys.argv[1]}
values, wrappers, rss = [], [], []
for _ in range(2):
    for i in range(int(sys.argv[2])):
        exec(CELL, ns)
        values.append(weakref.ref(ns["value"]))
        wrappers.append(weakref.ref(ns["f"]))
        if i % 20 == 0:
            gc.collect()  # as the collector would, now and then
    peak_mapped = mapped()
    del ns["f"], ns["value"]
    gc.collect()
    rss.append(rss_mib())
print(json.dumps({
    "values": sum(r() is not None for r in values),
    "wrappers": sum(r() is not None for r in wrappers),
    # Freed memory is reused by the second round (allocators may keep it from the system).
    "second_round_mib": rss[1] - rss[0],
    "mapped": mapped(),
    "peak_mapped": peak_mapped,
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_redecorated_memory_caches_are_freed_with_their_values():
    out = run_py(REDECORATE, "memory", "200")
    assert out["values"] == 0, "cached values of discarded functions are alive"
    assert out["wrappers"] == 0, "discarded cached functions are alive"
    assert out["second_round_mib"] < 64, out  # 200 MiB if they leaked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_redecorated_shared_caches_are_freed_and_unmapped():
    out = run_py(REDECORATE, "shared", "40")
    assert out["wrappers"] == 0, "discarded cached functions are alive"
    assert out["values"] == 0
    assert out["peak_mapped"] > 0, "the test does not see the mappings it checks"
    assert out["mapped"] == 0, "a discarded cache's files stay mapped"


@pytest.mark.skipif(
    not FREE_THREADED_313,
    reason="only free-threaded 3.13 immortalizes functions once threads start (gh-117696)",
)
def test_cached_function_is_kept_like_the_function_it_wraps():
    # Before any thread: deferred like a top-level function (freed by the collector). Once a
    # thread starts, CPython makes both immortal: threads then write no shared count. A
    # decoration after that is immortal at once, as the function is; closures never are.
    out = run_py("""
        import json, sys, threading
        from warp_cache import cache

        IMMORTAL = 2**32 - 1

        def state(obj):
            return sys.getrefcount(obj) >= IMMORTAL

        @cache(max_size=4)
        def early(x):
            return x

        def make():
            @cache(max_size=4)
            def inner(x):
                return x
            return inner

        before = [state(early), state(early.__wrapped__)]
        threading.Thread(target=lambda: None).start()

        @cache(max_size=4)
        def late(x):
            return x

        closure = make()
        print(json.dumps({
            "before": before,
            "after": [state(early), state(early.__wrapped__)],
            "late": [state(late), state(late.__wrapped__)],
            "closure": [state(closure), state(closure.__wrapped__)],
            "works": [early(2), late(3), closure(4)],
        }))
    """)
    assert out == {
        "before": [False, False],
        "after": [True, True],
        "late": [True, True],
        "closure": [False, False],
        "works": [2, 3, 4],
    }
