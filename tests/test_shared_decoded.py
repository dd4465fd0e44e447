"""Decode once per process: a repeated shared hit returns the object this process decoded (or
computed) before, for as long as the entry is unchanged in every process."""

from __future__ import annotations

import gc
import importlib
import sys
import time
import weakref

import pytest
import shared_worker
from test_shared import run_worker
from warp_cache import cache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")


@pytest.fixture
def worker_module(private_shared_cache_dir):
    """`shared_worker` decorated again, so its caches use this test's directory (as the
    worker processes do)."""
    return importlib.reload(shared_worker)


class Box:
    """A value that can be weakly referenced (pickled by reference to this module)."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_a_computed_value_is_returned_again_as_the_same_object():
    @cache(max_size=64, backend="shared", version=1)
    def record(x):
        return {"x": x, "tags": ["a", "b"], "score": 1.5}

    first = record(1)
    assert record(1) is first
    assert record(1) is first
    assert record(2) is not first
    info = record.cache_info()
    assert (info.hits, info.misses) == (2, 2)


def test_an_entry_another_process_wrote_is_decoded_once_here(worker_module):
    run_worker("values", "dict", "list")
    first = worker_module.value_of("dict")
    assert first == worker_module.sample_values()["dict"]
    assert worker_module.value_of("dict") is first
    assert worker_module.value_of("list") is worker_module.value_of("list")
    # All hits here: the worker computed both.
    info = worker_module.value_of.cache_info()
    assert (info.hits, info.misses) == (4, 2)


def test_an_overwrite_by_another_process_is_seen_not_the_old_copy(worker_module):
    assert worker_module.square(9) == 81
    assert worker_module.square(9) == 81
    # Another process clears the cache and stores another value for the same key.
    run_worker("clear", "square")
    assert run_worker("square", "9", WC_ROLE="reader") == [worker_module.RECOMPUTED]
    assert worker_module.square(9) == worker_module.RECOMPUTED


def test_an_expired_entry_is_not_returned_from_the_copy():
    calls = []

    @cache(max_size=8, backend="shared", ttl=0.3, version=1)
    def stamp(x):
        calls.append(x)
        return [x, len(calls)]

    first = stamp(1)
    assert stamp(1) is first
    time.sleep(0.45)
    again = stamp(1)
    assert again == [1, 2] and len(calls) == 2


def test_cache_clear_releases_this_process_copies():
    @cache(max_size=8, backend="shared", version=1)
    def boxed(n):
        return Box(n)

    value = boxed(3)
    assert boxed(3) is value
    ref = weakref.ref(value)
    del value
    gc.collect()
    assert ref() is not None, "kept by the cache"
    boxed.cache_clear()
    assert ref() is None, "released by cache_clear"


def test_the_garbage_collector_sees_the_copies():
    @cache(max_size=8, backend="shared", version=1)
    def boxed(n):
        return Box(n)

    value = boxed(4)
    assert any(r is value for r in gc.get_referents(boxed))


def test_a_copy_per_slot_at_most():
    @cache(max_size=4, backend="shared", version=1)
    def boxed(n):
        return Box(n)

    refs = [weakref.ref(boxed(n)) for n in range(40)]
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= 4, f"{alive} decoded copies kept for a cache of 4"
