"""Pickling and copying: a cached module-level function travels by reference."""

from __future__ import annotations

import copy
import multiprocessing
import pickle

import _pool_helpers
import pytest
from warp_cache import CacheInfo


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_module_level_function_pickles_by_reference(protocol):
    f = _pool_helpers.square
    assert pickle.loads(pickle.dumps(f, protocol=protocol)) is f


def test_async_function_pickles_by_reference():
    f = _pool_helpers.async_double
    assert pickle.loads(pickle.dumps(f)) is f


def test_method_pickles_by_reference():
    f = _pool_helpers.Holder.triple
    assert pickle.loads(pickle.dumps(f)) is f


def test_copy_and_deepcopy_return_the_same_object():
    f = _pool_helpers.square
    assert copy.copy(f) is f
    assert copy.deepcopy(f) is f
    assert copy.deepcopy({"f": f})["f"] is f


def test_unpickled_function_keeps_its_cache():
    f = _pool_helpers.square
    f.cache_clear()
    f(3)
    clone = pickle.loads(pickle.dumps(f))
    assert clone(3) == 9
    assert clone.cache_info().hits == 1


def test_cache_info_pickles():
    info = CacheInfo(hits=1, misses=2, max_size=3, current_size=4)
    clone = pickle.loads(pickle.dumps(info))
    assert clone == info
    assert type(clone) is CacheInfo


def test_spawn_pool_map():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(_pool_helpers.square, range(10)) == [x * x for x in range(10)]
